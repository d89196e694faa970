//! Regression: every fuzz seed and crash-turned-seed (`fuzz/corpus/<target>/`) and every
//! AMI fixture goes through the framer and parser on every run, with the fuzz targets'
//! own checks: no panic, same frames however the bytes are cut, parse → write → parse
//! gives the same message.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use medcall::ami::codec::{AmiCodec, decode_all};
use medcall::ami::parser::parse_frame;
use medcall::ami::{Frame, Limits, SkipReason};
use tokio_util::codec::Decoder;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn normalize(frames: Vec<Frame>) -> Vec<Frame> {
    frames
        .into_iter()
        .map(|f| match f {
            Frame::Skipped(mut s) => {
                s.reason = SkipReason::TooLarge { limit: 0 };
                Frame::Skipped(s)
            }
            other => other,
        })
        .collect()
}

/// The `ami_parser` fuzz target's property.
fn parse_write_parse(data: &[u8]) {
    for frame in decode_all(data, Limits::default(), false) {
        if let Frame::Message(m) = frame {
            // The framer indexes headers as it finds lines; the nom grammar reading the
            // whole frame must agree.
            assert_eq!(parse_frame(m.frame()), Ok(m.clone()));
            let again = decode_all(&m.to_bytes(), Limits::default(), false);
            assert_eq!(again, vec![Frame::Message(m)]);
        }
    }
}

/// The `ami_framer` fuzz target's property.
fn framer(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
    let banner = first & 0x80 != 0;
    let limits = Limits {
        max_message_bytes: 512,
        max_headers: 16,
    };
    let mut codec = if banner {
        AmiCodec::new(limits)
    } else {
        AmiCodec::without_banner(limits)
    };
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Ok(Some(frame)) = codec.decode(&mut buf) {
            frames.push(frame);
        }
        assert!(buf.len() <= limits.max_message_bytes + chunk + 64);
    }
    assert_eq!(
        normalize(frames),
        normalize(decode_all(rest, limits, banner))
    );
}

#[test]
fn every_fuzz_corpus_file_still_passes_its_target() {
    let mut n = 0;
    for path in files(&root().join("fuzz/corpus/ami_parser")) {
        parse_write_parse(&std::fs::read(&path).unwrap());
        n += 1;
    }
    for path in files(&root().join("fuzz/corpus/ami_framer")) {
        framer(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "the corpus is committed");
}

/// The call tracker's reader must answer every lookup as `Message::get` does, on every
/// message the corpus and fixtures hold (odd names, repeats, more headers than it keys).
fn reader_agrees_with_message(data: &[u8]) -> usize {
    let mut lookups = 0;
    for frame in decode_all(data, Limits::default(), false) {
        let Frame::Message(m) = frame else { continue };
        let reader = m.reader();
        // Each distinct name once (a fuzzed message can repeat one a thousand times).
        let mut names: Vec<String> = m.headers().map(|h| h.name.text().into_owned()).collect();
        names.sort();
        names.dedup();
        names.extend(["Uniqueid", "CHANNEL", "", "NoSuchHeader"].map(String::from));
        for name in &names {
            assert_eq!(reader.get(name), m.get(name), "{name:?} in {m:?}");
            assert_eq!(reader.text(name), m.text(name), "{name:?} in {m:?}");
            let all: Vec<String> = m.all(name).map(|v| v.text().into_owned()).collect();
            assert_eq!(reader.all_text(name), all, "{name:?} in {m:?}");
            lookups += 1;
        }
    }
    lookups
}

#[test]
fn the_field_reader_answers_as_the_message_does_on_every_corpus_message() {
    let mut lookups = 0;
    for dir in [
        "fuzz/corpus/ami_parser",
        "fuzz/corpus/ami_framer",
        "fixtures/ami",
    ] {
        for path in files(&root().join(dir)) {
            lookups += reader_agrees_with_message(&std::fs::read(&path).unwrap());
        }
    }
    assert!(lookups > 10_000, "only {lookups} lookups compared");
}

#[test]
fn every_ami_fixture_parses_and_round_trips() {
    for path in files(&root().join("fixtures/ami")) {
        let data = std::fs::read(&path).unwrap();
        parse_write_parse(&data);
        for first in [0x07u8, 0x3f, 0x80] {
            let mut input = vec![first];
            input.extend_from_slice(&data);
            framer(&input);
        }
    }
}

#[test]
fn the_rig_capture_decodes_completely_with_every_originate_result() {
    let data = std::fs::read(root().join("fixtures/ami/rig-capture-1.ami")).unwrap();
    let frames = decode_all(&data, Limits::default(), true);
    assert!(
        matches!(&frames[0], Frame::Banner(b) if b.text().starts_with("Asterisk Call Manager/"))
    );
    assert!(!frames.iter().any(|f| matches!(f, Frame::Skipped(_))));
    let results = frames
        .iter()
        .filter(|f| matches!(f, Frame::Message(m) if m.is("Event", "OriginateResponse")))
        .count();
    assert_eq!(results, 42);
    // Nothing is left over: the capture ends on a message boundary.
    let consumed: usize = frames
        .iter()
        .map(|f| match f {
            Frame::Message(m) => m.to_bytes().len(),
            _ => 0,
        })
        .sum();
    assert!(consumed > data.len() / 2);
}

//! Regression: every seed of `fuzz/corpus/audiosocket_frame/` goes through the
//! AudioSocket decoder on every run with the fuzz target's checks (no panic, the buffer
//! bounded, the same frames however the bytes are cut, encode → decode gives the frame
//! back), and the hand-written seeds read as they were written to.

use std::path::PathBuf;

use bytes::BytesMut;
use medcall::media::audiosocket::{AudioSocketCodec, Frame, FrameError, decode_all};
use tokio_util::codec::{Decoder, Encoder};

/// The fuzz target's limit.
const MAX: usize = 700;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/audiosocket_frame");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The fuzz target's property for one input (its first byte picks the read size).
fn check(name: &str, data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (whole, error) = decode_all(rest, MAX);
    for chunk in [usize::from(first % 64) + 1, 1, 3, 640, rest.len().max(1)] {
        let mut codec = AudioSocketCodec::new(MAX);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut failed = false;
        'read: for piece in rest.chunks(chunk) {
            buf.extend_from_slice(piece);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break 'read;
                    }
                }
            }
            assert!(buf.len() <= 3 + MAX + chunk, "{name}: buffer {}", buf.len());
        }
        assert_eq!(frames, whole, "{name}: reads of {chunk}");
        assert!(!failed || error.is_some(), "{name}");
    }
    for frame in whole {
        let mut wire = BytesMut::new();
        AudioSocketCodec::new(MAX)
            .encode(frame.clone(), &mut wire)
            .unwrap();
        assert_eq!(
            AudioSocketCodec::new(MAX).decode(&mut wire).unwrap(),
            Some(frame),
            "{name}"
        );
    }
}

#[test]
fn every_audiosocket_seed_keeps_the_fuzz_targets_property() {
    let seeds = seeds();
    assert!(seeds.len() >= 10, "{} seeds", seeds.len());
    for (name, data) in &seeds {
        check(name, data);
    }
}

#[test]
fn the_hand_written_seeds_read_as_written() {
    let seeds: std::collections::HashMap<String, Vec<u8>> = seeds().into_iter().collect();
    let read = |name: &str| decode_all(&seeds[name][1..], MAX);
    let (frames, error) = read("session");
    assert!(error.is_none());
    assert!(matches!(frames.first(), Some(Frame::Uuid(_))));
    assert_eq!(frames.last(), Some(&Frame::Hangup));
    assert_eq!(frames.len(), 5);
    let error_of = |name: &str| read(name).1;
    assert!(matches!(
        error_of("oversize"),
        Some(FrameError::TooLarge { len: 65_535, .. })
    ));
    assert!(matches!(
        error_of("unknown-kind"),
        Some(FrameError::UnknownKind(0x42))
    ));
    assert!(matches!(
        error_of("bad-uuid"),
        Some(FrameError::BadUuid(15))
    ));
    assert!(matches!(error_of("bad-dtmf"), Some(FrameError::BadDtmf(2))));
    assert!(matches!(
        error_of("odd-audio"),
        Some(FrameError::OddAudio(3))
    ));
    assert!(matches!(
        error_of("truncated"),
        Some(FrameError::Truncated(100))
    ));
    assert!(error_of("at-limit").is_none());
    assert_eq!(read("every-rate").0.len(), 9);
}

//! Regression: every seed and kept input of the `media_decode` fuzz target
//! (`fuzz/corpus/media_decode/`) goes through sniffing and the decode core on every run,
//! with the target's own checks: no panic, a decode succeeds only for what sniffing calls
//! audio and of that kind, what it reports written is what was written, within the bound.

use std::path::PathBuf;

use medcall::media::decode::{DecodeError, DecodeLimits, decode};
use medcall::media::sniff::sniff;

#[test]
fn the_media_decode_corpus_replays_through_the_decode_core() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/media_decode");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the seeds are there: {}", files.len());
    let limits = DecodeLimits::default();
    let mut decoded = 0;
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let kind = sniff(&data);
        match decode(&data, &limits) {
            Ok(d) => {
                assert_eq!(Some(d.summary.kind), kind, "{}", path.display());
                assert_eq!(d.pcm.len() as u64, d.summary.output_frames * 2);
                assert!(d.pcm.len() as u64 <= limits.max_output_bytes());
                decoded += 1;
            }
            Err(e) => {
                if kind.is_none() {
                    assert_eq!(e, DecodeError::NotAudio, "{}", path.display());
                }
                assert!(e.is_content(), "{}: {e:?}", path.display());
            }
        }
    }
    // The tone seeds at least.
    assert!(decoded >= 2, "{decoded} of {} decoded", files.len());
}

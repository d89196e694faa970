//! Sniffing and the decode core on arbitrary bytes, with the limits the decode child
//! runs with: no panic; a decode succeeds only for what sniffing calls audio, of that
//! kind; what it reports written is what was written, within the output bound.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use medcall::media::decode::{DecodeError, DecodeLimits, decode_to};
use medcall::media::sniff::sniff;

/// Counts bytes instead of keeping them: ten minutes of output is 19 MB.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let kind = sniff(data);
    let mut out = Count(0);
    match decode_to(data, &limits, &mut out) {
        Ok(summary) => {
            assert_eq!(Some(summary.kind), kind);
            assert_eq!(out.0, summary.output_frames * 2);
            assert!(out.0 <= limits.max_output_bytes());
        }
        Err(e) => {
            if kind.is_none() {
                assert_eq!(e, DecodeError::NotAudio);
            }
            assert!(e.is_content(), "{e:?}");
        }
    }
});

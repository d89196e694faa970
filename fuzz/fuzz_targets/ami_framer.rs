//! Any bytes, cut into reads of any size (the first byte picks it), through a codec
//! with small limits: never a panic, the buffer stays bounded, and the frames are the
//! same however the stream was cut.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use medcall::ami::codec::{AmiCodec, decode_all};
use medcall::ami::{Frame, Limits, SkipReason};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
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
    // Which limit a skipped message broke first may depend on where reads were cut;
    // that it was skipped, and how many bytes went with it, may not.
    assert_eq!(
        normalize(frames),
        normalize(decode_all(rest, limits, banner))
    );
});

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

//! Any bytes, cut into reads of any size (the first byte picks it), through the
//! AudioSocket decoder with a small limit: never a panic, the buffer stays bounded,
//! the frames are the same however the stream was cut, and each frame encodes to bytes
//! that decode to it again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use medcall::media::audiosocket::{AudioSocketCodec, decode_all};
use tokio_util::codec::{Decoder, Encoder};

const MAX: usize = 700;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;
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
        assert!(buf.len() <= 3 + MAX + chunk);
    }
    let (whole, error) = decode_all(rest, MAX);
    assert_eq!(frames, whole);
    if failed {
        assert!(error.is_some());
    }
    for frame in frames {
        let mut wire = BytesMut::new();
        AudioSocketCodec::new(MAX).encode(frame.clone(), &mut wire).unwrap();
        let again = AudioSocketCodec::new(MAX).decode(&mut wire).unwrap();
        assert_eq!(again, Some(frame));
        assert!(wire.is_empty());
    }
});

//! Any bytes: parse every message, write it back, parse again — the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medcall::ami::codec::decode_all;
use medcall::ami::{Frame, Limits};

fuzz_target!(|data: &[u8]| {
    for frame in decode_all(data, Limits::default(), false) {
        if let Frame::Message(m) = frame {
            let again = decode_all(&m.to_bytes(), Limits::default(), false);
            assert_eq!(again, vec![Frame::Message(m)]);
        }
    }
});

//! Any bytes: parse every message, write it back, parse again — the same message; and
//! the framer's header index agrees with the nom grammar reading the whole frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medcall::ami::codec::decode_all;
use medcall::ami::parser::parse_frame;
use medcall::ami::{Frame, Limits};

fuzz_target!(|data: &[u8]| {
    for frame in decode_all(data, Limits::default(), false) {
        if let Frame::Message(m) = frame {
            // The framer indexes headers as it finds lines; the nom grammar reading the
            // whole frame must agree.
            assert_eq!(parse_frame(m.frame()), Ok(m.clone()));
            let again = decode_all(&m.to_bytes(), Limits::default(), false);
            assert_eq!(again, vec![Frame::Message(m)]);
        }
    }
});

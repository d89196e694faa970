//! The AGI reply parser on arbitrary bytes, read as a stream of replies the way a
//! session reads them: never panics, always makes progress, never over-reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medcall::agi::command;
use medcall::agi::reply::{Inbound, ReplyLimits, parse_inbound};

fuzz_target!(|data: &[u8]| {
    let limits = ReplyLimits { max_line: 512, max_usage_lines: 16 };
    let mut rest = data;
    while let Ok(Some((inbound, used))) = parse_inbound(rest, limits) {
        assert!(used > 0 && used <= rest.len());
        rest = rest.get(used..).unwrap_or_default();
        if let Inbound::Reply(reply) = inbound {
            // The typed readers accept or refuse any reply, never panic.
            let _ = command::digit(reply.clone());
            let _ = command::playback(reply.clone());
            let _ = command::data_input(reply.clone());
            let _ = command::variable(reply.clone());
            let _ = command::recording(reply.clone());
            let _ = command::channel_status(reply.clone());
            let _ = command::done(reply);
        }
    }
});

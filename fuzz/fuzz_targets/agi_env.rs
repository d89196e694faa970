//! The AGI environment parser on arbitrary bytes: never panics, never claims more
//! bytes than it was given, what it parsed re-encodes to an equal environment, and the
//! same bytes arriving in pieces (the first byte sets their size) reach the same
//! result as one pass over them all: the collector resumes its scan across reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use bytes::BytesMut;
use medcall::agi::env::{EnvCollector, EnvLimits, parse_env};

/// `rest` fed to one collector `step` bytes at a time, as `parse_env` answers.
fn in_pieces(rest: &[u8], step: usize, limits: EnvLimits) -> String {
    let mut collector = EnvCollector::new(limits);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        match collector.collect(&mut buf) {
            Ok(None) => {}
            Ok(Some(env)) => return format!("{:?}", Ok::<_, ()>(Some((env, fed - buf.len())))),
            Err(e) => return format!("Err({e})"),
        }
    }
    format!("{:?}", Ok::<Option<()>, ()>(None))
}

fuzz_target!(|data: &[u8]| {
    let limits = EnvLimits { max_line: 512, max_variables: 64 };
    if let Some((&step, rest)) = data.split_first() {
        let whole = match parse_env(rest, limits) {
            Ok(found) => format!("{:?}", Ok::<_, ()>(found)),
            Err(e) => format!("Err({e})"),
        };
        assert_eq!(in_pieces(rest, usize::from(step % 32) + 1, limits), whole);
    }
    let Ok(Some((env, used))) = parse_env(data, limits) else { return };
    assert!(used <= data.len());
    let _ = env.args();
    let _ = env.network_script();
    // Names are trimmed and values keep a trailing CR the line stripped: compare only
    // environments whose text re-encodes exactly.
    let exact = env.variables().iter().all(|(name, value)| {
        !name.is_empty() && !value.as_bytes().ends_with(b"\r") && !value.as_bytes().starts_with(b" ")
    });
    let mut wire = Vec::new();
    for (name, value) in env.variables() {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.push(b'\n');
    }
    wire.push(b'\n');
    let again = parse_env(&wire, EnvLimits { max_line: usize::MAX / 2, max_variables: 64 });
    if exact {
        assert_eq!(again.ok().flatten().map(|(e, _)| e), Some(env));
    }
});

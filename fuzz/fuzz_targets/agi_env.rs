//! The AGI environment parser on arbitrary bytes: never panics, never claims more
//! bytes than it was given, and what it parsed re-encodes to an equal environment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medcall::agi::env::{EnvLimits, parse_env};

fuzz_target!(|data: &[u8]| {
    let limits = EnvLimits { max_line: 512, max_variables: 64 };
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

//! Regression: every AGI fuzz seed and crash-turned-seed (`fuzz/corpus/agi_env/`,
//! `fuzz/corpus/agi_reply/`) goes through the parsers on every run, with the fuzz
//! targets' own checks, and each file's parse is compared with what it must read as:
//! a parser that reads a seed wrongly fails here, not only one that panics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use medcall::agi::AgiText;
use medcall::agi::command;
use medcall::agi::env::{EnvCollector, EnvLimits, parse_env};
use medcall::agi::reply::{Inbound, Outcome, Reply, ReplyError, ReplyLimits, parse_inbound};

/// The limits the fuzz targets run with.
const ENV_LIMITS: EnvLimits = EnvLimits {
    max_line: 512,
    max_variables: 64,
};
const REPLY_LIMITS: ReplyLimits = ReplyLimits {
    max_line: 512,
    max_usage_lines: 16,
};

/// Each seed of one target, by file name.
fn corpus(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// What one pass of `parse_env` over `data` reads, as text to compare.
fn env_outcome(data: &[u8]) -> String {
    match parse_env(data, ENV_LIMITS) {
        Ok(Some((env, used))) => format!("{env:?} used {used} of {}", data.len()),
        Ok(None) => "incomplete".to_owned(),
        Err(e) => format!("Err({e})"),
    }
}

/// `rest` fed to one collector `step` bytes at a time, answered as `parse_env` does.
fn env_in_pieces(rest: &[u8], step: usize) -> String {
    let mut collector = EnvCollector::new(ENV_LIMITS);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        match collector.collect(&mut buf) {
            Ok(None) => {}
            Ok(Some(env)) => {
                return format!("{env:?} used {} of {}", fed - buf.len(), rest.len());
            }
            Err(e) => return format!("Err({e})"),
        }
    }
    "incomplete".to_owned()
}

/// The `agi_env` fuzz target's property: the same result however the bytes arrive,
/// never more bytes claimed than given, and an environment that re-encodes exactly
/// parses back equal.
fn agi_env_property(data: &[u8]) {
    if let Some((&step, rest)) = data.split_first() {
        assert_eq!(
            env_in_pieces(rest, usize::from(step % 32) + 1),
            env_outcome(rest)
        );
    }
    // Every cut of the whole seed, not only the one its first byte picks.
    for step in 1..=data.len().max(1) {
        assert_eq!(env_in_pieces(data, step), env_outcome(data), "step {step}");
    }
    let Ok(Some((env, used))) = parse_env(data, ENV_LIMITS) else {
        return;
    };
    assert!(used <= data.len());
    let exact = env.variables().iter().all(|(name, value)| {
        !name.is_empty()
            && !value.as_bytes().ends_with(b"\r")
            && !value.as_bytes().starts_with(b" ")
    });
    let mut wire = Vec::new();
    for (name, value) in env.variables() {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.push(b'\n');
    }
    wire.push(b'\n');
    let again = parse_env(
        &wire,
        EnvLimits {
            max_line: usize::MAX / 2,
            max_variables: 64,
        },
    );
    if exact {
        assert_eq!(again.ok().flatten().map(|(e, _)| e), Some(env));
    }
}

/// The `agi_reply` fuzz target's property (progress, no over-read, the typed readers
/// never panic), returning what the stream read as: each inbound, then the bytes left
/// incomplete or the error that stopped it.
fn agi_reply_stream(data: &[u8]) -> (Vec<Inbound>, Result<usize, ReplyError>) {
    let mut read = Vec::new();
    let mut rest = data;
    loop {
        match parse_inbound(rest, REPLY_LIMITS) {
            Ok(Some((inbound, used))) => {
                assert!(used > 0 && used <= rest.len(), "used {used} of {rest:?}");
                rest = &rest[used..];
                read.push(inbound.clone());
                if let Inbound::Reply(reply) = inbound {
                    let _ = command::digit(reply.clone());
                    let _ = command::playback(reply.clone());
                    let _ = command::data_input(reply.clone());
                    let _ = command::variable(reply.clone());
                    let _ = command::recording(reply.clone());
                    let _ = command::channel_status(reply.clone());
                    let _ = command::done(reply);
                }
            }
            Ok(None) => return (read, Ok(rest.len())),
            Err(e) => return (read, Err(e)),
        }
    }
}

/// What an environment seed must read as.
#[derive(Debug, PartialEq)]
enum EnvReading {
    /// These variables, in order, and the bytes the environment took.
    Env(Vec<(Vec<u8>, Vec<u8>)>, usize),
    Incomplete,
    /// Refused, with this line.
    NoColon(&'static str),
}

fn env_reading(data: &[u8]) -> EnvReading {
    match parse_env(data, ENV_LIMITS) {
        Ok(Some((env, used))) => EnvReading::Env(
            env.pairs().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            used,
        ),
        Ok(None) => EnvReading::Incomplete,
        Err(e) => {
            let text = e.to_string();
            let line = ["\": novalue\"", "\"agi_channel x\""]
                .into_iter()
                .find(|line| text == format!("environment line without `:`: {line}"))
                .unwrap_or_else(|| panic!("unexpected refusal {text}"));
            EnvReading::NoColon(line)
        }
    }
}

fn vars(pairs: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
        .collect()
}

#[test]
fn every_agi_env_seed_passes_its_target_and_reads_as_expected() {
    use EnvReading::{Env, Incomplete, NoColon};
    let full: &[(&str, &[u8])] = &[
        ("agi_network", b"yes"),
        ("agi_network_script", b"diagnostics"),
        ("agi_request", b"agi://127.0.0.1:4573/diagnostics"),
        ("agi_channel", b"Local/answer@fake-phones-00000001;1"),
        ("agi_language", b"en"),
        ("agi_type", b"Local"),
        ("agi_uniqueid", b"1700000000.1"),
        ("agi_version", b"22.10.1"),
        ("agi_callerid", b"100"),
        ("agi_calleridname", b"Reception"),
        ("agi_callingpres", b"0"),
        ("agi_callingani2", b"0"),
        ("agi_callington", b"0"),
        ("agi_callingtns", b"0"),
        ("agi_dnid", b"unknown"),
        ("agi_rdnis", b"unknown"),
        ("agi_context", b"medcall-diagnostics"),
        ("agi_extension", b"s"),
        ("agi_priority", b"3"),
        ("agi_enhanced", b"0.0"),
        ("agi_accountcode", b""),
        ("agi_threadid", b"139871234567"),
    ];
    let expected: BTreeMap<&str, EnvReading> = BTreeMap::from([
        (
            "args",
            Env(
                vars(&[
                    ("agi_network_script", b"args/p1?q=a%20b"),
                    ("agi_arg_1", b"hello world"),
                    ("agi_arg_2", b"say \"hi\""),
                    ("agi_arg_3", b"a,b"),
                    ("agi_arg_4", "Привет".as_bytes()),
                    ("agi_arg_10", b"ten"),
                ]),
                135,
            ),
        ),
        (
            // The line after the empty one is the first command's business, not ours;
            // only the first `:` separates a name from its value.
            "colons-and-trailer",
            Env(
                vars(&[
                    ("agi_request", b"agi://h:1/a?b=c:d"),
                    ("agi_unknown_future", b"kept: yes"),
                ]),
                62,
            ),
        ),
        (
            // CRLF lines, a CP1251 value kept as its bytes.
            "cp1251-crlf",
            Env(
                vars(&[
                    ("agi_calleridname", b"\xc8\xe2\xe0\xed"),
                    ("agi_channel", b"x"),
                ]),
                42,
            ),
        ),
        ("empty", Env(Vec::new(), 1)),
        ("empty-name", NoColon("\": novalue\"")),
        ("full", Env(vars(full), 512)),
        ("incomplete", Incomplete),
        ("malformed", NoColon("\"agi_channel x\"")),
    ]);
    let seeds = corpus("agi_env");
    assert_eq!(
        seeds.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "every seed has its expected reading here"
    );
    for (name, data) in &seeds {
        agi_env_property(data);
        assert_eq!(env_reading(data), expected[name.as_str()], "{name}");
    }
    let (args_env, _) = parse_env(&seeds["args"], ENV_LIMITS).unwrap().unwrap();
    assert_eq!(
        args_env.args(),
        ["hello world", "say \"hi\"", "a,b", "Привет", "ten"].map(AgiText::from),
        "the arguments in number order, a gap before agi_arg_10 closed up"
    );
    assert_eq!(args_env.network_script(), Some(&b"args/p1?q=a%20b"[..]));
}

fn success(result: &str, data: Option<&str>, endpos: Option<u64>, text: &str) -> Outcome {
    Outcome {
        result: Some(AgiText::from(result)),
        data: data.map(AgiText::from),
        endpos,
        text: AgiText::from(text),
    }
}

#[test]
fn every_agi_reply_seed_passes_its_target_and_reads_as_expected() {
    use Inbound::{Hangup, Trying};
    let ok = |o: Outcome| Inbound::Reply(Reply::Success(o));
    let expected: BTreeMap<&str, Vec<Inbound>> = BTreeMap::from([
        (
            // Past u64: kept as text, not wrapped or cut.
            "big-endpos",
            vec![ok(success(
                "0",
                None,
                None,
                "endpos=99999999999999999999999",
            ))],
        ),
        (
            "data-last-paren",
            vec![ok(success("1", Some("a (nested) value"), None, ""))],
        ),
        (
            "dead",
            vec![Inbound::Reply(Reply::DeadChannel(AgiText::from(
                "Command Not Permitted on a dead channel or intercepted channel",
            )))],
        ),
        (
            "failure",
            vec![Inbound::Reply(Reply::Failure(success(
                "-2",
                None,
                None,
                "Memory allocation failure",
            )))],
        ),
        (
            "getdata",
            vec![ok(success("12#", Some("timeout"), None, ""))],
        ),
        (
            "gosub",
            vec![
                Trying(success("0", None, None, "Trying...")),
                ok(success("0", None, None, "Gosub complete")),
            ],
        ),
        (
            "hangup-first",
            vec![Hangup, ok(success("-1", None, Some(160), ""))],
        ),
        (
            "invalid",
            vec![Inbound::Reply(Reply::InvalidCommand(AgiText::from(
                "Invalid or unknown command",
            )))],
        ),
        ("ok", vec![ok(success("0", None, None, ""))]),
        (
            "speech",
            vec![ok(success(
                "1",
                Some("speech"),
                Some(0),
                "results=1 score0=900 text0=yes grammar0=g",
            ))],
        ),
        (
            // CRLF: the CR is no part of the reply.
            "timeout-endpos",
            vec![ok(success("0", Some("timeout"), Some(8000), ""))],
        ),
        (
            "usage",
            vec![Inbound::Reply(Reply::Usage(vec![
                AgiText::from(" Usage: STREAM FILE <filename>"),
                AgiText::from(""),
            ]))],
        ),
    ]);
    let seeds = corpus("agi_reply");
    assert_eq!(
        seeds.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>(),
        "every seed has its expected reading here"
    );
    for (name, data) in &seeds {
        let (read, left) = agi_reply_stream(data);
        assert_eq!(read, expected[name.as_str()], "{name}");
        assert_eq!(left, Ok(0), "{name}: the whole seed is read");
    }
}

//! Decoding outside the daemon's process: the hidden `medcall decode` subcommand (the
//! child) and [`decode_in_child`] (the parent's side).
//!
//! The child applies its own resource limits before it reads a byte (address space,
//! CPU seconds, no core file, no file writes beyond its output, few descriptors), reads
//! the file on stdin, writes s16le on stdout as it decodes, and ends with a one-line
//! report on stderr: its [`Summary`] on success, or the error and a distinct exit code.
//! A decoder that panics, runs out of memory or CPU, or hangs takes only the child down.
//!
//! The parent spawns it with `kill_on_drop`, an empty environment and piped stdio,
//! feeds stdin while reading stdout (bounded by the decode limits) and stderr (bounded
//! to one short line), kills it at the wall-clock limit, and turns every way it can end
//! into a [`DecodeError`]: never a panic, never a hang.

use std::io::{BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::decode::{DecodeError, DecodeLimits, Decoded, Summary, decode_to};
use super::sniff::AudioKind;

/// The child's limits, the decode's included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimits {
    pub decode: DecodeLimits,
    /// Largest input the child reads (default 10 MB, the fetch limit).
    pub max_input_bytes: u64,
    /// The child's address-space limit (`RLIMIT_AS`, default 256 MiB).
    pub memory_bytes: u64,
    /// CPU seconds (`RLIMIT_CPU`, default 10): SIGXCPU then SIGKILL a second later.
    pub cpu_seconds: u64,
    /// Wall-clock time before the parent kills the child (default 20 s).
    pub wall_clock: Duration,
}

impl Default for ChildLimits {
    fn default() -> Self {
        ChildLimits {
            decode: DecodeLimits::default(),
            max_input_bytes: 10_485_760,
            memory_bytes: 256 * 1024 * 1024,
            cpu_seconds: 10,
            wall_clock: Duration::from_secs(20),
        }
    }
}

/// The hidden subcommand's arguments (`medcall decode …`), written by [`decode_in_child`].
#[derive(Debug, Clone, clap::Args)]
pub struct DecodeArgs {
    #[arg(long)]
    pub max_duration_ms: u64,
    #[arg(long)]
    pub max_channels: u16,
    #[arg(long)]
    pub min_rate: u32,
    #[arg(long)]
    pub max_rate: u32,
    #[arg(long)]
    pub max_input_bytes: u64,
    /// Address-space limit in bytes; 0 leaves it unset.
    #[arg(long)]
    pub memory_bytes: u64,
    /// CPU seconds; 0 leaves it unset.
    #[arg(long)]
    pub cpu_seconds: u64,
}

impl DecodeArgs {
    fn from_limits(l: &ChildLimits) -> DecodeArgs {
        DecodeArgs {
            max_duration_ms: u64::try_from(l.decode.max_duration.as_millis()).unwrap_or(u64::MAX),
            max_channels: l.decode.max_channels,
            min_rate: l.decode.min_sample_rate,
            max_rate: l.decode.max_sample_rate,
            max_input_bytes: l.max_input_bytes,
            memory_bytes: l.memory_bytes,
            cpu_seconds: l.cpu_seconds,
        }
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            "decode".into(),
            format!("--max-duration-ms={}", self.max_duration_ms),
            format!("--max-channels={}", self.max_channels),
            format!("--min-rate={}", self.min_rate),
            format!("--max-rate={}", self.max_rate),
            format!("--max-input-bytes={}", self.max_input_bytes),
            format!("--memory-bytes={}", self.memory_bytes),
            format!("--cpu-seconds={}", self.cpu_seconds),
        ]
    }

    fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_duration: Duration::from_millis(self.max_duration_ms),
            max_channels: self.max_channels,
            min_sample_rate: self.min_rate,
            max_sample_rate: self.max_rate,
        }
    }
}

/// The exit codes of `medcall decode`, one per way it fails.
mod code {
    pub const NOT_AUDIO: u8 = 10;
    pub const UNSUPPORTED: u8 = 11;
    pub const CORRUPT: u8 = 12;
    pub const NO_AUDIO: u8 = 13;
    pub const CHANNELS: u8 = 14;
    pub const SAMPLE_RATE: u8 = 15;
    pub const TOO_LONG: u8 = 16;
    pub const INPUT_TOO_LARGE: u8 = 17;
    pub const OUTPUT: u8 = 18;
    pub const LIMITS: u8 = 19;
    /// What Rust's runtime exits with after a panic.
    pub const PANIC: i32 = 101;
}

/// The child: `medcall decode`. Limits first, then stdin → decode → stdout.
pub fn run_child(args: &DecodeArgs) -> ExitCode {
    let (status, line) = match child(args) {
        Ok(s) => (0, summary_line(&s)),
        Err(e) => wire(&e),
    };
    // stderr is the report channel; a failed write there leaves only the exit code.
    let _ = writeln!(std::io::stderr(), "{line}");
    ExitCode::from(status)
}

fn child(args: &DecodeArgs) -> Result<Summary, DecodeError> {
    apply_limits(args).map_err(|e| DecodeError::ResourceLimit(format!("setting limits: {e}")))?;
    // Sized once: growing by doubling would copy, and hold two buffers at the peak.
    let mut input =
        Vec::with_capacity(usize::try_from(args.max_input_bytes.saturating_add(1)).unwrap_or(0));
    std::io::stdin()
        .lock()
        .take(args.max_input_bytes.saturating_add(1))
        .read_to_end(&mut input)
        .map_err(|e| DecodeError::Crashed(format!("reading stdin: {e}")))?;
    if input.len() as u64 > args.max_input_bytes {
        return Err(DecodeError::InputTooLarge {
            max: args.max_input_bytes,
        });
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    decode_to(&input, &args.decode_limits(), &mut out)
}

fn apply_limits(args: &DecodeArgs) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let fixed = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    // No core file of a crashed decoder (it would hold the input).
    setrlimit(Resource::Core, fixed(0))?;
    // The child writes only its output: nothing bigger, even when stdout is a file.
    setrlimit(
        Resource::Fsize,
        fixed(args.decode_limits().max_output_bytes().saturating_add(4096)),
    )?;
    // stdin, stdout, stderr and what the runtime opens.
    setrlimit(Resource::Nofile, fixed(16))?;
    if args.memory_bytes > 0 {
        // mimalloc reserves a 1 GiB arena at start unless `MIMALLOC_ARENA_RESERVE=0`
        // (the parent sets it): allocations inside a reservation made before the
        // limit are not bounded by it. Fail closed if the space is already taken.
        // (Measured before the limit: reading the file allocates.)
        let size = vm_size().unwrap_or(u64::MAX);
        setrlimit(Resource::As, fixed(args.memory_bytes))?;
        if size > args.memory_bytes {
            return Err(std::io::Error::other(format!(
                "{size} bytes of address space already reserved, over the limit of {} \
                 (is MIMALLOC_ARENA_RESERVE=0 set?)",
                args.memory_bytes
            )));
        }
    }
    if args.cpu_seconds > 0 {
        // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
        setrlimit(
            Resource::Cpu,
            Rlimit {
                current: Some(args.cpu_seconds),
                maximum: Some(args.cpu_seconds.saturating_add(1)),
            },
        )?;
    }
    Ok(())
}

/// This process's address-space size (`VmSize` of `/proc/self/status`), in bytes.
fn vm_size() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmSize:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

fn summary_line(s: &Summary) -> String {
    format!(
        "ok {} {} {} {} {}",
        s.kind.as_str(),
        s.input_rate,
        s.channels,
        s.input_frames,
        s.output_frames
    )
}

fn parse_summary(line: &str) -> Option<Summary> {
    let mut w = line.split(' ');
    if w.next()? != "ok" {
        return None;
    }
    let kind = match w.next()? {
        "mp3" => AudioKind::Mp3,
        "wav" => AudioKind::Wav,
        _ => return None,
    };
    let summary = Summary {
        kind,
        input_rate: w.next()?.parse().ok()?,
        channels: w.next()?.parse().ok()?,
        input_frames: w.next()?.parse().ok()?,
        output_frames: w.next()?.parse().ok()?,
    };
    w.next().is_none().then_some(summary)
}

/// The exit code and stderr line for an error: `<word> [numbers]: <message>`.
fn wire(e: &DecodeError) -> (u8, String) {
    use DecodeError as E;
    match e {
        E::NotAudio => (code::NOT_AUDIO, format!("not-audio: {e}")),
        E::Unsupported(d) => (code::UNSUPPORTED, format!("unsupported: {d}")),
        E::Corrupt(d) => (code::CORRUPT, format!("corrupt: {d}")),
        E::NoAudio => (code::NO_AUDIO, format!("no-audio: {e}")),
        E::TooManyChannels { channels, max } => {
            (code::CHANNELS, format!("channels {channels} {max}: {e}"))
        }
        E::SampleRate { rate, min, max } => {
            (code::SAMPLE_RATE, format!("rate {rate} {min} {max}: {e}"))
        }
        E::TooLong { max_secs } => (code::TOO_LONG, format!("too-long {max_secs}: {e}")),
        E::InputTooLarge { max } => (code::INPUT_TOO_LARGE, format!("input {max}: {e}")),
        E::ResourceLimit(d) => (code::LIMITS, format!("limits: {d}")),
        E::Output(d) | E::Spawn(d) | E::Crashed(d) => (code::OUTPUT, format!("output: {d}")),
        E::TimedOut(_) | E::OutputTooLarge(_) => (code::OUTPUT, format!("output: {e}")),
    }
}

/// The error a child's exit code and stderr line describe.
fn unwire(code: i32, line: &str) -> DecodeError {
    let (head, detail) = line.split_once(": ").unwrap_or((line, ""));
    let mut words = head.split(' ').skip(1);
    let mut n = || words.next().and_then(|w| w.parse::<u64>().ok());
    let crashed = || DecodeError::Crashed(format!("exit code {code}: {}", line.trim()));
    let Ok(c) = u8::try_from(code) else {
        return crashed();
    };
    let small = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    match c {
        code::NOT_AUDIO => DecodeError::NotAudio,
        code::UNSUPPORTED => DecodeError::Unsupported(detail.to_owned()),
        code::CORRUPT => DecodeError::Corrupt(detail.to_owned()),
        code::NO_AUDIO => DecodeError::NoAudio,
        code::CHANNELS => match (n(), n().and_then(|v| u16::try_from(v).ok())) {
            (Some(channels), Some(max)) => DecodeError::TooManyChannels { channels, max },
            _ => crashed(),
        },
        code::SAMPLE_RATE => match (small(n()), small(n()), small(n())) {
            (Some(rate), Some(min), Some(max)) => DecodeError::SampleRate { rate, min, max },
            _ => crashed(),
        },
        code::TOO_LONG => match n() {
            Some(max_secs) => DecodeError::TooLong { max_secs },
            None => crashed(),
        },
        code::INPUT_TOO_LARGE => match n() {
            Some(max) => DecodeError::InputTooLarge { max },
            None => crashed(),
        },
        code::LIMITS => DecodeError::ResourceLimit(detail.to_owned()),
        code::OUTPUT => DecodeError::Output(detail.to_owned()),
        _ => crashed(),
    }
}

/// Decodes `input` in a `medcall decode` child of the executable `exe` (the daemon
/// passes `std::env::current_exe()`, tests `env!("CARGO_BIN_EXE_medcall")`).
///
/// Cancel-safe: dropping the future kills the child.
///
/// # Errors
/// The decode's own errors as the child reports them; [`DecodeError::TimedOut`] after
/// `wall_clock`; [`DecodeError::OutputTooLarge`] past the limits' output bound;
/// [`DecodeError::ResourceLimit`] when the CPU or memory limit ended it;
/// [`DecodeError::Crashed`] for any other death; [`DecodeError::Spawn`].
pub async fn decode_in_child(
    exe: &Path,
    input: Bytes,
    limits: &ChildLimits,
) -> Result<Decoded, DecodeError> {
    let mut child = tokio::process::Command::new(exe)
        .args(DecodeArgs::from_limits(limits).to_args())
        .env_clear()
        // Without it mimalloc reserves 1 GiB before `main`, out of RLIMIT_AS's reach.
        .env("MIMALLOC_ARENA_RESERVE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DecodeError::Spawn(format!("{}: {e}", exe.display())))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(DecodeError::Spawn("no pipes to the child".into()));
    };
    let max_output = limits.decode.max_output_bytes();
    let feed = async move {
        // The child may stop reading early (too large, limits): a broken pipe here is
        // its answer, read from its exit, not an error of ours.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let run = async {
        let (_, out, err) = tokio::join!(
            feed,
            read_bounded(stdout, max_output),
            read_bounded(stderr, 4096)
        );
        let status = child.wait().await;
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(limits.wall_clock, run).await {
        Ok(done) => done,
        Err(_) => {
            // Kill now rather than at drop, and reap it.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(DecodeError::TimedOut(limits.wall_clock));
        }
    };
    let status = status.map_err(|e| DecodeError::Crashed(format!("waiting for the child: {e}")))?;
    let err = err.unwrap_or_default();
    let line = String::from_utf8_lossy(err.0.split(|b| *b == b'\n').next().unwrap_or_default())
        .into_owned();
    let pcm = match out {
        Ok((pcm, false)) => pcm,
        Ok((_, true)) => return Err(DecodeError::OutputTooLarge(max_output)),
        Err(e) => {
            return Err(DecodeError::Crashed(format!(
                "reading the child's output: {e}"
            )));
        }
    };
    outcome(status, &line, &err.0, pcm)
}

fn outcome(
    status: ExitStatus,
    line: &str,
    stderr: &[u8],
    pcm: Vec<u8>,
) -> Result<Decoded, DecodeError> {
    if status.success() {
        let summary = parse_summary(line)
            .ok_or_else(|| DecodeError::Crashed(format!("an unreadable report: {line:?}")))?;
        if summary.output_frames.saturating_mul(2) != pcm.len() as u64 {
            return Err(DecodeError::Crashed(format!(
                "reported {} frames but wrote {} bytes",
                summary.output_frames,
                pcm.len()
            )));
        }
        return Ok(Decoded { pcm, summary });
    }
    let text = String::from_utf8_lossy(stderr);
    if let Some(sig) = status.signal() {
        // An allocation refused under the address-space limit aborts the child.
        if text.contains("memory allocation of") {
            return Err(DecodeError::ResourceLimit("memory".into()));
        }
        return Err(match sig {
            24 /* SIGXCPU */ | 9 /* SIGKILL: the CPU hard limit */ => {
                DecodeError::ResourceLimit("CPU time".into())
            }
            25 /* SIGXFSZ */ => DecodeError::ResourceLimit("file size".into()),
            _ => DecodeError::Crashed(format!("killed by signal {sig}")),
        });
    }
    match status.code() {
        Some(code::PANIC) => Err(DecodeError::Crashed(format!(
            "the decoder panicked: {}",
            text.lines()
                .find(|l| l.contains("panicked"))
                .unwrap_or("")
                .trim()
        ))),
        Some(c) => Err(unwire(c, line)),
        None => Err(DecodeError::Crashed("no exit status".into())),
    }
}

/// Reads `r` to its end, keeping at most `max` bytes; `true` when there was more (then
/// the reading stops at once: the rest is not drained).
async fn read_bounded<R: AsyncRead + Unpin>(
    mut r: R,
    max: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut buf = Vec::new();
    let n = (&mut r)
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .await?;
    if n as u64 > max {
        buf.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        return Ok((buf, true));
    }
    Ok((buf, false))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_content_error_survives_the_trip_through_exit_code_and_stderr() {
        for e in [
            DecodeError::NotAudio,
            DecodeError::Unsupported("codec 0x55".into()),
            DecodeError::Corrupt("the fmt chunk is too short".into()),
            DecodeError::NoAudio,
            DecodeError::TooManyChannels {
                channels: 65_535,
                max: 8,
            },
            DecodeError::SampleRate {
                rate: 4_000,
                min: 8_000,
                max: 192_000,
            },
            DecodeError::TooLong { max_secs: 600 },
            DecodeError::InputTooLarge { max: 10 },
            DecodeError::ResourceLimit("setting limits: EPERM".into()),
            DecodeError::Output("broken pipe".into()),
        ] {
            let (code, line) = wire(&e);
            assert!(!line.contains('\n'));
            assert_eq!(unwire(i32::from(code), &line), e, "{line}");
        }
    }

    #[test]
    fn an_unknown_exit_code_or_a_garbled_line_is_a_crash() {
        assert!(matches!(unwire(3, "whatever"), DecodeError::Crashed(_)));
        assert!(matches!(
            unwire(14, "channels x: y"),
            DecodeError::Crashed(_)
        ));
        assert!(matches!(unwire(15, "rate 1 2"), DecodeError::Crashed(_)));
        assert!(matches!(unwire(16, "too-long: "), DecodeError::Crashed(_)));
        assert!(matches!(unwire(-1, ""), DecodeError::Crashed(_)));
        assert!(matches!(unwire(300, ""), DecodeError::Crashed(_)));
    }

    #[test]
    fn the_summary_line_round_trips_and_rejects_anything_else() {
        let s = Summary {
            kind: AudioKind::Mp3,
            input_rate: 44_100,
            channels: 2,
            input_frames: 132_300,
            output_frames: 48_000,
        };
        assert_eq!(parse_summary(&summary_line(&s)), Some(s));
        let w = Summary {
            kind: AudioKind::Wav,
            ..s
        };
        assert_eq!(parse_summary(&summary_line(&w)), Some(w));
        for bad in [
            "",
            "ok",
            "ok ogg 1 1 1 1",
            "ok mp3 1 1 1",
            "ok mp3 1 1 1 1 1",
            "no mp3 1 1 1 1",
        ] {
            assert_eq!(parse_summary(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_arguments_carry_every_limit() {
        let l = ChildLimits::default();
        let args = DecodeArgs::from_limits(&l);
        assert_eq!(args.decode_limits(), l.decode);
        let text = args.to_args();
        assert_eq!(text.first().map(String::as_str), Some("decode"));
        for want in [
            "--max-duration-ms=600000",
            "--max-channels=8",
            "--min-rate=8000",
            "--max-rate=192000",
            "--max-input-bytes=10485760",
            "--memory-bytes=268435456",
            "--cpu-seconds=10",
        ] {
            assert!(text.iter().any(|a| a == want), "{want} in {text:?}");
        }
    }

    fn status(raw: i32) -> ExitStatus {
        ExitStatus::from_raw(raw)
    }

    #[test]
    fn each_way_the_child_can_die_maps_to_an_error() {
        let pcm = Vec::new;
        // Killed by a signal: raw wait status is the signal number.
        assert_eq!(
            outcome(status(24), "", b"", pcm()).unwrap_err(),
            DecodeError::ResourceLimit("CPU time".into())
        );
        assert_eq!(
            outcome(status(9), "", b"", pcm()).unwrap_err(),
            DecodeError::ResourceLimit("CPU time".into())
        );
        assert_eq!(
            outcome(status(25), "", b"", pcm()).unwrap_err(),
            DecodeError::ResourceLimit("file size".into())
        );
        assert_eq!(
            outcome(
                status(6),
                "",
                b"memory allocation of 9 bytes failed\n",
                pcm()
            )
            .unwrap_err(),
            DecodeError::ResourceLimit("memory".into())
        );
        assert!(matches!(
            outcome(status(11), "", b"", pcm()).unwrap_err(),
            DecodeError::Crashed(m) if m.contains("signal 11")
        ));
        // Exit code 101 (a panic): exit status is code << 8.
        let panic = b"thread 'main' panicked at src/x.rs:1:1:\nindex out of bounds\n";
        assert!(matches!(
            outcome(status(101 << 8), "", panic, pcm()).unwrap_err(),
            DecodeError::Crashed(m) if m.contains("panicked")
        ));
        assert_eq!(
            outcome(status(10 << 8), "not-audio: x", b"", pcm()).unwrap_err(),
            DecodeError::NotAudio
        );
        // Success must agree with what was written.
        assert!(matches!(
            outcome(status(0), "ok wav 8000 1 2 4", b"", vec![0; 6]).unwrap_err(),
            DecodeError::Crashed(_)
        ));
        assert!(matches!(
            outcome(status(0), "garbage", b"", vec![0; 8]).unwrap_err(),
            DecodeError::Crashed(_)
        ));
        let ok = outcome(status(0), "ok wav 8000 1 2 4", b"", vec![0; 8]).unwrap();
        assert_eq!(ok.summary.output_frames, 4);
    }

    #[test]
    fn the_address_space_size_is_read_from_proc() {
        let size = vm_size().unwrap();
        assert!(size > 1024 * 1024, "{size}");
    }

    #[tokio::test]
    async fn output_past_the_bound_is_cut_and_flagged() {
        let data = vec![7u8; 100];
        assert_eq!(
            read_bounded(&data[..], 100).await.unwrap(),
            (data.clone(), false)
        );
        let (kept, over) = read_bounded(&data[..], 99).await.unwrap();
        assert_eq!((kept.len(), over), (99, true));
    }

    #[tokio::test]
    async fn a_missing_executable_is_a_spawn_error() {
        let e = decode_in_child(
            Path::new("/nonexistent/medcall"),
            Bytes::from_static(b"x"),
            &ChildLimits::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, DecodeError::Spawn(_)), "{e:?}");
    }
}

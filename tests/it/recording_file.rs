//! When Asterisk's conference recording is final, measured on the real rig with raw AMI
//! (CALL-CONTROL.md §2.7): ConfBridge records through a `CBRec` channel running
//! MixMonitor, whose thread closes the WAV asynchronously after `ConfbridgeStopRecord`
//! or the conference's end. `media::wavfile::wait_final` must see the file final
//! then, with the duration recorded, and the file must not change afterwards.
//!
//! Asterisk runs chrooted: the path it writes (`/var/spool/asterisk/medcall/…`) is
//! `$MEDCALL_RIG_ROOT/var/spool/asterisk/medcall/…` here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medcall::media::wavfile::{self, Verdict, WavFacts};
use tokio::time::Instant;

use crate::support::audiosocket::{AudioSocketServer, Participant, fresh_uuid};
use crate::support::rig::{HangupOnDrop, RawAmi, RawMessage, Rig, field};

/// How long an action's answer or an event may take on a loaded machine.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the file may take to become final after the recording stopped.
const FINAL_LIMIT: Duration = Duration::from_secs(10);
/// How far the file's duration may be from the time between the two AMI answers:
/// the recording channel joins and leaves the bridge a few frames after them.
const DURATION_SLACK_MS: i64 = 500;

/// Where the rig's root is, as `scripts/asterisk-rig env` says (its default otherwise).
fn rig_root() -> PathBuf {
    if let Some(root) = std::env::var_os("MEDCALL_RIG_ROOT") {
        return PathBuf::from(root);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("medcall/asterisk-22-sid")
}

/// A recording's path as Asterisk sees it and as this process sees it.
struct RecordPath {
    asterisk: String,
    here: PathBuf,
}

impl RecordPath {
    fn fresh(what: &str) -> RecordPath {
        let asterisk = format!(
            "/var/spool/asterisk/medcall/rec-{what}-{}.wav",
            &fresh_uuid()[24..]
        );
        let here = rig_root().join(asterisk.trim_start_matches('/'));
        RecordPath { asterisk, here }
    }
}

impl Drop for RecordPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.here);
    }
}

/// A conference of one AudioSocket participant playing a tone, so the mix is never
/// silent, driven by raw AMI.
struct Conference {
    name: String,
    ami: RawAmi,
    _hub: AudioSocketServer,
    uid: String,
    /// Kept so the tone goes on while the test runs.
    participant: Option<Participant>,
    events: Vec<RawMessage>,
    _cleanup: HangupOnDrop,
}

impl Conference {
    async fn with_tone(what: &str) -> Conference {
        let rig = Rig::from_env();
        let mut ami = RawAmi::connect(&rig).await;
        let login = ami.login(&rig.username, &rig.secret).await;
        assert_eq!(field(&login, "Response"), Some("Success"), "{login:?}");
        let name = format!("rec-{what}-{}", &fresh_uuid()[24..]);
        let hub = AudioSocketServer::start().await;
        let uuid = fresh_uuid();
        let uid = format!("{name}-a");
        let cleanup = HangupOnDrop(vec![uid.clone()]);
        let mut conf = Conference {
            name: name.clone(),
            ami,
            uid: uid.clone(),
            participant: None,
            _hub: hub,
            events: Vec::new(),
            _cleanup: cleanup,
        };
        let endpoint = conf._hub.endpoint(&uuid);
        let originate = conf
            .action(
                &format!("{uid}-originate"),
                &[
                    ("Action", "Originate"),
                    ("Channel", &endpoint),
                    ("Context", "medcall-conference"),
                    ("Exten", &name),
                    ("Priority", "1"),
                    ("Async", "true"),
                    ("Timeout", "5000"),
                    ("ChannelId", &uid),
                ],
            )
            .await;
        assert_eq!(
            field(&originate, "Response"),
            Some("Success"),
            "{originate:?}"
        );
        let participant = conf._hub.participant(&uuid).await;
        participant.play_tone(700.0);
        conf.participant = Some(participant);
        conf.event("ConfbridgeJoin", |m| {
            field(m, "Uniqueid") == Some(uid.as_str())
        })
        .await;
        conf
    }

    /// An action's response (by ActionID); events read on the way are kept.
    async fn action(&mut self, id: &str, lines: &[(&str, &str)]) -> RawMessage {
        let mut all = lines.to_vec();
        all.push(("ActionID", id));
        self.ami.send(&all).await;
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.ami.next(left).await.expect("an answer to the action");
            if field(&m, "ActionID") == Some(id) && field(&m, "Response").is_some() {
                return m;
            }
            self.events.push(m);
        }
    }

    /// The first event `name` matching `pred`, kept or read within `SETTLE`.
    async fn event(&mut self, name: &str, pred: impl Fn(&RawMessage) -> bool) -> RawMessage {
        if let Some(m) = self
            .events
            .iter()
            .find(|m| field(m, "Event") == Some(name) && pred(m))
        {
            return m.clone();
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .ami
                .next(left)
                .await
                .unwrap_or_else(|| panic!("no {name} within {SETTLE:?}"));
            let hit = field(&m, "Event") == Some(name) && pred(&m);
            self.events.push(m.clone());
            if hit {
                return m;
            }
        }
    }

    /// `ConfbridgeStartRecord` into `path`; returns when Asterisk answered.
    async fn start_record(&mut self, path: &RecordPath) -> Instant {
        let name = self.name.clone();
        let r = self
            .action(
                &format!("{name}-start-{}", fresh_uuid()),
                &[
                    ("Action", "ConfbridgeStartRecord"),
                    ("Conference", &name),
                    ("RecordFile", &path.asterisk),
                ],
            )
            .await;
        assert_eq!(field(&r, "Response"), Some("Success"), "{r:?}");
        Instant::now()
    }

    async fn stop_record(&mut self) -> Instant {
        let name = self.name.clone();
        let r = self
            .action(
                &format!("{name}-stop-{}", fresh_uuid()),
                &[("Action", "ConfbridgeStopRecord"), ("Conference", &name)],
            )
            .await;
        assert_eq!(field(&r, "Response"), Some("Success"), "{r:?}");
        Instant::now()
    }
}

/// The RMS of the recording's samples, as a fraction of full scale.
fn rms(path: &Path, facts: &WavFacts) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let data = &bytes[facts.data_offset as usize..][..facts.data_len as usize];
    let samples: Vec<f64> = data
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len().max(1) as f64).sqrt()
}

/// Asserts what every finished recording must be: Asterisk's 8 kHz 16-bit mono WAV,
/// lasting `recorded` (± `DURATION_SLACK_MS`), and unchanged a while later.
async fn assert_finished(path: &RecordPath, facts: WavFacts, recorded: Duration) {
    assert_eq!(
        (facts.sample_rate, facts.channels, facts.bits_per_sample),
        (8000, 1, 16),
        "{facts:?}"
    );
    assert_eq!(facts.data_offset, 44, "{facts:?}");
    let off = facts.duration_ms as i64 - recorded.as_millis() as i64;
    assert!(
        off.abs() <= DURATION_SLACK_MS,
        "the file lasts {} ms, the recording ran {} ms",
        facts.duration_ms,
        recorded.as_millis()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let len = std::fs::metadata(&path.here).unwrap().len();
    assert_eq!(len, facts.file_len, "the file changed after it was final");
    let head = std::fs::read(&path.here).unwrap();
    assert_eq!(wavfile::check(&head, len), Verdict::Final(facts));
}

fn spread(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms over {}",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        ms.len()
    )
}

#[tokio::test]
async fn a_stopped_conference_recording_becomes_final_with_the_duration_recorded() {
    let mut conf = Conference::with_tone("stop").await;
    let path = RecordPath::fresh("stop");
    let started = conf.start_record(&path).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = conf.stop_record().await;
    let facts = wavfile::wait_final(&path.here, FINAL_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let final_after = stopped.elapsed();
    assert_finished(&path, facts, stopped - started).await;
    // The tone is in the file: the conference's mix was recorded, not silence.
    let level = rms(&path.here, &facts);
    assert!(level > 0.01, "the recording is silent (rms {level:.4})");
    let described = wavfile::describe(&path.here).await.unwrap();
    assert_eq!(
        (described.size, described.duration_ms),
        (facts.file_len, facts.duration_ms)
    );
    println!(
        "recorded {} ms → {facts:?}, rms {level:.3}; final {:.1} ms after StopRecord's answer",
        (stopped - started).as_millis(),
        final_after.as_secs_f64() * 1000.0
    );
}

/// How long after `since` the file at `path` reads final, looking every millisecond
/// (finer than `wait_final`'s pauses, for the measure only); whether the first look
/// already found it final.
async fn final_after(path: &RecordPath, since: Instant) -> (Duration, bool) {
    let mut first = true;
    loop {
        let head = std::fs::read(&path.here).unwrap_or_default();
        if matches!(wavfile::check(&head, head.len() as u64), Verdict::Final(_)) {
            return (since.elapsed(), first);
        }
        assert!(since.elapsed() < FINAL_LIMIT, "never final");
        first = false;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn how_long_after_stop_record_the_file_is_final() {
    // A measure, not an assert on time: printed for the record (README figures).
    let mut conf = Conference::with_tone("measure").await;
    let mut after = Vec::new();
    let mut at_once = 0;
    for _ in 0..10 {
        let path = RecordPath::fresh("measure");
        let started = conf.start_record(&path).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let stopped = conf.stop_record().await;
        let (took, first) = final_after(&path, stopped).await;
        after.push(took.as_secs_f64() * 1000.0);
        at_once += usize::from(first);
        let facts = wavfile::wait_final(&path.here, FINAL_LIMIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_finished(&path, facts, stopped - started).await;
    }
    println!(
        "final after ConfbridgeStopRecord's answer: {}; already final at the first look: {at_once}",
        spread(after)
    );
}

#[tokio::test]
async fn a_recording_never_stopped_is_final_once_the_conference_ends() {
    let mut conf = Conference::with_tone("end").await;
    let path = RecordPath::fresh("end");
    let started = conf.start_record(&path).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let uid = conf.uid.clone();
    let r = conf
        .action(
            &format!("{uid}-hangup"),
            &[("Action", "Hangup"), ("Channel", &uid)],
        )
        .await;
    assert_eq!(field(&r, "Response"), Some("Success"), "{r:?}");
    let hung_up = Instant::now();
    let name = conf.name.clone();
    conf.event("ConfbridgeEnd", |m| {
        field(m, "Conference") == Some(name.as_str())
    })
    .await;
    let ended = Instant::now();
    let facts = wavfile::wait_final(&path.here, FINAL_LIMIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "recorded {} ms until the hangup → {facts:?}; ConfbridgeEnd {:.1} ms after the hangup's \
         answer, final {:.1} ms after it",
        (hung_up - started).as_millis(),
        (ended - hung_up).as_secs_f64() * 1000.0,
        hung_up.elapsed().as_secs_f64() * 1000.0
    );
    assert_finished(&path, facts, hung_up - started).await;
}

//! Test participants whose audio the test controls and hears: a tokio AudioSocket server
//! that Asterisk's `AudioSocket/127.0.0.1:PORT/<uuid>/c(slin16)` channels connect to.
//!
//! Each connection is one participant, keyed by the UUID its channel sends first. It
//! always drains what Asterisk sends (chan_audiosocket writes with a blocking `write()`
//! on the bridge's thread, so a socket left full stalls the conference's mixing) and
//! keeps the last 30 s of received 16 kHz audio with arrival times. It sends a frame
//! every 20 ms: silence, or a sine tone the test chooses at any time. A Goertzel filter
//! measures what the participant hears at one frequency, so a test can say "this tone
//! is present" or "absent".
//!
//! Wire format (CALL-CONTROL.md §2.8): 1 byte kind, 2 bytes big-endian payload length,
//! payload; kinds 0x00 hangup, 0x01 uuid (16 bytes), 0x12 slin16 (little-endian i16),
//! 0xff error.

use std::collections::{HashMap, VecDeque};
use std::f64::consts::TAU;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Samples per second of `c(slin16)`.
pub const RATE: u32 = 16_000;
/// Samples in one 20 ms frame (640 bytes).
const FRAME_SAMPLES: usize = 320;
/// How long received audio is kept.
const KEEP: Duration = Duration::from_secs(30);
/// The amplitude of a played tone, as a fraction of full scale: loud enough for
/// ConfBridge's talk detection, far from clipping when three tones mix.
pub const TONE_AMPLITUDE: f64 = 0.25;

const KIND_HANGUP: u8 = 0x00;
const KIND_UUID: u8 = 0x01;
const KIND_SLIN16: u8 = 0x12;
const KIND_ERROR: u8 = 0xff;

/// A UUID nobody used yet in this test process, for a channel's dial string.
pub fn fresh_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The clock and process make it unique across runs, the counter within one; the low
    // half changes with every call, so a prefix of its hex (`[24..]`) is unique too.
    let hi = nanos ^ (u64::from(std::process::id()) << 32);
    let lo = n ^ nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    // Version 4, variant 10: a well-formed UUID, as Asterisk's parser wants.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

/// 16 bytes as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lower case.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The AudioSocket server: one loopback port, any number of participants.
pub struct AudioSocketServer {
    pub port: u16,
    participants: Arc<Mutex<HashMap<String, Participant>>>,
    connected: watch::Receiver<u64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for AudioSocketServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl AudioSocketServer {
    /// Listens on a free loopback port.
    pub async fn start() -> AudioSocketServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let participants: Arc<Mutex<HashMap<String, Participant>>> = Arc::default();
        let (tx, connected) = watch::channel(0u64);
        let map = participants.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let map = map.clone();
                let tx = tx.clone();
                tokio::spawn(serve(stream, map, tx));
            }
        });
        AudioSocketServer {
            port,
            participants,
            connected,
            accept,
        }
    }

    /// The channel to originate for the participant `uuid`.
    pub fn endpoint(&self, uuid: &str) -> String {
        format!("AudioSocket/127.0.0.1:{}/{uuid}/c(slin16)", self.port)
    }

    /// The participant `uuid` once its channel has connected (up to 5 s).
    pub async fn participant(&self, uuid: &str) -> Participant {
        self.try_participant(uuid, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("AudioSocket participant {uuid} never connected"))
    }

    /// The participant `uuid`, or `None` when it has not connected within `limit`.
    pub async fn try_participant(&self, uuid: &str, limit: Duration) -> Option<Participant> {
        let key = uuid.to_ascii_lowercase();
        let mut connected = self.connected.clone();
        let map = self.participants.clone();
        tokio::time::timeout(limit, async move {
            loop {
                if let Some(p) = map.lock().unwrap().get(&key) {
                    return p.clone();
                }
                connected.changed().await.unwrap();
            }
        })
        .await
        .ok()
    }
}

/// What one connection has received and how it ended.
#[derive(Default)]
struct Heard {
    /// Frames with the time they arrived, oldest first, at most `KEEP` old.
    frames: VecDeque<(Instant, Vec<i16>)>,
    /// Asterisk sent a hangup (0x00).
    hangup: bool,
    /// Error codes from 0xff messages (the payload's first byte, 0 when empty).
    errors: Vec<u8>,
    /// The socket closed (by either side).
    closed: bool,
}

struct Shared {
    uuid: String,
    heard: Mutex<Heard>,
    /// Bumped on every received frame and on close: what waits wake on.
    progress: watch::Sender<u64>,
    /// The tone being sent, as `f64` bits; 0.0 means silence.
    tone_hz: AtomicU64,
}

/// One AudioSocket connection, as a test sees it. Cheap to clone.
#[derive(Clone)]
pub struct Participant {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("uuid", &self.shared.uuid)
            .finish()
    }
}

impl Participant {
    pub fn uuid(&self) -> &str {
        &self.shared.uuid
    }

    /// From now on, sends a sine tone at `hz`.
    pub fn play_tone(&self, hz: f64) {
        self.shared.tone_hz.store(hz.to_bits(), Ordering::Relaxed);
    }

    /// From now on, sends silence.
    pub fn silence(&self) {
        self.shared.tone_hz.store(0f64.to_bits(), Ordering::Relaxed);
    }

    /// The samples received during the last `window` of wall time, as fractions of full
    /// scale, oldest first. Fewer than the window holds when Asterisk sent less: it sends
    /// nothing at all while a participant's mix is empty (nobody else talks).
    pub fn recent(&self, window: Duration) -> Vec<f64> {
        let since = Instant::now().checked_sub(window);
        let heard = self.shared.heard.lock().unwrap();
        heard
            .frames
            .iter()
            .filter(|(at, _)| since.is_none_or(|s| *at >= s))
            .flat_map(|(_, f)| f.iter().map(|&s| f64::from(s) / 32768.0))
            .collect()
    }

    /// What the participant heard over the last `window`: exactly the window's worth of
    /// samples, the time nothing arrived counted as silence (so a single frame of tone
    /// does not read as a tone heard for the whole window).
    pub fn heard(&self, window: Duration) -> Vec<f64> {
        let want = (window.as_secs_f64() * f64::from(RATE)) as usize;
        let recent = self.recent(window);
        let kept = &recent[recent.len().saturating_sub(want)..];
        let mut out = vec![0.0; want - kept.len()];
        out.extend_from_slice(kept);
        out
    }

    /// The amplitude heard at `hz` over the last `window`, as a fraction of full scale
    /// (a tone played at `TONE_AMPLITUDE` and heard throughout reads about that much).
    pub fn level_at(&self, hz: f64, window: Duration) -> f64 {
        goertzel_amplitude(&self.heard(window), hz, f64::from(RATE))
    }

    /// The RMS heard over the last `window`, as a fraction of full scale.
    pub fn rms(&self, window: Duration) -> f64 {
        rms(&self.heard(window))
    }

    /// How many frames arrived in the last `window`.
    pub fn frames_in(&self, window: Duration) -> usize {
        let since = Instant::now().checked_sub(window);
        let heard = self.shared.heard.lock().unwrap();
        heard
            .frames
            .iter()
            .filter(|(at, _)| since.is_none_or(|s| *at >= s))
            .count()
    }

    /// Waits until `hz` is heard above `TONE_PRESENT` over a `MEASURE` window; false
    /// after `limit`.
    pub async fn wait_for_tone(&self, hz: f64, limit: Duration) -> bool {
        self.wait_until(limit, || self.level_at(hz, MEASURE) >= TONE_PRESENT)
            .await
    }

    /// Waits until `hz` is below `TONE_ABSENT` over a whole `MEASURE` window measured
    /// after the call (nothing arriving counts as silence); false after `limit`.
    pub async fn wait_until_tone_absent(&self, hz: f64, limit: Duration) -> bool {
        // Only a full window counts: right after a change the window still holds the past.
        let started = Instant::now();
        self.wait_until(limit, || {
            started.elapsed() >= MEASURE && self.level_at(hz, MEASURE) < TONE_ABSENT
        })
        .await
    }

    /// Waits until Asterisk closed the connection (after or without a 0x00 hangup).
    pub async fn wait_closed(&self, limit: Duration) -> bool {
        self.wait_until(limit, || self.is_closed()).await
    }

    pub fn is_closed(&self) -> bool {
        self.shared.heard.lock().unwrap().closed
    }

    /// Whether Asterisk sent a hangup message (0x00) before closing.
    pub fn got_hangup(&self) -> bool {
        self.shared.heard.lock().unwrap().hangup
    }

    /// Error codes Asterisk sent (0xff messages).
    pub fn errors(&self) -> Vec<u8> {
        self.shared.heard.lock().unwrap().errors.clone()
    }

    /// Waits until the participant's audio reads above `rms` over the last `window`.
    pub async fn wait_for_rms(&self, rms: f64, window: Duration, limit: Duration) -> bool {
        self.wait_until(limit, || self.rms(window) > rms).await
    }

    /// Re-checks `done` on every received frame (and at least every 100 ms, for
    /// conditions that hold once frames stop) until it holds or `limit` passes.
    async fn wait_until(&self, limit: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut progress = self.shared.progress.subscribe();
        loop {
            if done() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), progress.changed())
                .await;
        }
    }
}

/// The window `wait_for_tone` and `wait_until_tone_absent` measure over.
pub const MEASURE: Duration = Duration::from_millis(300);
/// At or above this amplitude at a frequency, the tone is there. Measured on the rig
/// (Asterisk 22.10, ConfBridge at 16 kHz): another participant's tone played at
/// `TONE_AMPLITUDE` reads 0.250 over a full window, unattenuated with one, two or three
/// talkers; 0.1 is reached once 40 % of the window carries it.
pub const TONE_PRESENT: f64 = 0.1;
/// Below this amplitude, the tone is not there. Measured: one's own tone in one's mix
/// reads 0.0000, music on hold at 700/1100/1300 Hz at most 0.0008; a tone heard reads
/// 25 times this.
pub const TONE_ABSENT: f64 = 0.01;

/// The amplitude (fraction of full scale) of the component of `samples` at `hz`, by a
/// Goertzel filter over a Hann window: a pure sine of amplitude `a` reads `a`.
pub fn goertzel_amplitude(samples: &[f64], hz: f64, rate: f64) -> f64 {
    let n = samples.len();
    if n < 2 {
        return 0.0;
    }
    let coeff = 2.0 * (TAU * hz / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut window_sum = 0.0;
    for (i, x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (TAU * i as f64 / (n - 1) as f64).cos();
        window_sum += w;
        let s0 = x * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / window_sum
}

/// Root mean square of `samples`; 0 when empty.
pub fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64).sqrt()
}

/// One connection: the UUID first, then a reader that drains and keeps, and a writer
/// that paces frames, until the socket closes or Asterisk hangs up.
async fn serve(
    stream: TcpStream,
    map: Arc<Mutex<HashMap<String, Participant>>>,
    connected: watch::Sender<u64>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let Some((KIND_UUID, payload)) = read_message(&mut reader).await else {
        return;
    };
    let Ok(bytes) = <[u8; 16]>::try_from(payload.as_slice()) else {
        return;
    };
    let (progress, _) = watch::channel(0u64);
    let shared = Arc::new(Shared {
        uuid: format_uuid(&bytes),
        heard: Mutex::default(),
        progress,
        tone_hz: AtomicU64::new(0f64.to_bits()),
    });
    map.lock().unwrap().insert(
        shared.uuid.clone(),
        Participant {
            shared: shared.clone(),
        },
    );
    connected.send_modify(|n| *n += 1);

    let sender = shared.clone();
    let send = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut phase = 0.0f64;
        let mut frame = Vec::with_capacity(3 + FRAME_SAMPLES * 2);
        loop {
            tick.tick().await;
            let hz = f64::from_bits(sender.tone_hz.load(Ordering::Relaxed));
            frame.clear();
            frame.push(KIND_SLIN16);
            frame.extend_from_slice(&((FRAME_SAMPLES * 2) as u16).to_be_bytes());
            for _ in 0..FRAME_SAMPLES {
                let sample = if hz > 0.0 {
                    phase = (phase + TAU * hz / f64::from(RATE)) % TAU;
                    (TONE_AMPLITUDE * 32767.0 * phase.sin()) as i16
                } else {
                    0
                };
                frame.extend_from_slice(&sample.to_le_bytes());
            }
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    });

    while let Some((kind, payload)) = read_message(&mut reader).await {
        match kind {
            KIND_SLIN16 => {
                let samples: Vec<i16> = payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let now = Instant::now();
                let mut heard = shared.heard.lock().unwrap();
                heard.frames.push_back((now, samples));
                while heard
                    .frames
                    .front()
                    .is_some_and(|(at, _)| now.duration_since(*at) > KEEP)
                {
                    heard.frames.pop_front();
                }
                drop(heard);
                shared.progress.send_modify(|n| *n += 1);
            }
            KIND_HANGUP => {
                shared.heard.lock().unwrap().hangup = true;
                break;
            }
            KIND_ERROR => {
                let code = payload.first().copied().unwrap_or(0);
                shared.heard.lock().unwrap().errors.push(code);
            }
            // DTMF and other rates are not asked for (`c(slin16)`); drained all the same.
            _ => {}
        }
    }
    send.abort();
    shared.heard.lock().unwrap().closed = true;
    shared.progress.send_modify(|n| *n += 1);
}

/// One message (kind, payload); `None` when the socket closed or failed.
async fn read_message(reader: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 3];
    reader.read_exact(&mut header).await.ok()?;
    let len = usize::from(u16::from_be_bytes([header[1], header[2]]));
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.ok()?;
    Some((header[0], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, amplitude: f64, seconds: f64) -> Vec<f64> {
        let n = (seconds * f64::from(RATE)) as usize;
        (0..n)
            .map(|i| amplitude * (TAU * hz * i as f64 / f64::from(RATE)).sin())
            .collect()
    }

    /// A deterministic white noise in [-amplitude, amplitude] (xorshift).
    fn noise(amplitude: f64, seconds: f64) -> Vec<f64> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let n = (seconds * f64::from(RATE)) as usize;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                amplitude * ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            })
            .collect()
    }

    #[test]
    fn a_700_hz_tone_reads_its_amplitude_at_700_hz() {
        let level = goertzel_amplitude(&sine(700.0, 0.25, 0.3), 700.0, 16_000.0);
        assert!((level - 0.25).abs() < 0.01, "level {level}");
    }

    #[test]
    fn a_700_hz_tone_is_absent_at_1100_hz() {
        let level = goertzel_amplitude(&sine(700.0, 0.25, 0.3), 1100.0, 16_000.0);
        assert!(level < TONE_ABSENT, "level {level}");
    }

    #[test]
    fn two_mixed_tones_are_each_found_at_their_own_frequency() {
        let mix: Vec<f64> = sine(700.0, 0.2, 0.3)
            .iter()
            .zip(sine(1100.0, 0.1, 0.3))
            .map(|(a, b)| a + b)
            .collect();
        let at_700 = goertzel_amplitude(&mix, 700.0, 16_000.0);
        let at_1100 = goertzel_amplitude(&mix, 1100.0, 16_000.0);
        assert!((at_700 - 0.2).abs() < 0.01, "700 Hz: {at_700}");
        assert!((at_1100 - 0.1).abs() < 0.01, "1100 Hz: {at_1100}");
    }

    #[test]
    fn noise_and_silence_stay_below_the_absence_threshold() {
        // Broadband noise as loud as the music on hold (rms 0.06) spreads over the whole
        // band: little falls in one bin.
        let loud = noise(0.1, 0.3);
        assert!(rms(&loud) > 0.05, "rms {}", rms(&loud));
        let noisy = goertzel_amplitude(&loud, 700.0, 16_000.0);
        assert!(noisy < TONE_ABSENT / 2.0, "noise {noisy}");
        let silent = vec![0.0; 4800];
        assert_eq!(goertzel_amplitude(&silent, 700.0, 16_000.0), 0.0);
        assert_eq!(rms(&silent), 0.0);
        assert_eq!(goertzel_amplitude(&[], 700.0, 16_000.0), 0.0);
    }

    #[test]
    fn a_uuid_is_formatted_as_asterisk_parses_it() {
        let bytes: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        assert_eq!(format_uuid(&bytes), "00112233-4455-6677-8899-aabbccddeeff");
        let fresh = fresh_uuid();
        assert_eq!(fresh.len(), 36);
        assert_ne!(fresh, fresh_uuid());
    }
}

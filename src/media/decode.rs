//! The decoding core, without I/O of its own: bytes of an MP3 or WAV file in, raw
//! signed-linear 16-bit little-endian mono samples at 16 kHz out (Asterisk's `.sln16`,
//! played by `format_sln`), written to any `Write` as they are produced.
//!
//! It runs only inside the `medcall decode` child (`media::child`) and under the fuzz
//! target, never in the daemon: the decoders are third-party code fed untrusted bytes.
//! Every cap in [`DecodeLimits`] is checked as decoding goes, and decoding stops at the
//! first one passed. Nothing here panics on any input.
//!
//! What reaches symphonia is narrowed first: an MP3's ID3v2 tags are cut off here (the
//! tag parser is where symphonia's known panics and multi-GiB allocations were, and a
//! tag's picture can hold a false frame sync), and a WAV's chunk sizes, channel count and
//! sample rate are checked here before its reader allocates by them. Only the reader of
//! the sniffed kind is registered, and only the MP3 and PCM decoders exist.

use std::io::{Cursor, Write};
use std::time::Duration;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::GenericAudioBufferRef;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::{Hint, Probe, ProbeOptions};
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::default::codecs::{MpaDecoder, PcmDecoder};
use symphonia::default::formats::{MpaReader, WavReader};

use super::sniff::{AudioKind, audio_start};

/// The output sample rate: the conference's.
pub const OUTPUT_RATE: u32 = 16_000;
/// Bytes of output per second of audio (16 000 frames × 2 bytes, mono).
pub const OUTPUT_BYTES_PER_SECOND: u64 = 32_000;

/// Caps on one decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest decoded audio accepted (default 600 s).
    pub max_duration: Duration,
    /// Most channels accepted before the mix-down to mono (default 8). Every MP3 has
    /// one or two; 8 admits 5.1 and 7.1 WAV exports, and the mix costs the same per
    /// byte of input whatever the count, so refusing them would gain nothing.
    pub max_channels: u16,
    /// Lowest input sample rate accepted (default 8 kHz).
    pub min_sample_rate: u32,
    /// Highest input sample rate accepted (default 192 kHz).
    pub max_sample_rate: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_duration: Duration::from_secs(600),
            max_channels: 8,
            min_sample_rate: 8_000,
            max_sample_rate: 192_000,
        }
    }
}

impl DecodeLimits {
    /// The most output bytes a decode within these limits writes (plus one frame of
    /// slack for rounding): what the parent reads from the child at most.
    pub fn max_output_bytes(&self) -> u64 {
        let ms = u64::try_from(self.max_duration.as_millis()).unwrap_or(u64::MAX);
        ms.saturating_mul(OUTPUT_BYTES_PER_SECOND) / 1000 + 2 * u64::from(OUTPUT_RATE) / 50
    }
}

/// Why a decode failed. The first group is the content's fault (the client hears
/// 415 or 413); the second is the child's (`media::child`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an MP3 or WAV file")]
    NotAudio,
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    #[error("no audio could be decoded (the file is truncated or corrupt)")]
    NoAudio,
    #[error("{channels} audio channels; at most {max} are accepted")]
    TooManyChannels { channels: u64, max: u16 },
    #[error("sample rate {rate} Hz is outside {min}–{max} Hz")]
    SampleRate { rate: u32, min: u32, max: u32 },
    #[error("the audio is longer than the limit of {max_secs} s")]
    TooLong { max_secs: u64 },
    #[error("the file is larger than {max} bytes")]
    InputTooLarge { max: u64 },
    #[error("cannot write the decoded audio: {0}")]
    Output(String),
    #[error("the decoder could not be started: {0}")]
    Spawn(String),
    #[error("the decoder failed: {0}")]
    Crashed(String),
    #[error("the decoder went over its {0} limit")]
    ResourceLimit(String),
    #[error("the decoder took longer than {0:?} and was stopped")]
    TimedOut(Duration),
    #[error("the decoder wrote more than {0} bytes")]
    OutputTooLarge(u64),
}

impl DecodeError {
    /// Whether the content is at fault (as opposed to the decoder process).
    pub fn is_content(&self) -> bool {
        !matches!(
            self,
            DecodeError::Output(_)
                | DecodeError::Spawn(_)
                | DecodeError::Crashed(_)
                | DecodeError::ResourceLimit(_)
                | DecodeError::TimedOut(_)
                | DecodeError::OutputTooLarge(_)
        )
    }
}

/// What one decode produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub kind: AudioKind,
    pub input_rate: u32,
    /// The most channels a decoded buffer had.
    pub channels: u64,
    pub input_frames: u64,
    pub output_frames: u64,
}

impl Summary {
    /// The output's duration, in whole milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.output_frames.saturating_mul(1000) / u64::from(OUTPUT_RATE)
    }
}

/// A decode held in memory (tests, fuzzing, benches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// s16le mono at 16 kHz.
    pub pcm: Vec<u8>,
    pub summary: Summary,
}

/// Decodes `bytes` into memory. See [`decode_to`].
///
/// # Errors
/// As [`decode_to`].
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let mut pcm = Vec::new();
    let summary = decode_to(bytes, limits, &mut pcm)?;
    Ok(Decoded { pcm, summary })
}

/// Decodes `bytes` (an MP3 or WAV file, judged by its content) and writes s16le mono
/// 16 kHz samples to `out` as they come. On an error, what was written is incomplete.
///
/// # Errors
/// [`DecodeError::NotAudio`] when the bytes are neither; a cap of `limits` passed; a
/// file that decodes to nothing or mostly fails; a failed write to `out`.
pub fn decode_to<W: Write>(
    bytes: &[u8],
    limits: &DecodeLimits,
    out: &mut W,
) -> Result<Summary, DecodeError> {
    let (kind, start) = audio_start(bytes).ok_or(DecodeError::NotAudio)?;
    let body = bytes.get(start..).ok_or(DecodeError::NotAudio)?;
    if kind == AudioKind::Wav {
        check_wav(body, limits)?;
    }
    let mut reader = open(kind, body)?;
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| DecodeError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| DecodeError::Unsupported("no audio track".into()))?
        .clone();
    if let Some(ch) = &params.channels {
        check_channels(ch.count() as u64, limits)?;
    }
    if let Some(rate) = params.sample_rate {
        check_rate(rate, limits)?;
    }
    let mut decoder = codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| DecodeError::Unsupported(e.to_string()))?;

    let mut out = Some(out);
    let mut sink: Option<Sink<'_, W>> = None;
    let mut mono: Vec<f32> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    let (mut good, mut bad) = (0u64, 0u64);
    let mut last_error = String::new();
    let mut channels_seen = 0u64;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) | Err(SymError::ResetRequired) => break,
            // A file cut short plays up to where it ends, as players do.
            Err(SymError::IoError(_)) => break,
            Err(e) if good > 0 => {
                last_error = e.to_string();
                break;
            }
            Err(SymError::Unsupported(m)) => return Err(DecodeError::Unsupported(m.into())),
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(m)) => {
                bad += 1;
                last_error = m.to_owned();
                // Mostly garbage: stop rather than decode the rest of it.
                if bad > 16 && bad > good {
                    return Err(DecodeError::Corrupt(format!(
                        "{bad} of {} packets do not decode ({last_error})",
                        bad + good
                    )));
                }
                continue;
            }
            Err(SymError::IoError(e)) => {
                bad += 1;
                last_error = e.to_string();
                continue;
            }
            Err(SymError::Unsupported(m)) => return Err(DecodeError::Unsupported(m.into())),
            Err(e) => return Err(DecodeError::Corrupt(e.to_string())),
        };
        let frames = buf.frames();
        if frames == 0 {
            continue;
        }
        let spec = buf.spec();
        let rate = spec.rate();
        let ch = spec.channels().count() as u64;
        check_channels(ch, limits)?;
        channels_seen = channels_seen.max(ch);
        let sink = match &mut sink {
            Some(s) => s,
            None => {
                check_rate(rate, limits)?;
                let out = out
                    .take()
                    .ok_or_else(|| DecodeError::Output("the output was taken".into()))?;
                sink.insert(Sink::new(rate, kind, limits, out)?)
            }
        };
        if rate != sink.rate {
            return Err(DecodeError::Corrupt(format!(
                "the sample rate changes from {} Hz to {rate} Hz",
                sink.rate
            )));
        }
        mix_down(&buf, &mut scratch, &mut mono);
        sink.push(&mono)?;
        good += 1;
    }
    let Some(sink) = sink else {
        return Err(if bad > 0 || !last_error.is_empty() {
            DecodeError::Corrupt(last_error)
        } else {
            DecodeError::NoAudio
        });
    };
    let mut summary = sink.finish()?;
    summary.channels = channels_seen;
    if kind == AudioKind::Mp3 && mostly_junk(body.len(), summary.duration_ms()) {
        return Err(DecodeError::Corrupt(format!(
            "{} bytes hold only {} ms of audio",
            body.len(),
            summary.duration_ms()
        )));
    }
    Ok(summary)
}

/// Whether an MP3 body of `len` bytes that decoded to `ms` is mostly not audio: at
/// the highest Layer III bitrate (320 kbit/s) it would hold `len × 8 / 320` ms, and a
/// decode of less than half of that means the reader skipped most of the bytes.
/// Small bodies are left alone (a tag at the end can be a few KiB).
fn mostly_junk(len: usize, ms: u64) -> bool {
    let least_ms = (len as u64).saturating_mul(8) / 320;
    len > 16 * 1024 && ms.saturating_mul(2) < least_ms
}

/// A format reader of exactly `kind` over `body`, probed with only that reader known.
fn open(kind: AudioKind, body: &[u8]) -> Result<Box<dyn FormatReader + '_>, DecodeError> {
    let mut probe = Probe::new_with_options(&ProbeOptions {
        // The stream starts at byte 0 (sniffing said so): no long hunt for a marker.
        max_probe_depth: 64 * 1024,
        max_score_depth: 16 * 1024,
    });
    match kind {
        AudioKind::Mp3 => probe.register_format::<MpaReader<'_>>(),
        AudioKind::Wav => probe.register_format::<WavReader<'_>>(),
    }
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(body)),
        MediaSourceStreamOptions::default(),
    );
    probe
        .probe(
            &Hint::new(),
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            SymError::Unsupported(_) => DecodeError::NotAudio,
            SymError::IoError(_) => DecodeError::NoAudio,
            e => DecodeError::Corrupt(e.to_string()),
        })
}

/// The MP3 and PCM decoders, nothing else.
fn codecs() -> CodecRegistry {
    let mut registry = CodecRegistry::new();
    registry.register_audio_decoder::<MpaDecoder>();
    registry.register_audio_decoder::<PcmDecoder>();
    registry
}

fn check_channels(channels: u64, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if channels == 0 {
        return Err(DecodeError::Corrupt("no audio channels".into()));
    }
    if channels > u64::from(limits.max_channels) {
        return Err(DecodeError::TooManyChannels {
            channels,
            max: limits.max_channels,
        });
    }
    Ok(())
}

fn check_rate(rate: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if rate < limits.min_sample_rate || rate > limits.max_sample_rate {
        return Err(DecodeError::SampleRate {
            rate,
            min: limits.min_sample_rate,
            max: limits.max_sample_rate,
        });
    }
    Ok(())
}

/// Walks a RIFF/WAVE file's chunks up to `data`: every chunk must fit in the bytes
/// there are (the WAV reader allocates a chunk by its declared size), and the `fmt `
/// chunk's channel count and sample rate must be within the limits.
fn check_wav(b: &[u8], limits: &DecodeLimits) -> Result<(), DecodeError> {
    let mut at = 12usize;
    // A file of many tiny chunks is still linear in its size; the count only bounds
    // pathological ones.
    for _ in 0..1024 {
        let Some(head) = b.get(at..at.saturating_add(8)) else {
            return Err(DecodeError::NoAudio);
        };
        let [i0, i1, i2, i3, s0, s1, s2, s3] = *head else {
            return Err(DecodeError::NoAudio);
        };
        let id = [i0, i1, i2, i3];
        let size = u32::from_le_bytes([s0, s1, s2, s3]) as usize;
        let body_at = at.saturating_add(8);
        if &id == b"data" {
            return Ok(());
        }
        let remaining = b.len().saturating_sub(body_at);
        if size > remaining {
            return Err(DecodeError::Corrupt(format!(
                "the {:?} chunk claims {size} bytes where {remaining} remain",
                String::from_utf8_lossy(&id)
            )));
        }
        if &id == b"fmt " {
            let fmt = b
                .get(body_at..body_at.saturating_add(size))
                .unwrap_or_default();
            let (Some(&[c0, c1]), Some(&[r0, r1, r2, r3])) = (fmt.get(2..4), fmt.get(4..8)) else {
                return Err(DecodeError::Corrupt("the fmt chunk is too short".into()));
            };
            check_channels(u64::from(u16::from_le_bytes([c0, c1])), limits)?;
            check_rate(u32::from_le_bytes([r0, r1, r2, r3]), limits)?;
        }
        // Chunks are padded to an even size.
        at = body_at.saturating_add(size).saturating_add(size & 1);
    }
    Err(DecodeError::Corrupt(
        "too many chunks before the data".into(),
    ))
}

/// Mixes one decoded buffer down to mono: the mean of its channels, non-finite samples
/// (a float WAV can carry NaN) as silence.
fn mix_down(buf: &GenericAudioBufferRef<'_>, scratch: &mut Vec<f32>, mono: &mut Vec<f32>) {
    let ch = buf.spec().channels().count().max(1);
    buf.copy_to_vec_interleaved::<f32>(scratch);
    mono.clear();
    let scale = 1.0 / ch as f32;
    mono.extend(scratch.chunks_exact(ch).map(|frame| {
        let sum: f32 = frame
            .iter()
            .map(|s| if s.is_finite() { *s } else { 0.0 })
            .sum();
        sum * scale
    }));
}

/// From mono samples at the input rate to s16le at 16 kHz in `out`, counting the
/// duration against the limit as samples arrive.
struct Sink<'w, W: Write> {
    rate: u32,
    kind: AudioKind,
    max_input_frames: u64,
    max_secs: u64,
    input_frames: u64,
    output_frames: u64,
    resampler: Option<Resampling>,
    bytes: Vec<u8>,
    out: &'w mut W,
}

/// The resampler and its state: a fixed-size input chunk being filled, and how many
/// of the first output frames are its delay (dropped).
struct Resampling {
    fft: FftFixedIn<f32>,
    pending: Vec<f32>,
    output: Vec<Vec<f32>>,
    skip: usize,
}

const CHUNK: usize = 1024;

impl<'w, W: Write> Sink<'w, W> {
    fn new(
        rate: u32,
        kind: AudioKind,
        limits: &DecodeLimits,
        out: &'w mut W,
    ) -> Result<Self, DecodeError> {
        let resampler = if rate == OUTPUT_RATE {
            None
        } else {
            let fft = FftFixedIn::<f32>::new(rate as usize, OUTPUT_RATE as usize, CHUNK, 2, 1)
                .map_err(|e| DecodeError::Unsupported(format!("resampling from {rate} Hz: {e}")))?;
            let skip = fft.output_delay();
            let output = vec![vec![0.0; fft.output_frames_max()]];
            Some(Resampling {
                fft,
                pending: Vec::with_capacity(CHUNK),
                output,
                skip,
            })
        };
        let ms = u64::try_from(limits.max_duration.as_millis()).unwrap_or(u64::MAX);
        Ok(Sink {
            rate,
            kind,
            max_input_frames: ms.saturating_mul(u64::from(rate)) / 1000,
            max_secs: limits.max_duration.as_secs(),
            input_frames: 0,
            output_frames: 0,
            resampler,
            bytes: Vec::new(),
            out,
        })
    }

    fn push(&mut self, mono: &[f32]) -> Result<(), DecodeError> {
        self.input_frames = self.input_frames.saturating_add(mono.len() as u64);
        if self.input_frames > self.max_input_frames {
            return Err(DecodeError::TooLong {
                max_secs: self.max_secs,
            });
        }
        let Some(r) = self.resampler.as_mut() else {
            return write_s16(&mut self.bytes, self.out, mono, &mut self.output_frames);
        };
        let mut rest = mono;
        while !rest.is_empty() {
            let want = r.fft.input_frames_next().saturating_sub(r.pending.len());
            let (now, later) = rest.split_at(want.min(rest.len()));
            r.pending.extend_from_slice(now);
            rest = later;
            if r.pending.len() >= r.fft.input_frames_next() {
                r.run(&mut self.bytes, self.out, &mut self.output_frames)?;
            }
        }
        Ok(())
    }

    /// Flushes the resampler: pads with silence until every input frame has come out,
    /// then cuts the output to the exact length (input frames × 16 000 / rate).
    fn finish(mut self) -> Result<Summary, DecodeError> {
        let expected = (u128::from(self.input_frames) * u128::from(OUTPUT_RATE)
            / u128::from(self.rate)) as u64;
        if let Some(r) = self.resampler.as_mut() {
            let mut rounds = 0;
            while self.output_frames < expected && rounds < 64 {
                let need = expected - self.output_frames;
                let chunk = r.fft.input_frames_next();
                r.pending.resize(chunk, 0.0);
                r.run_limited(&mut self.bytes, self.out, &mut self.output_frames, need)?;
                rounds += 1;
            }
        }
        self.out
            .flush()
            .map_err(|e| DecodeError::Output(e.to_string()))?;
        Ok(Summary {
            kind: self.kind,
            input_rate: self.rate,
            channels: 0,
            input_frames: self.input_frames,
            output_frames: self.output_frames,
        })
    }
}

impl Resampling {
    fn run<W: Write>(
        &mut self,
        bytes: &mut Vec<u8>,
        out: &mut W,
        written: &mut u64,
    ) -> Result<(), DecodeError> {
        self.run_limited(bytes, out, written, u64::MAX)
    }

    /// Resamples the full pending chunk and writes at most `limit` frames of what comes
    /// out after the delay.
    fn run_limited<W: Write>(
        &mut self,
        bytes: &mut Vec<u8>,
        out: &mut W,
        written: &mut u64,
        limit: u64,
    ) -> Result<(), DecodeError> {
        let input = [std::mem::take(&mut self.pending)];
        let result = self.fft.process_into_buffer(&input, &mut self.output, None);
        let [mut pending] = input;
        pending.clear();
        self.pending = pending;
        let (_, produced) = result.map_err(|e| DecodeError::Corrupt(format!("resampling: {e}")))?;
        let out_frames = self
            .output
            .first()
            .and_then(|o| o.get(..produced))
            .unwrap_or_default();
        let skip = self.skip.min(out_frames.len());
        self.skip -= skip;
        let usable = out_frames.get(skip..).unwrap_or_default();
        let take = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .min(usable.len());
        write_s16(bytes, out, usable.get(..take).unwrap_or_default(), written)
    }
}

/// Writes samples in [-1, 1] as s16le (clamped, rounded).
fn write_s16<W: Write>(
    bytes: &mut Vec<u8>,
    out: &mut W,
    samples: &[f32],
    written: &mut u64,
) -> Result<(), DecodeError> {
    bytes.clear();
    for s in samples {
        // The decoders scale by 2^15, so this returns 16-bit input exactly; `as`
        // saturates and maps NaN to 0: no sample can panic or wrap.
        let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(bytes)
        .map_err(|e| DecodeError::Output(e.to_string()))?;
    *written += samples.len() as u64;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests;

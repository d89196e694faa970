//! When a WAV file that another process writes (Asterisk's MixMonitor, for a conference
//! recording) is final, and what it holds.
//!
//! `format_wav` writes a 44-byte header with zero sizes when it opens the file, appends
//! samples, and writes the RIFF and `data` sizes when it closes it (CALL-CONTROL.md §2.7).
//! So a file is final exactly when its header's sizes describe its length. [`check`] says
//! that from the first bytes and the length, with no I/O (the same two-step shape as the
//! AMI codec: the bytes in, a verdict out; too few bytes is "pending", not an error).
//! [`wait_final`] polls a path with it until the file is final or a limit passes;
//! [`describe`] hashes a final file by streaming it.
//!
//! This module never writes, moves or deletes a file, and knows nothing of conferences,
//! the store or HTTP.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How many of a file's first bytes [`check`] looks at: a canonical header with a few
/// metadata chunks (`LIST`, `fact`) before `data` fits; Asterisk's is 44 bytes.
pub const HEAD_MAX: usize = 4096;

/// The first pause of [`wait_final`] between two looks at the file.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause of [`wait_final`]: pauses double from [`FIRST_PAUSE`] up to this.
pub const LONGEST_PAUSE: Duration = Duration::from_millis(200);

/// The `format` of an uncompressed PCM `fmt ` chunk.
const WAVE_FORMAT_PCM: u16 = 1;

/// What a final canonical PCM WAV file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFacts {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// Where the samples start (44 for Asterisk's files).
    pub data_offset: u64,
    /// How many bytes of samples follow.
    pub data_len: u64,
    /// The file's length these facts describe.
    pub file_len: u64,
    /// Whole frames played at `sample_rate`, in milliseconds (rounded down).
    pub duration_ms: u64,
}

/// Why a file is not final yet: each of these may change while the writer works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// There is no file at the path (yet).
    Missing,
    /// The file ends inside its header (`have` bytes): the header is not flushed yet.
    ShortHeader { have: u64 },
    /// The RIFF size is still zero: the writer has not closed the file.
    SizesUnwritten,
    /// The header's sizes describe another length than the file's: it is still being
    /// written (or was cut).
    SizesDisagree {
        riff_size: u32,
        data_len: u32,
        file_len: u64,
    },
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pending::Missing => write!(f, "the file does not exist"),
            Pending::ShortHeader { have } => {
                write!(f, "the file ends inside its header ({have} bytes)")
            }
            Pending::SizesUnwritten => write!(
                f,
                "its header's sizes are still zero (the writer has not closed it)"
            ),
            Pending::SizesDisagree {
                riff_size,
                data_len,
                file_len,
            } => write!(
                f,
                "its header says RIFF {riff_size} and data {data_len} bytes but the file has \
                 {file_len} bytes (still being written)"
            ),
        }
    }
}

/// Why a file can never become a final canonical PCM WAV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("it does not start with RIFF")]
    NotRiff,
    #[error("its RIFF form is not WAVE")]
    NotWave,
    #[error("its header (the chunks before data) is longer than {HEAD_MAX} bytes")]
    HeaderTooLong,
    #[error("its data chunk comes before any fmt chunk")]
    DataBeforeFmt,
    #[error("its fmt chunk has {0} bytes, fewer than PCM's 16")]
    FmtTooShort(u32),
    #[error("its format is {0:#06x}, not PCM (1)")]
    NotPcm(u16),
    #[error("its fmt chunk is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// What [`check`] says of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Final(WavFacts),
    Pending(Pending),
    Invalid(Invalid),
}

/// Whether the file whose first bytes are `head` and whose length is `file_len` is a
/// complete canonical PCM WAV: it starts `RIFF <size> WAVE`, the RIFF size is
/// `file_len − 8`, a PCM `fmt ` chunk comes before the `data` chunk (other chunks such
/// as `LIST` may sit between them), and the `data` chunk ends the file (plus RIFF's pad
/// byte after an odd size). For Asterisk's 44-byte header: data size == `file_len − 44`.
///
/// `head` must hold at least the first `min(file_len, HEAD_MAX)` bytes. A header that
/// would end past [`HEAD_MAX`] is [`Invalid::HeaderTooLong`]; one that ends past `head`
/// but within [`HEAD_MAX`] is [`Pending::ShortHeader`] (the file was that short when
/// read). Sans-I/O and panic-free on any bytes.
#[must_use]
pub fn check(head: &[u8], file_len: u64) -> Verdict {
    match header(head) {
        Ok(header) => header.verdict(file_len),
        Err(Problem::Short) => Verdict::Pending(Pending::ShortHeader {
            have: head.len() as u64,
        }),
        Err(Problem::Invalid(i)) => Verdict::Invalid(i),
    }
}

/// The parts of a header the verdict needs.
#[derive(Debug)]
struct Header {
    riff_size: u32,
    sample_rate: u32,
    channels: u16,
    bits_per_sample: u16,
    block_align: u16,
    data_offset: u64,
    data_len: u32,
}

impl Header {
    fn verdict(&self, file_len: u64) -> Verdict {
        if self.riff_size == 0 {
            return Verdict::Pending(Pending::SizesUnwritten);
        }
        let data_len = u64::from(self.data_len);
        let data_end = self.data_offset + data_len + (data_len & 1);
        if u64::from(self.riff_size) + 8 != file_len || data_end != file_len {
            return Verdict::Pending(Pending::SizesDisagree {
                riff_size: self.riff_size,
                data_len: self.data_len,
                file_len,
            });
        }
        let frames = data_len / u64::from(self.block_align);
        Verdict::Final(WavFacts {
            sample_rate: self.sample_rate,
            channels: self.channels,
            bits_per_sample: self.bits_per_sample,
            data_offset: self.data_offset,
            data_len,
            file_len,
            duration_ms: frames * 1000 / u64::from(self.sample_rate),
        })
    }
}

#[derive(Debug)]
enum Problem {
    /// The header goes on past the bytes given.
    Short,
    Invalid(Invalid),
}

/// The PCM format a `fmt ` chunk names.
#[derive(Debug)]
struct Format {
    sample_rate: u32,
    channels: u16,
    bits_per_sample: u16,
    block_align: u16,
}

/// `head[at..at + n]`, or why it is not there.
fn bytes(head: &[u8], at: u64, n: u64) -> Result<&[u8], Problem> {
    let end = at + n;
    if end > HEAD_MAX as u64 {
        return Err(Problem::Invalid(Invalid::HeaderTooLong));
    }
    let (Ok(at), Ok(end)) = (usize::try_from(at), usize::try_from(end)) else {
        return Err(Problem::Invalid(Invalid::HeaderTooLong));
    };
    // Within HEAD_MAX, bytes missing from `head` were not in the file when it was read.
    head.get(at..end).ok_or(Problem::Short)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut le = [0; 2];
    if let Some(src) = b.get(at..at + 2) {
        le.copy_from_slice(src);
    }
    u16::from_le_bytes(le)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut le = [0; 4];
    if let Some(src) = b.get(at..at + 4) {
        le.copy_from_slice(src);
    }
    u32::from_le_bytes(le)
}

/// Reads `RIFF size WAVE`, then chunk after chunk (`id`, little-endian `size`, body padded
/// to an even length) up to the `data` chunk's header.
fn header(head: &[u8]) -> Result<Header, Problem> {
    // The magic is checked on whatever part of it is there, so a short file of other
    // bytes is refused at once rather than waited for.
    let magic_have = head.len().min(4);
    if head.get(..magic_have) != b"RIFF".get(..magic_have) {
        return Err(Problem::Invalid(Invalid::NotRiff));
    }
    let riff = bytes(head, 0, 12)?;
    if riff.get(8..12) != Some(b"WAVE") {
        return Err(Problem::Invalid(Invalid::NotWave));
    }
    let riff_size = u32_at(riff, 4);
    let mut format = None;
    let mut at: u64 = 12;
    loop {
        let chunk = bytes(head, at, 8)?;
        let size = u32_at(chunk, 4);
        let body = at + 8;
        match chunk.get(..4) {
            Some(b"fmt ") => format = Some(fmt_chunk(head, body, size)?),
            Some(b"data") => {
                let Some(f) = format else {
                    return Err(Problem::Invalid(Invalid::DataBeforeFmt));
                };
                return Ok(Header {
                    riff_size,
                    sample_rate: f.sample_rate,
                    channels: f.channels,
                    bits_per_sample: f.bits_per_sample,
                    block_align: f.block_align,
                    data_offset: body,
                    data_len: size,
                });
            }
            _ => {}
        }
        let size = u64::from(size);
        at = body + size + (size & 1);
    }
}

/// A `fmt ` chunk of `size` bytes at `at`: PCM, with sizes that agree with each other.
fn fmt_chunk(head: &[u8], at: u64, size: u32) -> Result<Format, Problem> {
    if size < 16 {
        return Err(Problem::Invalid(Invalid::FmtTooShort(size)));
    }
    let b = bytes(head, at, 16)?;
    let tag = u16_at(b, 0);
    if tag != WAVE_FORMAT_PCM {
        return Err(Problem::Invalid(Invalid::NotPcm(tag)));
    }
    let channels = u16_at(b, 2);
    let sample_rate = u32_at(b, 4);
    let byte_rate = u32_at(b, 8);
    let block_align = u16_at(b, 12);
    let bits_per_sample = u16_at(b, 14);
    let inconsistent = |what| Err(Problem::Invalid(Invalid::Inconsistent(what)));
    if channels == 0 {
        return inconsistent("no channels");
    }
    if sample_rate == 0 {
        return inconsistent("a sample rate of 0");
    }
    if !matches!(bits_per_sample, 8 | 16 | 24 | 32) {
        return inconsistent("bits per sample not 8, 16, 24 or 32");
    }
    if u32::from(block_align) != u32::from(channels) * u32::from(bits_per_sample / 8) {
        return inconsistent("block align is not channels × bytes per sample");
    }
    if u64::from(byte_rate) != u64::from(sample_rate) * u64::from(block_align) {
        return inconsistent("byte rate is not sample rate × block align");
    }
    Ok(Format {
        sample_rate,
        channels,
        bits_per_sample,
        block_align,
    })
}

/// Why a WAV file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// [`wait_final`] gave up: the file was still `last` when the limit passed.
    #[error("{} is not final after {waited:?}: {last}", path.display())]
    NotFinal {
        path: PathBuf,
        waited: Duration,
        last: Pending,
    },
    /// [`describe`] found the file not final.
    #[error("{} is not a final WAV: {state}", path.display())]
    Unfinished { path: PathBuf, state: Pending },
    #[error("{} is not a canonical PCM WAV: {problem}", path.display())]
    Invalid { path: PathBuf, problem: Invalid },
    #[error("{} cannot be read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One look at the file: its first bytes, then its length.
fn look(path: &Path) -> io::Result<Verdict> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Verdict::Pending(Pending::Missing));
        }
        Err(e) => return Err(e),
    };
    let mut head = Vec::with_capacity(HEAD_MAX);
    (&file).take(HEAD_MAX as u64).read_to_end(&mut head)?;
    // The length after the header: sizes written at close describe a length the file
    // already has by then, so a final header is never compared with an older length.
    let len = file.metadata()?.len();
    Ok(check(&head, len))
}

/// The pause after `pause`: doubled, at most [`LONGEST_PAUSE`].
fn next_pause(pause: Duration) -> Duration {
    (pause * 2).min(LONGEST_PAUSE)
}

/// Waits until the WAV file at `path` is final ([`check`]), looking at it after pauses
/// growing from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`], for at most `limit`. A missing
/// file, a short header, zero sizes or sizes that disagree with the length are waited
/// out; a file that can never be a PCM WAV is refused at once.
///
/// # Errors
/// [`WavError::NotFinal`] with the last state seen once `limit` has passed;
/// [`WavError::Invalid`]; [`WavError::Io`] when the file cannot be read (other than
/// missing).
///
/// Cancel-safe: it only reads.
pub async fn wait_final(path: &Path, limit: Duration) -> Result<WavFacts, WavError> {
    let start = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let owned = path.to_path_buf();
        let verdict = tokio::task::spawn_blocking(move || look(&owned))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| WavError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let last = match verdict {
            Verdict::Final(facts) => return Ok(facts),
            Verdict::Invalid(problem) => {
                return Err(WavError::Invalid {
                    path: path.to_path_buf(),
                    problem,
                });
            }
            Verdict::Pending(p) => p,
        };
        let waited = start.elapsed();
        let Some(left) = limit.checked_sub(waited).filter(|l| !l.is_zero()) else {
            return Err(WavError::NotFinal {
                path: path.to_path_buf(),
                waited,
                last,
            });
        };
        tokio::time::sleep(pause.min(left)).await;
        pause = next_pause(pause);
    }
}

/// What a finished file is, as served and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFacts {
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
    pub duration_ms: u64,
}

/// The size, SHA-256 and duration of the final WAV file at `path`, all three from one
/// streaming read (64 KiB at a time, off the async runtime), so they describe the same
/// bytes even if the file changed since [`wait_final`].
///
/// # Errors
/// [`WavError::Unfinished`] or [`WavError::Invalid`] when the bytes read are not a final
/// PCM WAV (a missing file is [`WavError::Io`]: describing comes after waiting).
pub async fn describe(path: &Path) -> Result<FileFacts, WavError> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || digest(&owned))
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|source| WavError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    match check(&read.head, read.size) {
        Verdict::Final(facts) => Ok(FileFacts {
            size: read.size,
            sha256: read.sha256,
            duration_ms: facts.duration_ms,
        }),
        Verdict::Pending(state) => Err(WavError::Unfinished {
            path: path.to_path_buf(),
            state,
        }),
        Verdict::Invalid(problem) => Err(WavError::Invalid {
            path: path.to_path_buf(),
            problem,
        }),
    }
}

/// One pass over a file.
#[derive(Debug)]
struct Digested {
    head: Vec<u8>,
    size: u64,
    sha256: String,
}

/// Where [`digest`] copies the file: the hash, the first bytes, the count.
struct Sink {
    hasher: Sha256,
    head: Vec<u8>,
    size: u64,
}

impl io::Write for Sink {
    fn write(&mut self, chunk: &[u8]) -> io::Result<usize> {
        self.hasher.update(chunk);
        let room = HEAD_MAX.saturating_sub(self.head.len()).min(chunk.len());
        self.head
            .extend_from_slice(chunk.get(..room).unwrap_or_default());
        self.size += chunk.len() as u64;
        Ok(chunk.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn digest(path: &Path) -> io::Result<Digested> {
    let file = std::fs::File::open(path)?;
    let mut sink = Sink {
        hasher: Sha256::new(),
        head: Vec::with_capacity(HEAD_MAX),
        size: 0,
    };
    // `io::copy` streams through the reader's 64 KiB buffer (and retries interrupted
    // reads), so the file is never held whole.
    io::copy(
        &mut io::BufReader::with_capacity(64 * 1024, file),
        &mut sink,
    )?;
    Ok(Digested {
        head: sink.head,
        size: sink.size,
        sha256: hex::encode(sink.hasher.finalize()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The header Asterisk's `format_wav` writes: 8 kHz 16-bit mono, `data_len` bytes
    /// of samples announced (0 while it writes, the real count once it closed the file).
    fn asterisk_header(riff_size: u32, data_len: u32) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&riff_size.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&8000u32.to_le_bytes());
        h.extend_from_slice(&16000u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&data_len.to_le_bytes());
        h
    }

    /// A final Asterisk file of `samples` samples.
    fn final_file(samples: u32) -> Vec<u8> {
        let data = samples * 2;
        let mut f = asterisk_header(36 + data, data);
        f.extend((0..data).map(|i| (i % 251) as u8));
        f
    }

    fn facts(v: Verdict) -> WavFacts {
        match v {
            Verdict::Final(f) => f,
            other => panic!("not final: {other:?}"),
        }
    }

    #[test]
    fn a_closed_asterisk_recording_is_final_with_its_format_and_duration() {
        // 5 s at 8 kHz: the 80 044-byte file CALL-CONTROL.md §2.7 measured.
        let file = final_file(40_000);
        assert_eq!(file.len(), 80_044);
        let f = facts(check(&file[..HEAD_MAX], file.len() as u64));
        assert_eq!(
            f,
            WavFacts {
                sample_rate: 8000,
                channels: 1,
                bits_per_sample: 16,
                data_offset: 44,
                data_len: 80_000,
                file_len: 80_044,
                duration_ms: 5000,
            }
        );
    }

    #[test]
    fn duration_counts_whole_frames_of_every_channel_rounded_down() {
        // 16 kHz stereo 16-bit: 4 bytes a frame; 1601 frames and a stray byte = 100.06 ms.
        let mut h = asterisk_header(0, 0);
        h[22..24].copy_from_slice(&2u16.to_le_bytes());
        h[24..28].copy_from_slice(&16_000u32.to_le_bytes());
        h[28..32].copy_from_slice(&64_000u32.to_le_bytes());
        h[32..34].copy_from_slice(&4u16.to_le_bytes());
        let data: u32 = 1601 * 4 + 2;
        h[4..8].copy_from_slice(&(36 + data).to_le_bytes());
        h[40..44].copy_from_slice(&data.to_le_bytes());
        let len = 44 + u64::from(data);
        let f = facts(check(&h, len));
        assert_eq!((f.channels, f.sample_rate, f.duration_ms), (2, 16_000, 100));
    }

    #[test]
    fn an_empty_recording_closed_with_its_sizes_is_final_and_lasts_nothing() {
        let f = facts(check(&asterisk_header(36, 0), 44));
        assert_eq!((f.data_len, f.duration_ms), (0, 0));
    }

    #[test]
    fn a_file_still_being_written_has_zero_sizes_and_is_pending() {
        let mut file = asterisk_header(0, 0);
        file.extend_from_slice(&[0; 3200]);
        assert_eq!(
            check(&file, file.len() as u64),
            Verdict::Pending(Pending::SizesUnwritten)
        );
        assert_eq!(
            check(&file[..44], 44),
            Verdict::Pending(Pending::SizesUnwritten)
        );
    }

    #[test]
    fn a_file_longer_or_shorter_than_its_header_says_is_pending() {
        let file = final_file(100);
        let len = file.len() as u64;
        for other in [len + 2, len - 2] {
            assert_eq!(
                check(&file, other),
                Verdict::Pending(Pending::SizesDisagree {
                    riff_size: 236,
                    data_len: 200,
                    file_len: other
                }),
                "{other}"
            );
        }
        // Only the RIFF size wrong, or only the data size: not final either.
        let mut riff_off = file.clone();
        riff_off[4..8].copy_from_slice(&238u32.to_le_bytes());
        assert!(matches!(
            check(&riff_off, len),
            Verdict::Pending(Pending::SizesDisagree { .. })
        ));
        let mut data_off = file;
        data_off[40..44].copy_from_slice(&198u32.to_le_bytes());
        assert!(matches!(
            check(&data_off, len),
            Verdict::Pending(Pending::SizesDisagree { .. })
        ));
    }

    #[test]
    fn every_prefix_of_a_header_is_pending_never_invalid() {
        let file = final_file(10);
        for n in 0..44 {
            assert_eq!(
                check(&file[..n], n as u64),
                Verdict::Pending(Pending::ShortHeader { have: n as u64 }),
                "{n} bytes"
            );
        }
    }

    #[test]
    fn chunks_between_fmt_and_data_are_skipped_with_their_pad_byte() {
        let base = asterisk_header(0, 0);
        let mut h = base[..36].to_vec();
        // A LIST chunk of odd size: RIFF pads its body to an even length.
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&5u32.to_le_bytes());
        h.extend_from_slice(b"INFOx\0");
        h.extend_from_slice(b"data");
        h.extend_from_slice(&8u32.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        let len = h.len() as u64;
        h[4..8].copy_from_slice(&(len as u32 - 8).to_le_bytes());
        let f = facts(check(&h, len));
        assert_eq!((f.data_offset, f.data_len, f.duration_ms), (58, 8, 0));
    }

    #[test]
    fn a_chunk_before_fmt_is_skipped_too() {
        let base = final_file(4);
        let mut h = base[..12].to_vec();
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&base[12..]);
        let len = h.len() as u64;
        h[4..8].copy_from_slice(&(len as u32 - 8).to_le_bytes());
        assert_eq!(facts(check(&h, len)).data_offset, 56);
    }

    #[test]
    fn a_chunk_is_skipped_whole_even_when_its_body_looks_like_a_data_chunk() {
        let base = final_file(4);
        let mut h = base[..36].to_vec();
        h.extend_from_slice(b"junk");
        h.extend_from_slice(&8u32.to_le_bytes());
        h.extend_from_slice(b"data\x10\0\0\0");
        h.extend_from_slice(&base[36..]);
        let len = h.len() as u64;
        h[4..8].copy_from_slice(&(len as u32 - 8).to_le_bytes());
        let f = facts(check(&h, len));
        assert_eq!((f.data_offset, f.data_len), (60, 8));
    }

    #[test]
    fn an_odd_data_size_is_followed_by_its_pad_byte() {
        // 8-bit mono, 3 samples: data 3 bytes + 1 pad byte; the RIFF size counts the pad.
        let mut h = asterisk_header(0, 0);
        h[28..32].copy_from_slice(&8000u32.to_le_bytes());
        h[32..34].copy_from_slice(&1u16.to_le_bytes());
        h[34..36].copy_from_slice(&8u16.to_le_bytes());
        h[40..44].copy_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&[1, 2, 3, 0]);
        h[4..8].copy_from_slice(&40u32.to_le_bytes());
        assert_eq!(facts(check(&h, 48)).data_len, 3);
        assert!(matches!(
            check(&h[..47], 47),
            Verdict::Pending(Pending::SizesDisagree { .. })
        ));
    }

    #[test]
    fn other_files_are_invalid_at_once_even_when_short() {
        assert_eq!(check(b"RIFX", 4), Verdict::Invalid(Invalid::NotRiff));
        assert_eq!(check(b"ID3", 3), Verdict::Invalid(Invalid::NotRiff));
        assert_eq!(
            check(b"RIFF\0\0\0\0AVI LIST", 16),
            Verdict::Invalid(Invalid::NotWave)
        );
    }

    #[test]
    fn a_format_other_than_pcm_is_invalid() {
        // 7 = µ-law, 0xfffe = WAVE_FORMAT_EXTENSIBLE (not accepted, even around PCM).
        for tag in [7u16, 3, 0xfffe] {
            let mut h = final_file(4);
            h[20..22].copy_from_slice(&tag.to_le_bytes());
            assert_eq!(
                check(&h, h.len() as u64),
                Verdict::Invalid(Invalid::NotPcm(tag))
            );
        }
    }

    #[test]
    fn a_fmt_chunk_that_contradicts_itself_is_invalid() {
        let cases: [(usize, &[u8], &str); 6] = [
            (22, &0u16.to_le_bytes(), "no channels"),
            (24, &0u32.to_le_bytes(), "a sample rate of 0"),
            (
                34,
                &12u16.to_le_bytes(),
                "bits per sample not 8, 16, 24 or 32",
            ),
            (
                34,
                &0u16.to_le_bytes(),
                "bits per sample not 8, 16, 24 or 32",
            ),
            (
                32,
                &4u16.to_le_bytes(),
                "block align is not channels × bytes per sample",
            ),
            (
                28,
                &8000u32.to_le_bytes(),
                "byte rate is not sample rate × block align",
            ),
        ];
        for (at, value, what) in cases {
            let mut h = final_file(4);
            h[at..at + value.len()].copy_from_slice(value);
            assert_eq!(
                check(&h, h.len() as u64),
                Verdict::Invalid(Invalid::Inconsistent(what)),
                "{what}"
            );
        }
        for bits in [8u16, 24, 32] {
            let mut h = final_file(24);
            let align = bits / 8;
            h[28..32].copy_from_slice(&(8000 * u32::from(align)).to_le_bytes());
            h[32..34].copy_from_slice(&align.to_le_bytes());
            h[34..36].copy_from_slice(&bits.to_le_bytes());
            let f = facts(check(&h, h.len() as u64));
            assert_eq!(f.bits_per_sample, bits);
            assert_eq!(f.duration_ms, 48 * 1000 / u64::from(align) / 8000);
        }
    }

    #[test]
    fn a_fmt_chunk_shorter_than_pcm_needs_is_invalid_and_a_longer_one_is_fine() {
        let mut h = final_file(4);
        h[16..20].copy_from_slice(&14u32.to_le_bytes());
        assert_eq!(
            check(&h, h.len() as u64),
            Verdict::Invalid(Invalid::FmtTooShort(14))
        );
        // An 18-byte fmt (with cbSize 0), as some writers emit.
        let base = final_file(4);
        let mut long = base[..16].to_vec();
        long.extend_from_slice(&18u32.to_le_bytes());
        long.extend_from_slice(&base[20..36]);
        long.extend_from_slice(&0u16.to_le_bytes());
        long.extend_from_slice(&base[36..]);
        let len = long.len() as u64;
        long[4..8].copy_from_slice(&(len as u32 - 8).to_le_bytes());
        assert_eq!(facts(check(&long, len)).data_offset, 46);
    }

    #[test]
    fn data_before_fmt_is_invalid() {
        let mut h = b"RIFF\x04\0\0\0WAVE".to_vec();
        h.extend_from_slice(b"data\0\0\0\0");
        assert_eq!(check(&h, 20), Verdict::Invalid(Invalid::DataBeforeFmt));
    }

    #[test]
    fn a_header_longer_than_head_max_is_invalid_but_one_just_inside_is_read() {
        let build = |junk: u32| {
            let base = final_file(4);
            let mut h = base[..36].to_vec();
            h.extend_from_slice(b"junk");
            h.extend_from_slice(&junk.to_le_bytes());
            h.extend(std::iter::repeat_n(0, junk as usize));
            h.extend_from_slice(&base[36..]);
            let len = h.len() as u64;
            h[4..8].copy_from_slice(&(len as u32 - 8).to_le_bytes());
            (h, len)
        };
        // The data chunk's header ends exactly at HEAD_MAX.
        let fits = HEAD_MAX as u32 - 36 - 8 - 8;
        let (h, len) = build(fits);
        assert_eq!(
            facts(check(&h[..HEAD_MAX], len)).data_offset,
            HEAD_MAX as u64
        );
        let (h, len) = build(fits + 2);
        assert_eq!(
            check(&h[..HEAD_MAX], len),
            Verdict::Invalid(Invalid::HeaderTooLong)
        );
        // A chunk size pointing far beyond any header.
        let mut huge = final_file(4)[..36].to_vec();
        huge.extend_from_slice(b"junk");
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check(&huge, u64::MAX),
            Verdict::Invalid(Invalid::HeaderTooLong)
        );
    }

    #[test]
    fn a_header_cut_inside_a_chunk_header_within_head_max_is_short_and_beyond_it_too_long() {
        let base = final_file(4);
        let with_junk = |junk: u32| {
            let mut h = base[..36].to_vec();
            h.extend_from_slice(b"junk");
            h.extend_from_slice(&junk.to_le_bytes());
            h.extend(std::iter::repeat_n(0, junk as usize));
            h.extend_from_slice(b"data");
            h
        };
        // The data chunk's header would end at HEAD_MAX: one byte short is pending.
        let h = with_junk(HEAD_MAX as u32 - 36 - 8 - 8);
        assert_eq!(
            check(&h, h.len() as u64),
            Verdict::Pending(Pending::ShortHeader {
                have: h.len() as u64
            })
        );
        // It would end past HEAD_MAX: no more bytes can make it acceptable.
        let h = with_junk(HEAD_MAX as u32 - 36 - 8 - 4);
        assert_eq!(h.len(), HEAD_MAX);
        assert_eq!(
            check(&h, 1_000_000),
            Verdict::Invalid(Invalid::HeaderTooLong)
        );
    }

    #[test]
    fn pauses_double_from_the_first_to_the_longest() {
        let mut pauses = vec![FIRST_PAUSE];
        while pauses.len() < 7 {
            pauses.push(next_pause(*pauses.last().unwrap()));
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 200, 200]);
    }

    #[tokio::test]
    async fn a_file_that_becomes_final_after_a_while_is_reported_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        let file = final_file(8000);
        let writer = {
            let path = path.clone();
            let file = file.clone();
            tokio::spawn(async move {
                // Written as format_wav does: zero sizes, samples, then the sizes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut growing = asterisk_header(0, 0);
                std::fs::write(&path, &growing).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                growing.extend_from_slice(&file[44..]);
                std::fs::write(&path, &growing).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::fs::write(&path, &file).unwrap();
            })
        };
        let f = wait_final(&path, Duration::from_secs(20)).await.unwrap();
        writer.await.unwrap();
        assert_eq!((f.file_len, f.duration_ms), (16_044, 1000));
    }

    #[tokio::test]
    async fn a_file_that_stays_partial_is_refused_at_the_limit_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        let mut growing = asterisk_header(0, 0);
        growing.extend_from_slice(&[0; 160]);
        std::fs::write(&path, &growing).unwrap();
        let limit = Duration::from_millis(300);
        let e = wait_final(&path, limit).await.unwrap_err();
        let WavError::NotFinal { waited, last, .. } = &e else {
            panic!("{e:?}");
        };
        assert!(*waited >= limit, "{waited:?}");
        assert_eq!(*last, Pending::SizesUnwritten);
        assert!(e.to_string().contains("sizes are still zero"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_file_is_waited_for_and_named_missing_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let e = wait_final(&dir.path().join("none.wav"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                WavError::NotFinal {
                    last: Pending::Missing,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[tokio::test]
    async fn a_file_that_is_no_wav_is_refused_without_waiting_for_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        std::fs::write(&path, b"ID3\x04 an mp3").unwrap();
        // A limit far beyond the test's own: returning at all proves it did not wait.
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            wait_final(&path, Duration::from_secs(3600)),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        assert!(
            matches!(
                e,
                WavError::Invalid {
                    problem: Invalid::NotRiff,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_opened_for_another_reason_than_absence_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        // A regular file used as a directory: ENOTDIR, not "not found".
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            wait_final(&file.join("rec.wav"), Duration::from_secs(3600)),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        assert!(matches!(e, WavError::Io { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_directory_is_an_io_error_not_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let e = tokio::time::timeout(
            Duration::from_secs(30),
            wait_final(dir.path(), Duration::from_secs(3600)),
        )
        .await
        .expect("refused at once")
        .unwrap_err();
        assert!(matches!(e, WavError::Io { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn describe_gives_the_size_sha256_and_duration_of_a_final_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        // Larger than the 64 KiB read buffer, so the hash spans several reads.
        let file = final_file(100_000);
        std::fs::write(&path, &file).unwrap();
        let f = describe(&path).await.unwrap();
        assert_eq!(f.size, 200_044);
        assert_eq!(f.duration_ms, 12_500);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(&file)));
        // And a known vector: the SHA-256 of a fixed 44-byte empty recording (computed
        // by Python's hashlib, not by the code under test).
        std::fs::write(&path, asterisk_header(36, 0)).unwrap();
        let empty = describe(&path).await.unwrap();
        assert_eq!(
            empty.sha256,
            "4f8734c5e13ac599e168cf247a51c1dd0758537ce00bf16d7fed1a3d14d07041"
        );
    }

    #[tokio::test]
    async fn describe_refuses_a_file_that_is_not_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.wav");
        std::fs::write(&path, asterisk_header(0, 0)).unwrap();
        let e = describe(&path).await.unwrap_err();
        assert!(
            matches!(
                e,
                WavError::Unfinished {
                    state: Pending::SizesUnwritten,
                    ..
                }
            ),
            "{e:?}"
        );
        std::fs::write(&path, b"RIFFxxxxAVI ").unwrap();
        assert!(matches!(
            describe(&path).await.unwrap_err(),
            WavError::Invalid {
                problem: Invalid::NotWave,
                ..
            }
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            describe(&path).await.unwrap_err(),
            WavError::Io { .. }
        ));
    }
}

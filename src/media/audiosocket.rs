//! The AudioSocket wire protocol (CALL-CONTROL.md §2.8), sans-I/O: a frame type and a
//! tokio-util codec. It owns nothing else — no sockets, no streams, no listeners.
//!
//! ```text
//! frame   = kind length payload
//! kind    = 1 byte    (0x00 hangup, 0x01 uuid, 0x03 DTMF, 0x10..=0x18 signed linear
//!                      at 8, 12, 16, 24, 32, 44.1, 48, 96, 192 kHz, 0xff error)
//! length  = 2 bytes, big-endian, the payload's length
//! payload = length bytes (audio: little-endian i16 samples)
//! ```
//!
//! A partial frame is `Ok(None)` (need more bytes), never an error. The header is
//! judged as soon as its 3 bytes are in: an unknown kind or a length over
//! `max_frame_bytes` is an error at once, before any payload is read or buffered, so
//! a peer can never make the decoder allocate more than `max_frame_bytes`. Every error
//! ends the connection: after a bad header nothing says where the next frame starts.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes in a frame header: kind + big-endian u16 length.
pub const HEADER_BYTES: usize = 3;

/// The default `max_frame_bytes`: six times a 20 ms slin16 frame (640 B), room for
/// a 40 ms frame at 48 kHz (3 840 B), far under the 65 535 the length field allows.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4096;

/// The sample rates of AudioSocket's signed-linear kinds (0x10..=0x18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleRate {
    Hz8000,
    Hz12000,
    Hz16000,
    Hz24000,
    Hz32000,
    Hz44100,
    Hz48000,
    Hz96000,
    Hz192000,
}

impl SampleRate {
    const ALL: [(u8, SampleRate, u32); 9] = [
        (0x10, SampleRate::Hz8000, 8_000),
        (0x11, SampleRate::Hz12000, 12_000),
        (0x12, SampleRate::Hz16000, 16_000),
        (0x13, SampleRate::Hz24000, 24_000),
        (0x14, SampleRate::Hz32000, 32_000),
        (0x15, SampleRate::Hz44100, 44_100),
        (0x16, SampleRate::Hz48000, 48_000),
        (0x17, SampleRate::Hz96000, 96_000),
        (0x18, SampleRate::Hz192000, 192_000),
    ];

    fn from_kind(kind: u8) -> Option<SampleRate> {
        SampleRate::ALL
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, r, _)| *r)
    }

    /// The frame kind carrying audio at this rate.
    pub fn kind(self) -> u8 {
        SampleRate::ALL
            .iter()
            .find(|(_, r, _)| *r == self)
            .map_or(0x10, |(k, _, _)| *k)
    }

    /// Samples per second.
    pub fn hz(self) -> u32 {
        SampleRate::ALL
            .iter()
            .find(|(_, r, _)| *r == self)
            .map_or(8_000, |(_, _, hz)| *hz)
    }
}

/// A channel's AudioSocket identifier: the 16 bytes of the `0x01` frame, written as
/// the dial string writes it (`AudioSocket/host:port/<uuid>/…`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamUuid([u8; 16]);

impl StreamUuid {
    pub fn from_bytes(bytes: [u8; 16]) -> StreamUuid {
        StreamUuid(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A random version-4 UUID (variant 10), as Asterisk's `ast_uuid_parse_str` reads it.
    pub fn random() -> StreamUuid {
        let mut bytes: [u8; 16] = rand::random();
        if let Some(b) = bytes.get_mut(6) {
            *b = (*b & 0x0f) | 0x40;
        }
        if let Some(b) = bytes.get_mut(8) {
            *b = (*b & 0x3f) | 0x80;
        }
        StreamUuid(bytes)
    }
}

/// The canonical form: lowercase hex, `8-4-4-4-12`.
impl fmt::Display for StreamUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for StreamUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamUuid({self})")
    }
}

/// A text that is not `8-4-4-4-12` hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID (8-4-4-4-12 hex digits)")]
pub struct BadUuid;

/// Reads the canonical form; hex digits of either case (Asterisk prints what it was given).
impl FromStr for StreamUuid {
    type Err = BadUuid;
    fn from_str(s: &str) -> Result<StreamUuid, BadUuid> {
        let s = s.as_bytes();
        if s.len() != 36 {
            return Err(BadUuid);
        }
        let mut bytes = [0u8; 16];
        let mut digits = s
            .iter()
            .enumerate()
            .filter(|(i, _)| !matches!(i, 8 | 13 | 18 | 23))
            .map(|(_, c)| c);
        for (i, c) in s.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) && *c != b'-' {
                return Err(BadUuid);
            }
        }
        for byte in &mut bytes {
            let (Some(hi), Some(lo)) = (digits.next(), digits.next()) else {
                return Err(BadUuid);
            };
            *byte = (hex_digit(*hi).ok_or(BadUuid)? << 4) | hex_digit(*lo).ok_or(BadUuid)?;
        }
        Ok(StreamUuid(bytes))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One AudioSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `0x00`: the channel hung up (any payload is ignored).
    Hangup,
    /// `0x01`: the channel's identifier, the first frame Asterisk sends.
    Uuid(StreamUuid),
    /// `0x03`: one DTMF digit, as its ASCII byte.
    Dtmf(u8),
    /// `0x10..=0x18`: signed-linear little-endian samples (an even number of bytes).
    Audio { rate: SampleRate, samples: Bytes },
    /// `0xff`: an error; the payload, usually one code byte, kept as sent.
    Error(Bytes),
}

const KIND_HANGUP: u8 = 0x00;
const KIND_UUID: u8 = 0x01;
const KIND_DTMF: u8 = 0x03;
const KIND_ERROR: u8 = 0xff;

/// Why the byte stream is not AudioSocket; the connection must end.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("uuid frame of {0} bytes (16 expected)")]
    BadUuid(usize),
    #[error("DTMF frame of {0} bytes (1 expected)")]
    BadDtmf(usize),
    #[error("audio frame of an odd length ({0} bytes)")]
    OddAudio(usize),
    #[error("the stream ended inside a frame ({0} bytes left)")]
    Truncated(usize),
    #[error("payload of {0} bytes does not fit the u16 length field")]
    Unencodable(usize),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The codec: [`Frame`]s in and out, payloads bounded by `max_frame_bytes`.
#[derive(Debug, Clone)]
pub struct AudioSocketCodec {
    max_frame_bytes: usize,
}

impl AudioSocketCodec {
    /// A codec refusing payloads over `max_frame_bytes` (capped at the length field's
    /// 65 535, which no frame can exceed anyway).
    pub fn new(max_frame_bytes: usize) -> AudioSocketCodec {
        AudioSocketCodec {
            max_frame_bytes: max_frame_bytes.min(usize::from(u16::MAX)),
        }
    }
}

impl Default for AudioSocketCodec {
    fn default() -> Self {
        AudioSocketCodec::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

/// The header's kind and length, judged before the payload is awaited.
fn header(src: &[u8], max: usize) -> Result<Option<(u8, usize)>, FrameError> {
    let [kind, hi, lo, ..] = *src else {
        return Ok(None);
    };
    let known = matches!(kind, KIND_HANGUP | KIND_UUID | KIND_DTMF | KIND_ERROR)
        || SampleRate::from_kind(kind).is_some();
    if !known {
        return Err(FrameError::UnknownKind(kind));
    }
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some((kind, len)))
}

/// The frame of a known `kind` from its whole payload.
fn frame(kind: u8, payload: Bytes) -> Result<Frame, FrameError> {
    Ok(match kind {
        KIND_HANGUP => Frame::Hangup,
        KIND_UUID => {
            let bytes = <[u8; 16]>::try_from(payload.as_ref())
                .map_err(|_| FrameError::BadUuid(payload.len()))?;
            Frame::Uuid(StreamUuid(bytes))
        }
        KIND_DTMF => match *payload.as_ref() {
            [digit] => Frame::Dtmf(digit),
            _ => return Err(FrameError::BadDtmf(payload.len())),
        },
        KIND_ERROR => Frame::Error(payload),
        audio => match SampleRate::from_kind(audio) {
            Some(rate) if payload.len() % 2 == 0 => Frame::Audio {
                rate,
                samples: payload,
            },
            Some(_) => return Err(FrameError::OddAudio(payload.len())),
            None => return Err(FrameError::UnknownKind(audio)),
        },
    })
}

impl Decoder for AudioSocketCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some((kind, len)) = header(src, self.max_frame_bytes)? else {
            return Ok(None);
        };
        let whole = HEADER_BYTES + len;
        if src.len() < whole {
            // Room for exactly this frame, which the limit bounds.
            src.reserve(whole - src.len());
            return Ok(None);
        }
        src.advance(HEADER_BYTES);
        let payload = src.split_to(len).freeze();
        frame(kind, payload).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len())),
        }
    }
}

impl Encoder<Frame> for AudioSocketCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let dtmf;
        let (kind, payload): (u8, &[u8]) = match &frame {
            Frame::Hangup => (KIND_HANGUP, &[]),
            Frame::Uuid(uuid) => (KIND_UUID, uuid.as_bytes()),
            Frame::Dtmf(digit) => {
                dtmf = [*digit];
                (KIND_DTMF, &dtmf)
            }
            Frame::Audio { rate, samples } => (rate.kind(), samples.as_ref()),
            Frame::Error(payload) => (KIND_ERROR, payload.as_ref()),
        };
        let len =
            u16::try_from(payload.len()).map_err(|_| FrameError::Unencodable(payload.len()))?;
        dst.reserve(HEADER_BYTES + payload.len());
        dst.put_u8(kind);
        dst.put_u16(len);
        dst.put_slice(payload);
        Ok(())
    }
}

/// Every frame of `bytes` read at once, up to the first error (returned with the frames
/// before it): the reference the fuzz target and the corpus test compare a stream cut
/// into reads against.
pub fn decode_all(bytes: &[u8], max_frame_bytes: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut codec = AudioSocketCodec::new(max_frame_bytes);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests;

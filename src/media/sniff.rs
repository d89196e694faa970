//! What a fetched body really is, from its bytes alone: a RIFF/WAVE file or an MPEG
//! audio Layer III stream (MP3). The URL's name and the server's `Content-Type` are
//! never asked: an HTML error page served as `song.mp3` is not audio.
//!
//! An MP3 may start with ID3v2 tags; after them (or at byte 0) must stand a valid
//! Layer III frame header, and when the body goes on past that frame, a second valid
//! header of the same stream (version, layer, sample rate) must stand where the first
//! one's length says. Sniffing only reads headers; it never allocates.

/// The kinds of audio medcall converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioKind {
    Wav,
    Mp3,
}

impl AudioKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AudioKind::Wav => "wav",
            AudioKind::Mp3 => "mp3",
        }
    }
}

/// The kind of audio `bytes` hold, or `None` when they are not WAV or MP3.
pub fn sniff(bytes: &[u8]) -> Option<AudioKind> {
    audio_start(bytes).map(|(kind, _)| kind)
}

/// The kind and the offset where the audio stream itself starts (after any ID3v2
/// tags of an MP3; 0 for WAV).
pub fn audio_start(bytes: &[u8]) -> Option<(AudioKind, usize)> {
    if bytes.get(0..4) == Some(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        return Some((AudioKind::Wav, 0));
    }
    let start = skip_id3v2(bytes);
    let first = FrameHeader::parse(bytes.get(start..)?)?;
    let next = start.checked_add(first.len)?;
    if let Some(rest) = bytes.get(next..).filter(|r| r.len() >= 4) {
        let second = FrameHeader::parse(rest)?;
        if !first.same_stream(&second) {
            return None;
        }
    }
    Some((AudioKind::Mp3, start))
}

/// The offset after the ID3v2 tags at the start of `bytes` (0 when there are none).
/// A tag whose declared size passes the end yields the end.
pub fn skip_id3v2(bytes: &[u8]) -> usize {
    let mut at = 0usize;
    // Files with several tags in a row exist; a bounded number keeps this linear.
    for _ in 0..8 {
        let Some(size) = bytes.get(at..).and_then(id3v2_len) else {
            break;
        };
        at = at.saturating_add(size).min(bytes.len());
    }
    at
}

/// The whole length (header, body, footer) of the ID3v2 tag at the start of `b`.
fn id3v2_len(b: &[u8]) -> Option<usize> {
    let h = b.get(0..10)?;
    let [b'I', b'D', b'3', major, minor, flags, s0, s1, s2, s3] = *h else {
        return None;
    };
    // Versions 2.2–2.4; the size is "syncsafe": seven bits per byte.
    if !(2..=4).contains(&major) || minor == 0xff || [s0, s1, s2, s3].iter().any(|s| s & 0x80 != 0)
    {
        return None;
    }
    let body = (usize::from(s0) << 21)
        | (usize::from(s1) << 14)
        | (usize::from(s2) << 7)
        | usize::from(s3);
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    Some(10 + body + footer)
}

/// An MPEG audio Layer III frame header (ISO 11172-3 / 13818-3, with MPEG 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    /// 1, 2, or 25 for MPEG 2.5.
    version: u8,
    sample_rate: u32,
    /// The whole frame, header included.
    len: usize,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> Option<FrameHeader> {
        let [b0, b1, b2, b3] = *b.get(0..4)? else {
            return None;
        };
        // 11 sync bits.
        if b0 != 0xff || b1 & 0xe0 != 0xe0 {
            return None;
        }
        let version = match (b1 >> 3) & 0b11 {
            0b00 => 25,
            0b10 => 2,
            0b11 => 1,
            _ => return None,
        };
        // Layer III only: that is the decoder medcall carries.
        if (b1 >> 1) & 0b11 != 0b01 {
            return None;
        }
        let bitrate_index = usize::from(b2 >> 4);
        let rate_index = usize::from((b2 >> 2) & 0b11);
        let padding = usize::from((b2 >> 1) & 1);
        // Emphasis 0b10 is reserved.
        if b3 & 0b11 == 0b10 {
            return None;
        }
        const MPEG1: [u32; 16] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0,
        ];
        const MPEG2: [u32; 16] = [
            0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0,
        ];
        let kbps = if version == 1 { MPEG1 } else { MPEG2 }
            .get(bitrate_index)
            .copied()?;
        // Index 0 is "free format", 15 is invalid: neither is accepted.
        if kbps == 0 {
            return None;
        }
        let base: u32 = match rate_index {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return None,
        };
        let sample_rate = match version {
            1 => base,
            2 => base / 2,
            _ => base / 4,
        };
        let per_frame = if version == 1 { 144 } else { 72 };
        let len = usize::try_from(per_frame * kbps * 1000 / sample_rate).ok()? + padding;
        Some(FrameHeader {
            version,
            sample_rate,
            len,
        })
    }

    fn same_stream(&self, other: &FrameHeader) -> bool {
        self.version == other.version && self.sample_rate == other.sample_rate
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes a frame.
    const HDR_128_44: [u8; 4] = [0xff, 0xfb, 0x90, 0x64];

    fn frames(n: usize, header: [u8; 4], len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend_from_slice(&header);
            v.resize(v.len() + len - 4, 0x55);
        }
        v
    }

    fn id3(body: usize) -> Vec<u8> {
        let mut v = b"ID3\x04\x00\x00".to_vec();
        v.extend_from_slice(&[
            ((body >> 21) & 0x7f) as u8,
            ((body >> 14) & 0x7f) as u8,
            ((body >> 7) & 0x7f) as u8,
            (body & 0x7f) as u8,
        ]);
        v.resize(10 + body, 0);
        v
    }

    #[test]
    fn the_frame_length_follows_the_layer_iii_formula() {
        assert_eq!(FrameHeader::parse(&HDR_128_44).unwrap().len, 417);
        // Padding bit set: one byte more.
        assert_eq!(
            FrameHeader::parse(&[0xff, 0xfb, 0x92, 0x64]).unwrap().len,
            418
        );
        // MPEG-2, 64 kbit/s, 22.05 kHz: 72 × 64000 / 22050 = 208.
        let h = FrameHeader::parse(&[0xff, 0xf3, 0x80, 0xc4]).unwrap();
        assert_eq!((h.version, h.sample_rate, h.len), (2, 22_050, 208));
        // MPEG-2.5, 8 kbit/s, 8 kHz: 72 × 8000 / 8000 = 72.
        let h = FrameHeader::parse(&[0xff, 0xe3, 0x18, 0xc4]).unwrap();
        assert_eq!((h.version, h.sample_rate, h.len), (25, 8_000, 72));
        // MPEG-1, 320 kbit/s, 32 kHz: 144 × 320000 / 32000 = 1440.
        assert_eq!(
            FrameHeader::parse(&[0xff, 0xfb, 0xe8, 0x00]).unwrap().len,
            1440
        );
    }

    #[test]
    fn a_stream_of_frames_is_mp3_with_or_without_an_id3_tag() {
        let plain = frames(3, HDR_128_44, 417);
        assert_eq!(audio_start(&plain), Some((AudioKind::Mp3, 0)));
        let mut tagged = id3(300);
        tagged.extend_from_slice(&plain);
        assert_eq!(audio_start(&tagged), Some((AudioKind::Mp3, 310)));
        // Two tags in a row.
        let mut two = id3(20);
        two.extend_from_slice(&id3(5));
        two.extend_from_slice(&plain);
        assert_eq!(audio_start(&two), Some((AudioKind::Mp3, 45)));
        // A single frame with nothing after it cannot be confirmed, and is still taken.
        assert_eq!(sniff(&frames(1, HDR_128_44, 417)), Some(AudioKind::Mp3));
    }

    #[test]
    fn a_header_at_the_start_without_a_second_frame_where_it_points_is_not_mp3() {
        let mut v = frames(1, HDR_128_44, 417);
        v.extend_from_slice(b"<html>");
        assert_eq!(sniff(&v), None);
        // The second header exists but is of another stream (48 kHz).
        let mut v = frames(1, HDR_128_44, 417);
        v.extend_from_slice(&[0xff, 0xfb, 0x94, 0x64]);
        assert_eq!(sniff(&v), None);
    }

    #[test]
    fn riff_wave_is_wav_and_other_riff_is_not() {
        assert_eq!(sniff(b"RIFF\x24\x00\x00\x00WAVEfmt "), Some(AudioKind::Wav));
        assert_eq!(audio_start(b"RIFF\0\0\0\0WAVE"), Some((AudioKind::Wav, 0)));
        assert_eq!(sniff(b"RIFF\x24\x00\x00\x00AVI LIST"), None);
        assert_eq!(sniff(b"RIFF\x24\x00\x00\x00WAV"), None);
    }

    #[test]
    fn html_text_and_other_media_are_not_audio() {
        for bytes in [
            &b"<!DOCTYPE html><html><body>404 Not Found</body></html>"[..],
            b"",
            b"ID3",
            b"\xff",
            b"OggS\0\x02",
            b"fLaC\0\0\0\x22",
            b"\x89PNG\r\n\x1a\n",
            b"\0\0\0\x20ftypM4A ",
        ] {
            assert_eq!(sniff(bytes), None, "{bytes:?}");
        }
        // An ID3 tag followed by HTML.
        let mut v = id3(16);
        v.extend_from_slice(b"<html></html>");
        assert_eq!(sniff(&v), None);
    }

    #[test]
    fn invalid_header_fields_are_refused() {
        for h in [
            [0xff, 0xfb, 0x00, 0x64], // free-format bitrate
            [0xff, 0xfb, 0xf0, 0x64], // bitrate index 15
            [0xff, 0xfb, 0x9c, 0x64], // sample-rate index 3
            [0xff, 0xeb, 0x90, 0x64], // version 01 (reserved)
            [0xff, 0xfd, 0x90, 0x64], // layer II
            [0xff, 0xff, 0x90, 0x64], // layer I
            [0xff, 0xf9, 0x90, 0x64], // layer 00 (reserved)
            [0xff, 0xfb, 0x90, 0x66], // emphasis 10 (reserved)
            [0xff, 0xdb, 0x90, 0x64], // only 10 sync bits
            [0xfe, 0xfb, 0x90, 0x64],
        ] {
            assert_eq!(FrameHeader::parse(&h), None, "{h:02x?}");
        }
    }

    #[test]
    fn id3_sizes_are_syncsafe_and_bounded_by_the_input() {
        assert_eq!(skip_id3v2(&id3(0)), 10);
        let mut v = id3(200);
        v.truncate(50);
        assert_eq!(
            skip_id3v2(&v),
            50,
            "a tag longer than the body ends at the end"
        );
        // A size byte with its top bit set is not a tag.
        assert_eq!(skip_id3v2(b"ID3\x04\x00\x00\x80\x00\x00\x00"), 0);
        // Version 2.5 is unknown; 2.2 is known.
        assert_eq!(skip_id3v2(b"ID3\x05\x00\x00\x00\x00\x00\x00"), 0);
        assert_eq!(skip_id3v2(b"ID3\x02\x00\x00\x00\x00\x00\x01x"), 11);
        // The 2.4 footer flag adds ten bytes.
        let mut v = b"ID3\x04\x00\x10\x00\x00\x00\x02".to_vec();
        v.resize(40, 0);
        assert_eq!(skip_id3v2(&v), 22);
        // The biggest size (2^28 − 1) does not overflow.
        assert_eq!(skip_id3v2(b"ID3\x03\x00\x00\x7f\x7f\x7f\x7f"), 10);
    }

    #[test]
    fn every_prefix_of_a_real_header_is_handled() {
        let v = frames(2, HDR_128_44, 417);
        for n in 0..v.len() {
            let got = sniff(&v[..n]);
            if n < 4 {
                assert_eq!(got, None, "{n}");
            } else {
                assert_eq!(got, Some(AudioKind::Mp3), "{n}");
            }
        }
    }
}

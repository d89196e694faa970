use std::path::Path;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audio")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn samples(pcm: &[u8]) -> Vec<f32> {
    pcm.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// The power of `freq` in `x` (sampled at `rate`) by the Goertzel recurrence,
/// normalised by the length.
fn goertzel(x: &[f32], rate: f32, freq: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f32 * x.len() as f32)
}

/// 1 kHz stands far above every other probe frequency in the middle of the output.
fn assert_dominant_1khz(pcm: &[u8]) {
    let x = samples(pcm);
    let mid = &x[x.len() / 4..x.len() * 3 / 4];
    let tone = goertzel(mid, 16_000.0, 1_000.0);
    for other in [
        250.0, 500.0, 750.0, 1_250.0, 1_500.0, 2_000.0, 3_000.0, 4_000.0, 7_000.0,
    ] {
        let p = goertzel(mid, 16_000.0, other);
        assert!(tone > 1_000.0 * p, "1 kHz power {tone} vs {other} Hz {p}");
    }
    // Half scale in, about half scale out (amplitude² / 4 for a sine by this measure).
    assert!(tone > 0.03 && tone < 0.1, "1 kHz power {tone}");
}

/// One MP3 frame at 44.1 kHz (1152 samples) is 418 frames at 16 kHz.
const MP3_FRAME_AT_16K: i64 = 418;

#[test]
fn the_mp3_tone_decodes_to_3_s_of_1_khz_at_16_khz_mono() {
    let d = decode(
        &fixture("tone-1k-44k1-stereo.mp3"),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(d.summary.kind, AudioKind::Mp3);
    assert_eq!((d.summary.input_rate, d.summary.channels), (44_100, 2));
    assert_eq!(d.pcm.len() as u64, d.summary.output_frames * 2);
    let frames = (d.pcm.len() / 2) as i64;
    assert!(
        (frames - 48_000).abs() <= MP3_FRAME_AT_16K,
        "{frames} frames, expected 48000 ± {MP3_FRAME_AT_16K}"
    );
    assert!((d.summary.duration_ms() as i64 - 3_000).abs() <= 27);
    assert_dominant_1khz(&d.pcm);
}

#[test]
fn the_wav_tone_decodes_to_3_s_of_1_khz_at_16_khz() {
    let d = decode(&fixture("tone-1k-8k-mono.wav"), &DecodeLimits::default()).unwrap();
    assert_eq!(d.summary.kind, AudioKind::Wav);
    assert_eq!((d.summary.input_rate, d.summary.channels), (8_000, 1));
    assert_eq!(d.summary.input_frames, 24_000);
    // Exactly twice the input frames: no resampler delay left in, none cut off.
    assert_eq!(d.pcm.len(), 48_000 * 2);
    assert_eq!(d.summary.duration_ms(), 3_000);
    assert_dominant_1khz(&d.pcm);
}

#[test]
fn a_16_khz_wav_passes_through_sample_for_sample() {
    let mut wav = wav_header(1, 16_000, 16, 8);
    wav.extend_from_slice(&[0x00, 0x40, 0x00, 0xc0, 0xff, 0x7f, 0x00, 0x80]);
    let d = decode(&wav, &DecodeLimits::default()).unwrap();
    assert_eq!(d.pcm, vec![0x00, 0x40, 0x00, 0xc0, 0xff, 0x7f, 0x00, 0x80]);
}

#[test]
fn stereo_is_mixed_to_the_mean_of_its_channels() {
    let mut wav = wav_header(2, 16_000, 16, 8);
    for (l, r) in [(10_000i16, 2_000i16), (-4_000, -8_000)] {
        wav.extend_from_slice(&l.to_le_bytes());
        wav.extend_from_slice(&r.to_le_bytes());
    }
    let d = decode(&wav, &DecodeLimits::default()).unwrap();
    let got: Vec<i16> = d
        .pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(got.len(), 2);
    assert!((i32::from(got[0]) - 6_000).abs() <= 1, "{got:?}");
    assert!((i32::from(got[1]) + 6_000).abs() <= 1, "{got:?}");
}

/// A PCM WAV header for `data_len` bytes of data.
fn wav_header(channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = channels * bits / 8;
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v
}

#[test]
fn decoding_stops_as_soon_as_the_duration_cap_is_passed() {
    let limits = DecodeLimits {
        max_duration: Duration::from_secs(1),
        ..DecodeLimits::default()
    };
    let mut written = Vec::new();
    let e = decode_to(&fixture("tone-1k-44k1-stereo.mp3"), &limits, &mut written).unwrap_err();
    assert_eq!(e, DecodeError::TooLong { max_secs: 1 });
    // Stopped near one second of output, not after three.
    assert!(
        written.len() <= 2 * 16_000 + 2 * 2_048,
        "{} bytes written",
        written.len()
    );
    let e = decode(&fixture("tone-1k-8k-mono.wav"), &limits).unwrap_err();
    assert_eq!(e, DecodeError::TooLong { max_secs: 1 });
    // Exactly at the cap is allowed.
    let limits = DecodeLimits {
        max_duration: Duration::from_secs(3),
        ..DecodeLimits::default()
    };
    assert!(decode(&fixture("tone-1k-8k-mono.wav"), &limits).is_ok());
}

#[test]
fn channel_and_rate_caps_refuse_before_decoding() {
    let one = DecodeLimits {
        max_channels: 1,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode(&fixture("tone-1k-44k1-stereo.mp3"), &one).unwrap_err(),
        DecodeError::TooManyChannels {
            channels: 2,
            max: 1
        }
    );
    assert_eq!(
        decode(
            &fixture("crash-wav-65535-channels.wav"),
            &DecodeLimits::default()
        )
        .unwrap_err(),
        DecodeError::TooManyChannels {
            channels: 65_535,
            max: 8
        }
    );
    assert_eq!(
        decode(&fixture("crash-wav-rate-1hz.wav"), &DecodeLimits::default()).unwrap_err(),
        DecodeError::SampleRate {
            rate: 1,
            min: 8_000,
            max: 192_000
        }
    );
    let high = DecodeLimits {
        max_sample_rate: 22_050,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode(&fixture("tone-1k-44k1-stereo.mp3"), &high).unwrap_err(),
        DecodeError::SampleRate { rate: 44_100, .. }
    ));
    let mut wav = wav_header(1, 7_999, 16, 2);
    wav.extend_from_slice(&[0, 0]);
    assert!(matches!(
        decode(&wav, &DecodeLimits::default()).unwrap_err(),
        DecodeError::SampleRate { rate: 7_999, .. }
    ));
    let mut wav = wav_header(1, 192_001, 16, 2);
    wav.extend_from_slice(&[0, 0]);
    assert!(matches!(
        decode(&wav, &DecodeLimits::default()).unwrap_err(),
        DecodeError::SampleRate { rate: 192_001, .. }
    ));
    let mut wav = wav_header(0, 8_000, 16, 2);
    wav.extend_from_slice(&[0, 0]);
    assert!(matches!(
        decode(&wav, &DecodeLimits::default()).unwrap_err(),
        DecodeError::Corrupt(_)
    ));
}

#[test]
fn chunks_claiming_more_bytes_than_the_file_has_are_refused_before_symphonia_reads_them() {
    for name in ["crash-wav-huge-fmt.wav", "crash-wav-huge-list.wav"] {
        let e = decode(&fixture(name), &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(&e, DecodeError::Corrupt(m) if m.contains("claims")),
            "{name}: {e:?}"
        );
    }
}

#[test]
fn a_zero_block_alignment_does_not_divide_by_zero_and_the_samples_still_decode() {
    // symphonia derives the frame size from channels × bits, not the header's field.
    let d = decode(
        &fixture("crash-wav-zero-block-align.wav"),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(d.summary.input_frames, 800);
    assert_eq!(d.pcm.len(), 1_600 * 2);
}

#[test]
fn an_mp3_body_that_is_mostly_not_frames_is_corrupt() {
    assert!(!mostly_junk(16 * 1024, 0), "small bodies are left alone");
    // 32 KiB at 320 kbit/s is at least 819 ms.
    assert!(mostly_junk(32 * 1024, 400));
    assert!(!mostly_junk(32 * 1024, 410));
}

#[test]
fn id3_tags_are_cut_off_before_the_decoder_sees_them() {
    // A frame inside the tag claims 4 GiB: never read.
    let d = decode(
        &fixture("crash-id3-huge-frame.mp3"),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!(d.summary.input_rate, 44_100);
    // A picture inside the tag holds the sync of an 8 kHz mono stream: the real one wins.
    let d = decode(
        &fixture("crash-id3-false-sync.mp3"),
        &DecodeLimits::default(),
    )
    .unwrap();
    assert_eq!((d.summary.input_rate, d.summary.channels), (44_100, 2));
    assert_eq!(
        decode(
            &fixture("crash-id3-flags-only.mp3"),
            &DecodeLimits::default()
        )
        .unwrap_err(),
        DecodeError::NotAudio
    );
}

#[test]
fn an_mp3_cut_mid_stream_plays_what_is_there() {
    let d = decode(&fixture("truncated-mid.mp3"), &DecodeLimits::default()).unwrap();
    let ms = d.summary.duration_ms();
    assert!(ms > 800 && ms < 1_100, "{ms} ms");
}

#[test]
fn an_mp3_cut_inside_its_first_audio_frame_has_no_audio() {
    let e = decode(
        &fixture("truncated-first-frame.mp3"),
        &DecodeLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, DecodeError::NoAudio | DecodeError::Corrupt(_)),
        "{e:?}"
    );
}

#[test]
fn noise_after_two_good_frames_is_corrupt() {
    let e = decode(&fixture("corrupt.mp3"), &DecodeLimits::default());
    assert!(matches!(e, Err(DecodeError::Corrupt(_))), "{e:?}");
}

#[test]
fn an_html_page_named_mp3_is_not_audio() {
    assert_eq!(
        decode(&fixture("html-named.mp3"), &DecodeLimits::default()).unwrap_err(),
        DecodeError::NotAudio
    );
}

#[test]
fn a_wav_header_without_samples_has_no_audio() {
    let wav = wav_header(1, 8_000, 16, 0);
    assert_eq!(
        decode(&wav, &DecodeLimits::default()).unwrap_err(),
        DecodeError::NoAudio
    );
    assert_eq!(
        decode(b"RIFF\x04\0\0\0WAVE", &DecodeLimits::default()).unwrap_err(),
        DecodeError::NoAudio
    );
}

#[test]
fn a_failing_writer_ends_the_decode_with_an_output_error() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let e = decode_to(
        &fixture("tone-1k-8k-mono.wav"),
        &DecodeLimits::default(),
        &mut Broken,
    );
    assert!(matches!(e, Err(DecodeError::Output(_))), "{e:?}");
}

#[test]
fn every_prefix_of_each_fixture_decodes_or_fails_without_panicking() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audio");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh" || e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        // Every prefix of the first 600 bytes (headers), then every 1999th.
        let ends = (0..bytes.len().min(600)).chain((600..bytes.len()).step_by(1_999));
        for end in ends {
            let _ = decode(&bytes[..end], &DecodeLimits::default());
        }
    }
}

#[test]
fn the_output_bound_covers_the_longest_allowed_decode() {
    let l = DecodeLimits::default();
    assert!(l.max_output_bytes() >= 600 * 32_000);
    assert!(l.max_output_bytes() < 600 * 32_000 + 32_000);
}

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

fn decode_all(codec: &mut AudioSocketCodec, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(&mut buf)? {
        out.push(frame);
    }
    if let Some(frame) = codec.decode_eof(&mut buf)? {
        out.push(frame);
    }
    Ok(out)
}

fn encode(frames: &[Frame]) -> BytesMut {
    let mut codec = AudioSocketCodec::default();
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut buf).unwrap();
    }
    buf
}

fn uuid() -> StreamUuid {
    "0123abcd-4567-89ef-0123-456789abcdef".parse().unwrap()
}

fn every_kind() -> Vec<Frame> {
    vec![
        Frame::Uuid(uuid()),
        Frame::Audio {
            rate: SampleRate::Hz16000,
            samples: Bytes::from((0..640u32).map(|i| i as u8).collect::<Vec<_>>()),
        },
        Frame::Audio {
            rate: SampleRate::Hz8000,
            samples: Bytes::from_static(&[1, 2, 3, 4]),
        },
        Frame::Dtmf(b'5'),
        Frame::Error(Bytes::from_static(&[0x04])),
        Frame::Error(Bytes::new()),
        Frame::Audio {
            rate: SampleRate::Hz192000,
            samples: Bytes::new(),
        },
        Frame::Hangup,
    ]
}

#[test]
fn every_kind_round_trips_through_the_encoder_and_the_decoder() {
    let frames = every_kind();
    let bytes = encode(&frames);
    assert_eq!(
        decode_all(&mut AudioSocketCodec::default(), &bytes).unwrap(),
        frames
    );
}

#[test]
fn the_wire_form_is_kind_then_big_endian_length_then_payload() {
    let bytes = encode(&[
        Frame::Hangup,
        Frame::Dtmf(b'#'),
        Frame::Audio {
            rate: SampleRate::Hz16000,
            samples: Bytes::from_static(&[0x34, 0x12]),
        },
    ]);
    assert_eq!(
        bytes.as_ref(),
        [0x00, 0, 0, 0x03, 0, 1, b'#', 0x12, 0, 2, 0x34, 0x12]
    );
    let big = encode(&[Frame::Audio {
        rate: SampleRate::Hz16000,
        samples: Bytes::from(vec![0; 640]),
    }]);
    assert_eq!(&big[..3], [0x12, 0x02, 0x80]);
}

#[test]
fn every_rate_kind_maps_to_its_rate() {
    let kinds: Vec<(u8, u32)> = SampleRate::ALL
        .iter()
        .map(|(_, r, _)| (r.kind(), r.hz()))
        .collect();
    assert_eq!(
        kinds,
        [
            (0x10, 8_000),
            (0x11, 12_000),
            (0x12, 16_000),
            (0x13, 24_000),
            (0x14, 32_000),
            (0x15, 44_100),
            (0x16, 48_000),
            (0x17, 96_000),
            (0x18, 192_000)
        ]
    );
    for kind in 0x10..=0x18u8 {
        let frames = decode_all(&mut AudioSocketCodec::default(), &[kind, 0, 2, 7, 0]).unwrap();
        let [Frame::Audio { rate, .. }] = frames.as_slice() else {
            panic!("{frames:?}");
        };
        assert_eq!(rate.kind(), kind);
    }
}

#[test]
fn every_split_of_the_bytes_gives_the_same_frames() {
    let frames = every_kind();
    let bytes = encode(&frames);
    for cut in 0..=bytes.len() {
        let mut codec = AudioSocketCodec::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in [&bytes[..cut], &bytes[cut..]] {
            buf.extend_from_slice(part);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, frames, "cut at {cut}");
        assert!(buf.is_empty());
    }
}

#[test]
fn every_prefix_of_a_frame_is_need_more_bytes_and_at_eof_truncated() {
    let bytes = encode(&[Frame::Uuid(uuid())]);
    for n in 1..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        let mut codec = AudioSocketCodec::default();
        assert!(codec.decode(&mut buf).unwrap().is_none(), "prefix {n}");
        assert_eq!(buf.len(), n, "nothing consumed");
        match codec.decode_eof(&mut buf) {
            Err(FrameError::Truncated(left)) => assert_eq!(left, n),
            other => panic!("prefix {n}: {other:?}"),
        }
    }
    let mut empty = BytesMut::new();
    assert!(
        AudioSocketCodec::default()
            .decode_eof(&mut empty)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header_alone_without_buffering_it() {
    let mut codec = AudioSocketCodec::new(640);
    let mut at_limit = BytesMut::from(&[0x12, 0x02, 0x80][..]);
    assert!(codec.decode(&mut at_limit).unwrap().is_none());
    let mut over = BytesMut::from(&[0x12, 0x02, 0x81][..]);
    match codec.decode(&mut over) {
        Err(FrameError::TooLarge { len: 641, max: 640 }) => {}
        other => panic!("{other:?}"),
    }
    // The largest length the field holds, against the default limit: refused before
    // any room is reserved for it.
    let mut huge = BytesMut::from(&[0x10, 0xff, 0xff][..]);
    let before = huge.capacity();
    assert!(matches!(
        AudioSocketCodec::default().decode(&mut huge),
        Err(FrameError::TooLarge { len: 65_535, .. })
    ));
    assert_eq!(huge.capacity(), before);
}

#[test]
fn a_limit_over_the_length_field_is_the_length_field() {
    let mut codec = AudioSocketCodec::new(usize::MAX);
    let mut buf = BytesMut::from(&[0x10, 0xff, 0xfe][..]);
    buf.extend_from_slice(&vec![0; 65_534]);
    assert!(codec.decode(&mut buf).unwrap().is_some());
}

#[test]
fn unknown_kinds_are_errors_as_soon_as_the_header_is_in() {
    let known: Vec<u8> = [0x00, 0x01, 0x03, 0xff]
        .into_iter()
        .chain(0x10..=0x18)
        .collect();
    for kind in 0..=u8::MAX {
        let mut buf = BytesMut::from(&[kind, 0, 4][..]);
        let got = AudioSocketCodec::default().decode(&mut buf);
        if known.contains(&kind) {
            assert!(matches!(got, Ok(None)), "0x{kind:02x}: {got:?}");
        } else {
            assert!(
                matches!(got, Err(FrameError::UnknownKind(k)) if k == kind),
                "0x{kind:02x}: {got:?}"
            );
        }
    }
}

#[test]
fn malformed_payloads_of_known_kinds_are_errors() {
    let mut codec = AudioSocketCodec::default();
    assert!(matches!(
        decode_all(&mut codec, &[0x01, 0, 15]).map(|_| ()),
        Err(FrameError::Truncated(3))
    ));
    let mut uuid15 = vec![0x01, 0, 15];
    uuid15.extend_from_slice(&[0; 15]);
    assert!(matches!(
        decode_all(&mut codec, &uuid15),
        Err(FrameError::BadUuid(15))
    ));
    assert!(matches!(
        decode_all(&mut codec, &[0x03, 0, 0]),
        Err(FrameError::BadDtmf(0))
    ));
    assert!(matches!(
        decode_all(&mut codec, &[0x03, 0, 2, b'1', b'2']),
        Err(FrameError::BadDtmf(2))
    ));
    assert!(matches!(
        decode_all(&mut codec, &[0x12, 0, 3, 1, 2, 3]),
        Err(FrameError::OddAudio(3))
    ));
}

#[test]
fn a_hangup_with_a_payload_is_still_a_hangup_and_the_payload_is_consumed() {
    let frames = decode_all(
        &mut AudioSocketCodec::default(),
        &[0x00, 0, 2, 9, 9, 0x03, 0, 1, b'7'],
    )
    .unwrap();
    assert_eq!(frames, [Frame::Hangup, Frame::Dtmf(b'7')]);
}

#[test]
fn a_payload_too_long_for_the_length_field_cannot_be_encoded() {
    let mut buf = BytesMut::new();
    let err = AudioSocketCodec::default()
        .encode(Frame::Error(Bytes::from(vec![0; 65_536])), &mut buf)
        .unwrap_err();
    assert!(matches!(err, FrameError::Unencodable(65_536)));
    assert!(buf.is_empty());
}

#[test]
fn a_uuid_is_written_in_canonical_lowercase_and_read_in_either_case() {
    let bytes: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
    let uuid = StreamUuid::from_bytes(bytes);
    assert_eq!(uuid.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
    assert_eq!(
        format!("{uuid:?}"),
        "StreamUuid(00112233-4455-6677-8899-aabbccddeeff)"
    );
    assert_eq!(
        "00112233-4455-6677-8899-AABBCCDDEEFF".parse::<StreamUuid>(),
        Ok(uuid)
    );
    assert_eq!(uuid.to_string().parse::<StreamUuid>(), Ok(uuid));
    assert_eq!(uuid.as_bytes(), &bytes);
}

#[test]
fn texts_that_are_not_canonical_uuids_are_refused() {
    for bad in [
        "",
        "00112233445566778899aabbccddeeff",
        "00112233-4455-6677-8899-aabbccddeef",
        "00112233-4455-6677-8899-aabbccddeeff0",
        "00112233-4455-6677-8899_aabbccddeeff",
        "0011223-34455-6677-8899-aabbccddeeff",
        "00112233-4455-6677-8899-aabbccddeefg",
        "g0112233-4455-6677-8899-aabbccddeeff",
        "00112233-4455-6677-8899-aabbccdd\u{e9}f",
        "00112233-4455-6677-8899--abbccddeeff",
    ] {
        assert_eq!(bad.parse::<StreamUuid>(), Err(BadUuid), "{bad:?}");
    }
}

#[test]
fn random_uuids_are_version_4_variant_10_and_distinct() {
    let a = StreamUuid::random();
    let b = StreamUuid::random();
    assert_ne!(a, b);
    // Many: a wrong bit mask shows in a random byte only now and then.
    for u in (0..256).map(|_| StreamUuid::random()) {
        let text = u.to_string();
        assert_eq!(text.as_bytes()[14], b'4', "{text}");
        assert!(
            matches!(text.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{text}"
        );
    }
}

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Encoder;

use super::*;
use crate::media::audiosocket::{AudioSocketCodec, Frame, SampleRate};

const LIMIT: Duration = Duration::from_secs(5);

fn hub() -> StreamHub {
    StreamHub::new(FanOutSettings::default(), StreamMetrics::default())
}

fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for f in frames {
        AudioSocketCodec::default()
            .encode(f.clone(), &mut buf)
            .unwrap();
    }
    buf.to_vec()
}

fn uuid_frame(ticket: &StreamTicket) -> Frame {
    Frame::Uuid(ticket.uuid.parse().unwrap())
}

fn audio(n: u8) -> Frame {
    Frame::Audio {
        rate: SampleRate::Hz16000,
        samples: Bytes::from(vec![n; 640]),
    }
}

/// A running server on a loopback port.
struct Server {
    addr: std::net::SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn server(hub: &StreamHub, settings: AudioSocketSettings) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(listener, settings, hub.clone(), cancel.clone()));
    Server { addr, cancel, task }
}

/// Waits until the server closed `socket` (EOF or reset), ignoring what it sent.
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(LIMIT, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition never held");
}

async fn next(listener: &mut StreamListener) -> Option<Bytes> {
    tokio::time::timeout(LIMIT, listener.next())
        .await
        .expect("the listener heard nothing")
}

#[test]
fn a_ticket_holds_a_v4_uuid_and_a_distinct_128_bit_hex_token() {
    let hub = hub();
    let a = hub.open();
    let b = hub.open();
    for t in [&a, &b] {
        let parsed: StreamUuid = t.uuid.parse().unwrap();
        assert_eq!(parsed.to_string(), t.uuid, "canonical lowercase");
        assert_eq!(t.uuid.as_bytes()[14], b'4');
        assert_eq!(t.token.len(), 32);
        assert!(
            t.token
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(t.token, t.uuid.replace('-', ""));
    }
    assert_ne!(a.uuid, b.uuid);
    assert_ne!(a.token, b.token);
    assert_eq!(hub.token_of(&a.uuid), Some(a.token.clone()));
    assert_eq!(hub.token_of(&a.uuid.to_uppercase()), Some(a.token.clone()));
    assert_eq!(hub.token_of("not-a-uuid"), None);
    assert_eq!(hub.open_streams(), 2);
    assert!(!hub.is_live(&a.uuid), "no socket yet");
}

#[test]
fn a_discarded_stream_is_forgotten_and_its_listeners_end() {
    let hub = hub();
    let t = hub.open();
    let mut listener = hub.listen(&t.token).unwrap();
    assert!(hub.discard(&t.uuid));
    assert!(!hub.discard(&t.uuid), "already gone");
    assert_eq!(hub.token_of(&t.uuid), None);
    assert!(hub.listen(&t.token).is_none());
    assert_eq!(hub.open_streams(), 0);
    assert_eq!(listener.rx.try_recv().ok(), None);
    assert!(listener.rx.is_closed());
    assert_eq!(listener.ending(), Ending::Ended);
    assert!(hub.listen("00").is_none());
}

#[test]
fn the_listener_gauge_counts_listeners_connected_now() {
    let metrics = StreamMetrics::default();
    let hub = StreamHub::new(FanOutSettings::default(), metrics.clone());
    let t = hub.open();
    let a = hub.listen(&t.token).unwrap();
    let b = hub.listen(&t.token).unwrap();
    assert_eq!(metrics.listeners.get(), 2);
    drop(a);
    assert_eq!(metrics.listeners.get(), 1);
    hub.end(&t.uuid);
    assert_eq!(metrics.listeners.get(), 1, "ended but not yet dropped");
    drop(b);
    assert_eq!(metrics.listeners.get(), 0);
}

#[tokio::test]
async fn one_frame_read_reaches_every_one_of_many_listeners_and_a_hangup_ends_them_cleanly() {
    let metrics = StreamMetrics::default();
    let hub = StreamHub::new(FanOutSettings::default(), metrics.clone());
    let srv = server(&hub, AudioSocketSettings::default()).await;
    let t = hub.open();
    let mut listeners: Vec<_> = (0..100).map(|_| hub.listen(&t.token).unwrap()).collect();
    let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
    pbx.write_all(&wire(&[
        uuid_frame(&t),
        audio(1),
        audio(2),
        Frame::Dtmf(b'1'),
        audio(3),
    ]))
    .await
    .unwrap();
    for l in &mut listeners {
        for n in 1..=3 {
            assert_eq!(next(l).await, Some(Bytes::from(vec![n; 640])));
        }
    }
    assert!(hub.is_live(&t.uuid));
    assert_eq!(metrics.live.get(), 1);
    pbx.write_all(&wire(&[Frame::Hangup])).await.unwrap();
    for l in &mut listeners {
        assert_eq!(next(l).await, None);
        assert_eq!(l.ending(), Ending::Ended);
    }
    assert!(
        closed_by_server(&mut pbx).await,
        "medcall closes after a hangup"
    );
    assert!(!hub.is_live(&t.uuid));
    assert_eq!(hub.token_of(&t.uuid), None, "the token is forgotten");
    assert!(hub.listen(&t.token).is_none());
    assert_eq!(metrics.frames_received.get(), 3);
    assert_eq!(metrics.frames_dropped.get(), 0);
    assert_eq!(metrics.live.get(), 0);
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn eof_and_protocol_errors_end_the_stream_too() {
    let hub = hub();
    let srv = server(&hub, AudioSocketSettings::default()).await;
    for ending in [
        Vec::new(),
        vec![0x42, 0, 0],
        vec![0x12, 0xff, 0xff],
        vec![0x12, 0, 1],
    ] {
        let t = hub.open();
        let mut listener = hub.listen(&t.token).unwrap();
        let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
        pbx.write_all(&wire(&[uuid_frame(&t), audio(9)]))
            .await
            .unwrap();
        assert_eq!(next(&mut listener).await, Some(Bytes::from(vec![9; 640])));
        pbx.write_all(&ending).await.unwrap();
        if ending.is_empty() {
            pbx.shutdown().await.unwrap();
        } else if ending.len() == 3 && ending[2] == 1 {
            // An odd audio length is an error once its payload is in.
            pbx.write_all(&[0]).await.unwrap();
        }
        assert_eq!(next(&mut listener).await, None, "ending {ending:02x?}");
        assert_eq!(listener.ending(), Ending::Ended);
        assert!(!hub.is_live(&t.uuid));
    }
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn end_ends_every_listener_now_and_closes_the_socket() {
    let hub = hub();
    let srv = server(&hub, AudioSocketSettings::default()).await;
    let t = hub.open();
    let mut a = hub.listen(&t.token).unwrap();
    let mut b = hub.listen(&t.token).unwrap();
    let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
    pbx.write_all(&wire(&[uuid_frame(&t), audio(1)]))
        .await
        .unwrap();
    assert!(next(&mut a).await.is_some());
    assert!(hub.end(&t.uuid));
    assert_eq!(next(&mut a).await, None);
    assert_eq!(
        next(&mut b).await,
        Some(Bytes::from(vec![1; 640])),
        "what it held"
    );
    assert_eq!(next(&mut b).await, None);
    assert_eq!(b.ending(), Ending::Ended);
    assert!(
        closed_by_server(&mut pbx).await,
        "the leg's socket is closed"
    );
    assert!(!hub.end(&t.uuid));
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_every_connection_and_ends_every_listener() {
    let hub = hub();
    let srv = server(&hub, AudioSocketSettings::default()).await;
    let t = hub.open();
    let mut listener = hub.listen(&t.token).unwrap();
    let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
    pbx.write_all(&wire(&[uuid_frame(&t)])).await.unwrap();
    wait_until(|| hub.is_live(&t.uuid)).await;
    srv.cancel.cancel();
    tokio::time::timeout(LIMIT, srv.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next(&mut listener).await, None);
    assert!(closed_by_server(&mut pbx).await);
}

#[tokio::test]
async fn an_unknown_uuid_a_second_connection_and_a_first_frame_that_is_not_a_uuid_are_refused() {
    let hub = hub();
    let srv = server(&hub, AudioSocketSettings::default()).await;
    let mut stranger = TcpStream::connect(srv.addr).await.unwrap();
    stranger
        .write_all(&wire(&[Frame::Uuid(StreamUuid::random()), audio(1)]))
        .await
        .unwrap();
    assert!(closed_by_server(&mut stranger).await);

    let t = hub.open();
    let mut listener = hub.listen(&t.token).unwrap();
    let mut first = TcpStream::connect(srv.addr).await.unwrap();
    first.write_all(&wire(&[uuid_frame(&t)])).await.unwrap();
    wait_until(|| hub.is_live(&t.uuid)).await;
    let mut second = TcpStream::connect(srv.addr).await.unwrap();
    second
        .write_all(&wire(&[uuid_frame(&t), audio(7)]))
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut second).await,
        "one connection per uuid"
    );
    // The first connection still streams; the second one's audio never reached anyone.
    first.write_all(&wire(&[audio(1)])).await.unwrap();
    assert_eq!(next(&mut listener).await, Some(Bytes::from(vec![1; 640])));

    let other = hub.open();
    let mut no_uuid = TcpStream::connect(srv.addr).await.unwrap();
    no_uuid
        .write_all(&wire(&[audio(1), uuid_frame(&other)]))
        .await
        .unwrap();
    assert!(closed_by_server(&mut no_uuid).await);
    assert!(
        !hub.is_live(&other.uuid),
        "a uuid after audio does not count"
    );
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn a_connection_that_sends_no_uuid_in_time_is_closed() {
    let hub = hub();
    let settings = AudioSocketSettings {
        uuid_timeout: Duration::from_millis(50),
        ..AudioSocketSettings::default()
    };
    let srv = server(&hub, settings).await;
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await);
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn a_peer_outside_the_allow_list_is_closed_before_it_can_attach() {
    let hub = hub();
    let settings = AudioSocketSettings {
        allow: PeerAllow {
            loopback: false,
            addresses: vec!["192.0.2.7".parse().unwrap()],
        },
        ..AudioSocketSettings::default()
    };
    let srv = server(&hub, settings).await;
    let t = hub.open();
    let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
    // The write may fail: the server may have closed already.
    let _ = pbx.write_all(&wire(&[uuid_frame(&t), audio(1)])).await;
    assert!(closed_by_server(&mut pbx).await);
    assert!(!hub.is_live(&t.uuid));
    assert!(
        hub.token_of(&t.uuid).is_some(),
        "the stream waits for its real leg"
    );
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[test]
fn the_allow_list_takes_loopback_and_listed_addresses_ipv4_mapped_included() {
    let allow = PeerAllow {
        loopback: true,
        addresses: vec!["10.1.2.3".parse().unwrap()],
    };
    for ok in [
        "127.0.0.1",
        "127.9.9.9",
        "::1",
        "10.1.2.3",
        "::ffff:10.1.2.3",
    ] {
        assert!(allow.allows(ok.parse().unwrap()), "{ok}");
    }
    for no in ["10.1.2.4", "192.0.2.1", "::ffff:10.1.2.4", "2001:db8::1"] {
        assert!(!allow.allows(no.parse().unwrap()), "{no}");
    }
    let strict = PeerAllow {
        loopback: false,
        addresses: Vec::new(),
    };
    assert!(!strict.allows("127.0.0.1".parse().unwrap()));
    assert_eq!(
        PeerAllow::default(),
        PeerAllow {
            loopback: true,
            addresses: Vec::new()
        }
    );
}

#[tokio::test]
async fn audio_at_another_rate_is_drained_but_not_passed_on() {
    let hub = hub();
    let srv = server(&hub, AudioSocketSettings::default()).await;
    let t = hub.open();
    let mut listener = hub.listen(&t.token).unwrap();
    let mut pbx = TcpStream::connect(srv.addr).await.unwrap();
    let slin8 = Frame::Audio {
        rate: SampleRate::Hz8000,
        samples: Bytes::from(vec![5; 320]),
    };
    pbx.write_all(&wire(&[
        uuid_frame(&t),
        slin8,
        Frame::Error(Bytes::from_static(&[1])),
        audio(2),
    ]))
    .await
    .unwrap();
    assert_eq!(next(&mut listener).await, Some(Bytes::from(vec![2; 640])));
    srv.cancel.cancel();
    srv.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_listener_that_never_reads_loses_frames_counted_then_is_cut_and_never_slows_the_others() {
    let metrics = StreamMetrics::default();
    let settings = FanOutSettings {
        listener_queue_frames: 50,
        cut_after: Duration::from_secs(5),
    };
    let hub = StreamHub::new(settings, metrics.clone());
    let t = hub.open();
    let mut readers: Vec<_> = (0..20).map(|_| hub.listen(&t.token).unwrap()).collect();
    let mut stuck = hub.listen(&t.token).unwrap();
    let feed = hub.attach(t.uuid.parse().unwrap()).unwrap();
    // 7 s of 20 ms frames; every reader keeps up, `stuck` never reads.
    for i in 0..350u32 {
        let frame = Bytes::from(i.to_le_bytes().to_vec());
        let p = feed.publish(&frame);
        assert_eq!(p.delivered, 20 + u64::from(i < 50), "frame {i}");
        for r in &mut readers {
            assert_eq!(r.rx.try_recv().ok(), Some(frame.clone()), "frame {i}");
        }
        tokio::time::advance(Duration::from_millis(20)).await;
    }
    // Full from frame 50 (t = 1 s), cut at the first frame 5 s later (frame 300).
    assert_eq!(metrics.listeners_cut.get(), 1);
    assert_eq!(metrics.frames_dropped.get(), 251);
    assert_eq!(metrics.frames_received.get(), 350);
    for i in 0..50u32 {
        assert_eq!(
            stuck.rx.try_recv().ok(),
            Some(Bytes::from(i.to_le_bytes().to_vec()))
        );
    }
    assert_eq!(next(&mut stuck).await, None);
    assert_eq!(stuck.ending(), Ending::Cut);
    drop(feed);
    for r in &mut readers {
        assert_eq!(next(r).await, None);
        assert_eq!(r.ending(), Ending::Ended);
    }
}

#[test]
fn an_attach_to_an_ended_or_unknown_stream_fails_and_a_second_attach_is_refused() {
    let hub = hub();
    assert_eq!(
        hub.attach(StreamUuid::random()).map(|_| ()),
        Err(AttachError::Unknown)
    );
    let t = hub.open();
    let uuid: StreamUuid = t.uuid.parse().unwrap();
    let feed = hub.attach(uuid).unwrap();
    assert_eq!(
        hub.attach(uuid).map(|_| ()),
        Err(AttachError::AlreadyConnected)
    );
    drop(feed);
    assert_eq!(hub.attach(uuid).map(|_| ()), Err(AttachError::Unknown));
}

//! Faults a real Asterisk will not produce on demand, played by a fake AMI peer (a
//! TcpListener in the test): a stalled socket, garbage, an oversized message, a drop
//! between write and reply, a slow consumer.

use std::time::Duration;

use futures_util::StreamExt;
use medcall::ami::codec::AmiCodec;
use medcall::ami::{
    Action, AmiClient, AmiError, AmiEvent, ClientSettings, EventStream, Frame, Limits, LoginMethod,
    Message,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ami_client::{client_settings, next_matching};

struct FakePeer {
    listener: TcpListener,
}

/// One accepted connection, seen from the PBX's side.
struct PeerConn {
    actions: FramedRead<tokio::net::tcp::OwnedReadHalf, AmiCodec>,
    writer: OwnedWriteHalf,
}

impl FakePeer {
    async fn bind() -> FakePeer {
        FakePeer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    async fn accept(&self) -> PeerConn {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(30), self.listener.accept())
            .await
            .expect("the client connects")
            .unwrap();
        PeerConn::new(stream)
    }

    /// Accepts and plays a PBX through banner, plain login and CoreSettings.
    async fn accept_logged_in(&self) -> PeerConn {
        let mut c = self.accept().await;
        c.write(b"Asterisk Call Manager/11.0.0\r\n").await;
        let login = c.action().await;
        assert!(login.is("Action", "Login"), "{login:?}");
        assert!(login.is("Secret", "fake-secret"));
        c.reply(
            &login,
            "Response: Success\r\nMessage: Authentication accepted\r\n",
        )
        .await;
        let settings = c.action().await;
        assert!(settings.is("Action", "CoreSettings"), "{settings:?}");
        c.reply(
            &settings,
            "Response: Success\r\nAsteriskVersion: 99.1.0\r\n",
        )
        .await;
        c
    }
}

impl PeerConn {
    fn new(stream: TcpStream) -> PeerConn {
        let (r, writer) = stream.into_split();
        PeerConn {
            actions: FramedRead::new(r, AmiCodec::without_banner(Limits::default())),
            writer,
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// The next action the client wrote.
    async fn action(&mut self) -> Message {
        self.next_action(Duration::from_secs(30))
            .await
            .expect("an action")
    }

    async fn next_action(&mut self, limit: Duration) -> Option<Message> {
        let frame = tokio::time::timeout(limit, self.actions.next())
            .await
            .ok()??;
        match frame.unwrap() {
            Frame::Message(m) => Some(m),
            other => panic!("{other:?}"),
        }
    }

    async fn reply(&mut self, action: &Message, body: &str) {
        let id = action.action_id().unwrap().text().into_owned();
        let text = format!("{}ActionID: {id}\r\n\r\n", body);
        self.write(text.as_bytes()).await;
    }
}

fn fake_settings(port: u16) -> ClientSettings {
    let mut settings = client_settings("fake", port, "medcall", "fake-secret", LoginMethod::Plain);
    settings.timing.backoff_min = ms(50);
    settings.timing.backoff_max = ms(200);
    settings.timing.ping_interval = ms(600_000);
    settings
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Running {
    client: AmiClient,
    events: EventStream,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn run(settings: ClientSettings) -> Running {
    let shutdown = CancellationToken::new();
    let (client, events) =
        AmiClient::spawn_with_events(settings, &TaskTracker::new(), shutdown.clone());
    Running {
        client,
        events,
        shutdown,
    }
}

async fn until_connected(events: &mut EventStream) {
    next_matching(events, Duration::from_secs(30), |e| {
        matches!(e, AmiEvent::Connected { .. })
    })
    .await;
}

fn is_event(name: &'static str) -> impl Fn(&AmiEvent) -> bool {
    move |e| matches!(e, AmiEvent::Message(m) if m.is("Event", name))
}

#[tokio::test(start_paused = true)]
async fn a_stalled_peer_misses_the_ping_deadline_and_the_client_reconnects() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.timing.ping_interval = ms(1_000);
    settings.timing.ping_deadline = ms(500);
    let mut c = run(settings);
    let mut first = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    let connected_at = tokio::time::Instant::now();
    // The peer reads the Ping and never answers: a stalled PBX.
    let ping = first.action().await;
    assert!(ping.is("Action", "Ping"));
    let e = next_matching(&mut c.events, Duration::from_secs(30), |e| {
        matches!(e, AmiEvent::Disconnected { .. })
    })
    .await;
    let waited = connected_at.elapsed();
    assert!(
        waited >= Duration::from_millis(1_500) && waited < Duration::from_millis(1_700),
        "dead peer noticed after {waited:?}"
    );
    assert!(format!("{e:?}").contains("Ping"), "{e:?}");
    let _second = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    assert_eq!(c.client.status().connect_attempts, 2);
}

// Real time: the point is bytes arriving over a socket while a deadline runs.
#[tokio::test]
async fn a_busy_peer_whose_pong_is_late_behind_events_is_not_declared_dead() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.timing.ping_interval = ms(1_000);
    settings.timing.ping_deadline = ms(500);
    let mut c = run(settings);
    let mut conn = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    let ping = conn.action().await;
    assert!(ping.is("Action", "Ping"));
    // Events keep flowing for three deadlines before the Pong arrives.
    for i in 0..15 {
        conn.write(format!("Event: Busy\r\nN: {i}\r\n\r\n").as_bytes())
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.reply(&ping, "Response: Success\r\nPing: Pong\r\n")
        .await;
    conn.write(b"Event: AfterPong\r\n\r\n").await;
    let e = next_matching(&mut c.events, Duration::from_secs(10), |e| {
        is_event("AfterPong")(e) || matches!(e, AmiEvent::Disconnected { .. })
    })
    .await;
    assert!(is_event("AfterPong")(&e), "the connection survived: {e:?}");
    assert_eq!(c.client.status().connect_attempts, 1);
}

// Real time: the spacing is measured between real connections.
#[tokio::test]
async fn a_refused_login_is_retried_on_the_backoff_schedule_not_in_a_busy_loop() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.timing.backoff_min = ms(200);
    settings.timing.backoff_max = ms(800);
    let c = run(settings);
    // The peer refuses every login at once (Asterisk itself would sleep a second).
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let mut conn = peer.accept().await;
        attempts.push(std::time::Instant::now());
        conn.write(b"Asterisk Call Manager/11.0.0\r\n").await;
        let login = conn.action().await;
        assert!(login.is("Action", "Login"), "{login:?}");
        conn.reply(
            &login,
            "Response: Error\r\nMessage: Authentication failed\r\n",
        )
        .await;
    }
    // The delay before each retry: 200 ms doubling to 800 ms, each 50–100 % of it. The
    // lower bound is the point (a busy loop or a delay that never grows fails it); the
    // upper one is loose for a loaded machine (the paused-time schedule test is exact).
    for (i, base) in [200u64, 400, 800, 800].into_iter().enumerate() {
        let gap = attempts[i + 1] - attempts[i];
        assert!(
            gap >= ms(base / 2) && gap <= ms(base + 1_000),
            "retry {} after {gap:?}, want {}..={} ms",
            i + 1,
            base / 2,
            base
        );
    }
    let status = c.client.status();
    assert_ne!(status.state, medcall::ami::ClientState::Connected);
    assert!(status.connect_attempts >= 5, "{status:?}");
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("login rejected: Authentication failed"),
        "{error}"
    );
}

#[tokio::test]
async fn events_beyond_the_queue_during_login_are_dropped_and_counted() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.limits.event_queue_capacity = 2;
    let mut c = run(settings);
    let mut conn = peer.accept().await;
    conn.write(b"Asterisk Call Manager/11.0.0\r\n").await;
    let login = conn.action().await;
    // Five events arrive before the login's answer.
    for n in 0..5 {
        conn.write(format!("Event: Early\r\nN: {n}\r\n\r\n").as_bytes())
            .await;
    }
    conn.reply(&login, "Response: Success\r\n").await;
    let settings_action = conn.action().await;
    conn.reply(
        &settings_action,
        "Response: Success\r\nAsteriskVersion: 99.1.0\r\n",
    )
    .await;
    until_connected(&mut c.events).await;
    let first = next_matching(&mut c.events, Duration::from_secs(10), |_| true).await;
    assert!(
        matches!(&first, AmiEvent::Message(m) if m.is("N", "0")),
        "the first early event follows Connected: {first:?}"
    );
    let status = c.client.status();
    assert_eq!(status.events_received, 2, "two kept for after Connected");
    // Three beyond the login's queue of two, and one more at this consumer, whose queue
    // (also two) held Connected and the first when the second came.
    assert_eq!(status.events_dropped, 4, "{status:?}");
}

#[tokio::test]
async fn garbage_bytes_are_skipped_and_counted_and_the_next_event_arrives() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.limits.frame.max_message_bytes = 64 * 1024;
    let mut c = run(settings);
    let mut conn = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    // 200 KB without a line end, then short junk with odd bytes, then a real event.
    let junk: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .map(|b| if b == b'\n' { b'x' } else { b })
        .collect();
    conn.write(&junk).await;
    conn.write(b"\r\n\r\n\x00\xff:\x01\n\x80: \xfe\n\n").await;
    conn.write(b"Event: AfterGarbage\r\n\r\n").await;
    next_matching(
        &mut c.events,
        Duration::from_secs(10),
        is_event("AfterGarbage"),
    )
    .await;
    assert_eq!(c.client.status().messages_skipped, 1);
}

#[tokio::test]
async fn an_oversized_message_is_skipped_and_the_stream_continues() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.limits.frame.max_message_bytes = 64 * 1024;
    let mut c = run(settings);
    let mut conn = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    conn.write(include_bytes!("../../fixtures/ami/over-limit.ami"))
        .await;
    let e = next_matching(&mut c.events, Duration::from_secs(10), |e| {
        matches!(e, AmiEvent::Message(_))
    })
    .await;
    assert!(
        is_event("Hangup")(&e),
        "the big Newchannel is skipped: {e:?}"
    );
    let status = c.client.status();
    assert_eq!(status.messages_skipped, 1);
    assert_eq!(status.events_received, 1);
}

#[tokio::test]
async fn an_action_written_but_unanswered_when_the_peer_drops_has_an_unknown_outcome() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.timing.backoff_min = ms(300);
    settings.timing.backoff_max = ms(300);
    let mut c = run(settings);
    let mut conn = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    let client = c.client.clone();
    let sent = tokio::spawn(async move {
        client
            .send(Action::hangup("PJSIP/100-00000001", None).unwrap())
            .await
    });
    let action = conn.action().await;
    assert!(action.is("Action", "Hangup"));
    drop(conn);
    let outcome = sent.await.unwrap().unwrap_err();
    assert!(matches!(outcome, AmiError::OutcomeUnknown), "{outcome}");
    next_matching(&mut c.events, Duration::from_secs(10), |e| {
        matches!(e, AmiEvent::Disconnected { .. })
    })
    .await;
    // Between connections nothing is written: an action fails at once as not sent.
    let not_sent = c.client.send(Action::ping().unwrap()).await.unwrap_err();
    assert!(matches!(not_sent, AmiError::NotSent), "{not_sent}");
    // And after reconnecting, nothing is re-sent behind the caller's back.
    let mut again = peer.accept_logged_in().await;
    until_connected(&mut c.events).await;
    assert!(
        again
            .next_action(Duration::from_millis(500))
            .await
            .is_none(),
        "no action may be re-sent"
    );
}

#[tokio::test]
async fn a_slow_consumer_loses_events_which_are_counted_and_reported_in_order() {
    let peer = FakePeer::bind().await;
    let mut settings = fake_settings(peer.port());
    settings.limits.event_queue_capacity = 8;
    let mut slow = run(settings);
    let mut conn = peer.accept_logged_in().await;
    // Let the Connected item reach the queue before the burst.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut burst = String::new();
    for n in 0..100 {
        burst.push_str(&format!("Event: Burst\r\nN: {n}\r\n\r\n"));
    }
    conn.write(burst.as_bytes()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while slow.client.status().events_received < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            slow.client.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = slow.client.status();
    assert_eq!(status.events_received, 100);
    // The slow queue holds Connected and 7 events; the other 93 are dropped for it.
    assert_eq!(status.events_dropped, 93);
    let mut got = Vec::new();
    while let Some(e) = slow.events.try_recv() {
        got.push(e);
    }
    assert_eq!(got.len(), 8);
    assert!(matches!(got[0], AmiEvent::Connected { .. }));
    conn.write(b"Event: Later\r\n\r\n").await;
    let e = next_matching(&mut slow.events, Duration::from_secs(10), |_| true).await;
    assert!(matches!(e, AmiEvent::Lagged { missed: 93 }), "{e:?}");
    let e = next_matching(&mut slow.events, Duration::from_secs(10), |_| true).await;
    assert!(is_event("Later")(&e), "{e:?}");
}

#[tokio::test]
async fn shutdown_sends_logoff_then_closes_the_socket_and_the_task_ends() {
    let peer = FakePeer::bind().await;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (client, mut events) =
        AmiClient::spawn_with_events(fake_settings(peer.port()), &tasks, shutdown.clone());
    tasks.close();
    let mut conn = peer.accept_logged_in().await;
    until_connected(&mut events).await;
    shutdown.cancel();
    let logoff = conn.action().await;
    assert!(logoff.is("Action", "Logoff"), "{logoff:?}");
    conn.reply(
        &logoff,
        "Response: Goodbye\r\nMessage: Thanks for all the fish.\r\n",
    )
    .await;
    assert!(
        conn.next_action(Duration::from_secs(5)).await.is_none(),
        "the socket is closed after Logoff"
    );
    tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .expect("the client task ends");
    let e = next_matching(&mut events, Duration::from_secs(1), |e| {
        matches!(e, AmiEvent::Disconnected { .. })
    })
    .await;
    assert!(format!("{e:?}").contains("shutting down"), "{e:?}");
    assert!(matches!(
        client.send(Action::ping().unwrap()).await,
        Err(AmiError::NotSent | AmiError::Stopped)
    ));
}

#[tokio::test(start_paused = true)]
async fn reconnect_attempts_follow_the_backoff_schedule_and_never_stop() {
    // A port nobody listens on: every attempt is refused at once.
    let port = crate::support::free_port();
    let mut settings = fake_settings(port);
    settings.timing.backoff_min = ms(1_000);
    settings.timing.backoff_max = ms(8_000);
    let c = run(settings);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let status = c.client.status();
    // Delays 1, 2, 4, then 8 s, each 50–100 %: after 60 s between 10 (no jitter) and
    // 18 (all halved) attempts.
    assert!(
        (10..=18).contains(&status.connect_attempts),
        "{} attempts in a minute",
        status.connect_attempts
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect")),
        "{status:?}"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    let later = c.client.status().connect_attempts;
    assert!(
        later >= status.connect_attempts + 600 / 8,
        "still retrying every ≤ 8 s: {later}"
    );
}

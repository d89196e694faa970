//! Live streams (`GET /streams/{token}`) of what a real Asterisk sends over AudioSocket.
//!
//! The daemon has no route yet that opens a stream (the conference engine's
//! `call.stream/start` will call `StreamHub::open`), so the rig test runs medcall's own
//! AudioSocket server and streams router in this process, and originates the
//! AudioSocket leg with raw AMI exactly as the engine will: Asterisk plays a 1 kHz
//! tone into the leg, then hangs it up. The slow-listener test fakes the PBX side (a
//! fault a real PBX cannot be told to produce): it needs more frames than real time
//! gives. The daemon test checks the route as the running daemon serves it.

use std::time::Duration;

use futures_util::StreamExt;
use medcall::media::stream::{self, AudioSocketSettings, FanOutSettings, StreamHub};
use medcall::metrics::StreamMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use crate::support::Daemon;
use crate::support::audiosocket::{RATE, goertzel_amplitude};
use crate::support::rig::{HangupOnDrop, RawAmi, Rig, field};

const LIMIT: Duration = Duration::from_secs(15);
const TONE_HZ: f64 = 1000.0;
const TONE_SECONDS: usize = 2;

/// medcall's stream server and streams router, in this process, on free loopback ports.
struct Streams {
    hub: StreamHub,
    metrics: StreamMetrics,
    audiosocket_port: u16,
    http_port: u16,
    cancel: CancellationToken,
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Streams {
    async fn start(fanout: FanOutSettings) -> Streams {
        let metrics = StreamMetrics::default();
        let hub = StreamHub::new(fanout, metrics.clone());
        let cancel = CancellationToken::new();
        let audiosocket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let audiosocket_port = audiosocket.local_addr().unwrap().port();
        let settings = AudioSocketSettings {
            fanout,
            ..AudioSocketSettings::default()
        };
        tokio::spawn(stream::serve(
            audiosocket,
            settings,
            hub.clone(),
            cancel.clone(),
        ));
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_port = http.local_addr().unwrap().port();
        let router = medcall::http::streams::router(hub.clone());
        let shutdown = cancel.clone();
        tokio::spawn(async move {
            axum::serve(http, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .unwrap();
        });
        Streams {
            hub,
            metrics,
            audiosocket_port,
            http_port,
            cancel,
        }
    }
}

/// A chunked HTTP listener read at the wire level, so the terminator can be seen.
struct ChunkedListener {
    socket: TcpStream,
    buf: Vec<u8>,
    head: String,
}

/// What a chunked listener received until its connection closed.
struct Received {
    body: Vec<u8>,
    /// The `0\r\n\r\n` terminator arrived: the stream ended cleanly.
    terminated: bool,
}

impl ChunkedListener {
    async fn connect(port: u16, token: &str) -> ChunkedListener {
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        ChunkedListener::over(socket, token).await
    }

    /// On a socket whose kernel receive buffer is small: a client that stops reading
    /// fills it (and the server's send buffer) within seconds, not 30 MB later.
    async fn connect_small(port: u16, token: &str) -> ChunkedListener {
        ChunkedListener::over(small_socket(port).await, token).await
    }

    async fn over(mut socket: TcpStream, token: &str) -> ChunkedListener {
        let request = format!("GET /streams/{token} HTTP/1.1\r\nHost: medcall\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut listener = ChunkedListener {
            socket,
            buf: Vec::new(),
            head: String::new(),
        };
        let end = loop {
            if let Some(at) = listener.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(listener.fill().await, "closed before the response head");
        };
        listener.head = String::from_utf8(listener.buf[..end].to_vec()).unwrap();
        listener.buf.drain(..end + 4);
        listener
    }

    /// Reads more; false at EOF (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(LIMIT, self.socket.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("the listener heard nothing for {LIMIT:?}"),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body's chunks until the terminator or the connection's end.
    async fn read_to_end(mut self) -> Received {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                if !self.fill().await {
                    return Received {
                        body,
                        terminated: false,
                    };
                }
                continue;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap(), 16).unwrap();
            while self.buf.len() < line_end + 2 + size + 2 {
                if !self.fill().await {
                    return Received {
                        body,
                        terminated: false,
                    };
                }
            }
            if size == 0 {
                return Received {
                    body,
                    terminated: true,
                };
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn small_socket(port: u16) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Small enough to fill soon, large enough that reading it back later is not a
    // crawl of tiny windows and delayed ACKs.
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

async fn ws_connect(port: u16, token: &str) -> Ws {
    let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    ws_over(socket, port, token).await
}

async fn ws_over(socket: TcpStream, port: u16, token: &str) -> Ws {
    let url = format!("ws://127.0.0.1:{port}/streams/{token}");
    let (mut ws, response) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(socket))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    let hello = tokio::time::timeout(LIMIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let hello: serde_json::Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
    assert_eq!(
        hello,
        serde_json::json!({"format": "s16le", "rate": 16000, "channels": 1, "frameMs": 20})
    );
    ws
}

/// What a WebSocket listener received, and the close code it got (`None`: no close frame).
async fn ws_read_to_end(mut ws: Ws) -> (Vec<Vec<u8>>, Option<CloseCode>) {
    let mut frames = Vec::new();
    loop {
        let message = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("the WebSocket listener heard nothing");
        match message {
            Some(Ok(Message::Binary(b))) => frames.push(b.to_vec()),
            Some(Ok(Message::Close(close))) => return (frames, close.map(|c| c.code)),
            Some(Ok(other)) => panic!("unexpected message {other:?}"),
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

fn samples(pcm: &[u8]) -> Vec<f64> {
    pcm.chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// A 1 kHz tone at a quarter of full scale, as a headerless 16 kHz file Asterisk plays
/// (`.sln16`), written into the rig's media directory; its Playback name.
fn tone_file() -> String {
    let root = std::env::var("MEDCALL_RIG_ROOT").unwrap_or_else(|_| {
        format!(
            "{}/.cache/medcall/asterisk-22-sid",
            std::env::var("HOME").unwrap()
        )
    });
    let dir = std::path::Path::new(&root).join("var/lib/asterisk/sounds/medcall");
    let n = TONE_SECONDS * RATE as usize;
    let pcm: Vec<u8> = (0..n)
        .flat_map(|i| {
            let x = 0.25 * (std::f64::consts::TAU * TONE_HZ * i as f64 / f64::from(RATE)).sin();
            ((x * 32767.0) as i16).to_le_bytes()
        })
        .collect();
    // Written to a temporary name and renamed: a parallel run never plays half a file.
    let tmp = dir.join(format!("stream-tone.{}.tmp", std::process::id()));
    std::fs::write(&tmp, pcm).unwrap();
    std::fs::rename(&tmp, dir.join("stream-tone-1k.sln16")).unwrap();
    // Absolute (as Asterisk sees the rig's root): relative names are looked up under
    // astdatadir's sounds, not this directory.
    "/var/lib/asterisk/sounds/medcall/stream-tone-1k".into()
}

#[tokio::test]
async fn a_tone_asterisk_plays_into_the_audiosocket_leg_reaches_chunked_and_websocket_listeners_and_its_hangup_ends_both_cleanly()
 {
    let streams = Streams::start(FanOutSettings::default()).await;
    let ticket = streams.hub.open();
    let chunked = ChunkedListener::connect(streams.http_port, &ticket.token).await;
    assert!(chunked.head.starts_with("HTTP/1.1 200"), "{}", chunked.head);
    assert_eq!(chunked.header("content-type").as_deref(), Some("audio/wav"));
    assert_eq!(
        chunked.header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    let ws = ws_connect(streams.http_port, &ticket.token).await;
    let playback = tone_file();

    let rig = Rig::from_env();
    let mut ami = RawAmi::connect(&rig).await;
    let login = ami.login(&rig.username, &rig.secret).await;
    assert_eq!(field(&login, "Response"), Some("Success"), "{login:?}");
    let uid = format!("stream-it-{}", &ticket.uuid[24..]);
    let _cleanup = HangupOnDrop(vec![uid.clone()]);
    let channel = format!(
        "AudioSocket/127.0.0.1:{}/{}/c(slin16)",
        streams.audiosocket_port, ticket.uuid
    );
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", &channel),
        ("Application", "Playback"),
        ("Data", &playback),
        ("Async", "true"),
        ("ChannelId", &uid),
        ("ActionID", &uid),
    ])
    .await;
    let answer = ami
        .wait_for(LIMIT, |m| {
            field(m, "Event") == Some("OriginateResponse") && field(m, "ActionID") == Some(&uid)
        })
        .await
        .expect("an OriginateResponse");
    assert_eq!(field(&answer, "Response"), Some("Success"), "{answer:?}");

    // Playback ends after the file; the leg hangs up; both listeners end cleanly.
    let (received, (frames, close)) = tokio::join!(chunked.read_to_end(), ws_read_to_end(ws));
    assert!(received.terminated, "the chunked terminator arrived");
    assert_eq!(close, Some(CloseCode::Normal), "WebSocket close 1000");
    assert!(!streams.hub.is_live(&ticket.uuid));
    assert_eq!(streams.hub.token_of(&ticket.uuid), None);

    let header = &received.body[..44];
    assert_eq!(&header[..4], b"RIFF");
    assert_eq!(&header[4..8], [0xff; 4]);
    assert_eq!(&header[8..16], b"WAVEfmt ");
    assert_eq!(u16::from_le_bytes([header[20], header[21]]), 1, "PCM");
    assert_eq!(u16::from_le_bytes([header[22], header[23]]), 1, "mono");
    assert_eq!(
        u32::from_le_bytes(header[24..28].try_into().unwrap()),
        16_000
    );
    assert_eq!(u16::from_le_bytes([header[34], header[35]]), 16, "bits");
    assert_eq!(&header[36..40], b"data");
    assert_eq!(&header[40..44], [0xff; 4]);
    let pcm = &received.body[44..];
    // Both listeners got the same frames: every one, in order.
    assert_eq!(
        frames.concat(),
        pcm,
        "the chunked and the WebSocket audio differ"
    );
    assert!(frames.iter().all(|f| f.len() == 640), "20 ms slin16 frames");
    assert_eq!(streams.metrics.frames_dropped.get(), 0);

    // Nearly the whole file (Asterisk may trim its first or last frame), and the tone
    // at its frequency read as 16 kHz audio: loud at 1 kHz, absent at 1.5 kHz.
    let heard = samples(pcm);
    assert!(
        heard.len() >= (TONE_SECONDS * RATE as usize) * 9 / 10,
        "{} samples of {}",
        heard.len(),
        TONE_SECONDS * RATE as usize
    );
    let middle = &heard[heard.len() / 4..heard.len() * 3 / 4];
    let at_tone = goertzel_amplitude(middle, TONE_HZ, f64::from(RATE));
    let off_tone = goertzel_amplitude(middle, 1500.0, f64::from(RATE));
    println!(
        "stream tone: 1000 Hz {at_tone:.4}, 1500 Hz {off_tone:.4}, {} samples",
        heard.len()
    );
    assert!(at_tone > 0.2, "1 kHz level {at_tone}");
    assert!(off_tone < 0.01, "1.5 kHz level {off_tone}");
}

/// Frames whose first 4 bytes are their sequence number.
fn numbered(n: u32) -> Vec<u8> {
    let mut frame = vec![0x12, 0x02, 0x80];
    let mut payload = vec![0u8; 640];
    payload[..4].copy_from_slice(&n.to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

#[tokio::test]
async fn a_listener_that_stops_reading_is_cut_off_without_a_terminator_while_the_others_miss_nothing()
 {
    let fanout = FanOutSettings {
        listener_queue_frames: 50,
        cut_after: Duration::from_millis(300),
    };
    let streams = Streams::start(fanout).await;
    let ticket = streams.hub.open();
    let stuck = ChunkedListener::connect_small(streams.http_port, &ticket.token).await;
    let reader = ChunkedListener::connect(streams.http_port, &ticket.token).await;
    let ws_reader = ws_connect(streams.http_port, &ticket.token).await;
    let ws_stuck = ws_over(
        small_socket(streams.http_port).await,
        streams.http_port,
        &ticket.token,
    )
    .await;
    let reading = tokio::spawn(reader.read_to_end());
    let ws_reading = tokio::spawn(ws_read_to_end(ws_reader));

    let mut pbx = TcpStream::connect(("127.0.0.1", streams.audiosocket_port))
        .await
        .unwrap();
    let mut first = vec![0x01, 0, 16];
    first.extend_from_slice(&uuid_bytes(&ticket.uuid));
    pbx.write_all(&first).await.unwrap();
    // Frames until both stuck listeners are cut (their socket buffers fill first),
    // one every millisecond: faster than real time, slow enough for the readers.
    let mut sent = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while streams.metrics.listeners_cut.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck listeners were never cut: {sent} sent, {} received, {} dropped, {} listeners",
            streams.metrics.frames_received.get(),
            streams.metrics.frames_dropped.get(),
            streams.metrics.listeners.get()
        );
        pbx.write_all(&numbered(sent)).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    pbx.write_all(&[0x00, 0, 0]).await.unwrap();
    println!("stuck listeners cut after {sent} frames");

    let received = reading.await.unwrap();
    assert!(received.terminated);
    let got: Vec<u32> = received.body[44..]
        .chunks(640)
        .map(|f| u32::from_le_bytes(f[..4].try_into().unwrap()))
        .collect();
    assert_eq!(
        got,
        (0..sent).collect::<Vec<_>>(),
        "the reading listener missed frames"
    );
    let (frames, close) = ws_reading.await.unwrap();
    assert_eq!(close, Some(CloseCode::Normal));
    assert_eq!(
        frames.len(),
        sent as usize,
        "the WebSocket reader missed frames"
    );
    assert!(streams.metrics.frames_dropped.get() > 0);
    // The stuck ones, reading at last: what they held, then no terminator / close 1008.
    let cut = stuck.read_to_end().await;
    assert!(
        !cut.terminated,
        "a cut listener's body ends without the terminator"
    );
    assert!(cut.body.len() < 44 + sent as usize * 640);
    let (_, close) = ws_read_to_end(ws_stuck).await;
    assert!(
        matches!(close, Some(CloseCode::Policy) | None),
        "a cut WebSocket listener gets 1008 (or its socket closed): {close:?}"
    );
}

fn uuid_bytes(uuid: &str) -> Vec<u8> {
    hex::decode(uuid.replace('-', "")).unwrap()
}

#[tokio::test]
async fn the_daemon_answers_an_unknown_stream_token_with_404_in_the_call_envelope() {
    let d = Daemon::start().await;
    let token = "0123456789abcdef0123456789abcdef";
    let r = d.get(&format!("/streams/{token}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], 404);
    assert!(body["message"].is_string(), "{body}");
    let ws = tokio_tungstenite::connect_async(format!(
        "ws://{}/streams/{token}",
        d.http.trim_start_matches("http://")
    ))
    .await;
    match ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("an unknown token upgraded: {other:?}"),
    }
    // Documented, without a key requirement: the token is the credential.
    let doc: serde_json::Value = d
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"]["/streams/{token}"]["get"];
    assert!(op.get("security").is_none(), "{op}");
    assert!(op["responses"].get("404").is_some(), "{op}");
    assert!(op["responses"].get("200").is_some(), "{op}");
    // The AudioSocket server of the daemon is up on its port.
    let mut socket = TcpStream::connect(("127.0.0.1", d.audiosocket_port))
        .await
        .unwrap();
    socket.write_all(&[0x01, 0, 16]).await.unwrap();
    socket.write_all(&[7; 16]).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(LIMIT, socket.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "an unknown uuid is closed: {n:?}"
    );
}

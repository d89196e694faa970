//! Against a raw HTTP/1.1 server on 127.0.0.1 written here, so each test controls
//! exactly what goes on the wire and can count what the client took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// What the server does with one request (it is given the request head).
#[derive(Clone)]
enum Reply {
    /// A head (status line and headers, no blank line) and a body; the given
    /// `Content-Length` is sent when there is one, else the body ends with the
    /// connection.
    Body {
        head: String,
        body: Arc<Vec<u8>>,
        content_length: Option<u64>,
    },
    /// Headers then one byte every 100 ms, forever.
    Drip,
}

struct Server {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// Body bytes the server managed to write (the client's socket took them).
    written: Arc<AtomicU64>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

async fn serve(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let (h, w, hs) = (hits.clone(), written.clone(), heads.clone());
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (reply, h, w, hs) = (reply.clone(), h.clone(), w.clone(), hs.clone());
            tokio::spawn(async move {
                let _ = one(sock, &*reply, &h, &w, &hs).await;
            });
        }
    });
    Server {
        addr,
        hits,
        written,
        heads,
    }
}

async fn one(
    mut sock: TcpStream,
    reply: &(dyn Fn(&str) -> Reply + Send + Sync),
    hits: &AtomicUsize,
    written: &AtomicU64,
    heads: &std::sync::Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    hits.fetch_add(1, Ordering::SeqCst);
    heads.lock().unwrap().push(head.clone());
    match reply(&head) {
        Reply::Body {
            head,
            body,
            content_length,
        } => {
            let mut h = format!("{head}\r\nConnection: close\r\n");
            if let Some(n) = content_length {
                h.push_str(&format!("Content-Length: {n}\r\n"));
            }
            h.push_str("\r\n");
            sock.write_all(h.as_bytes()).await?;
            for chunk in body.chunks(64 * 1024) {
                sock.write_all(chunk).await?;
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            sock.shutdown().await
        }
        Reply::Drip => {
            sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                .await?;
            loop {
                sock.write_all(b"x").await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn ok(body: &[u8]) -> Reply {
    Reply::Body {
        head: "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg".into(),
        body: Arc::new(body.to_vec()),
        content_length: Some(body.len() as u64),
    }
}

fn redirect(to: &str) -> Reply {
    Reply::Body {
        head: format!("HTTP/1.1 302 Found\r\nLocation: {to}"),
        body: Arc::new(Vec::new()),
        content_length: Some(0),
    }
}

/// Settings that let the test server (127.0.0.1) through.
fn local() -> FetchSettings {
    FetchSettings {
        guard: NetGuard::parse(&["127.0.0.1/32"], &[]).unwrap(),
        total_timeout: Duration::from_secs(10),
        ..FetchSettings::default()
    }
}

#[tokio::test]
async fn a_body_within_the_limit_arrives_whole_with_its_validators() {
    let server = serve(|_| Reply::Body {
        head: "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT"
            .into(),
        body: Arc::new(b"RIFF....WAVE".to_vec()),
        content_length: Some(12),
    })
    .await;
    let f = fetch(&format!("http://{}/a.wav", server.addr), &local())
        .await
        .unwrap();
    assert_eq!(&f.body[..], b"RIFF....WAVE");
    assert_eq!(f.validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        f.validators.last_modified.as_deref(),
        Some("Tue, 01 Dec 2026 10:00:00 GMT")
    );
}

#[tokio::test]
async fn only_http_and_https_are_fetched() {
    for url in [
        "ftp://127.0.0.1/a.mp3",
        "file:///etc/passwd",
        "data:audio/mpeg;base64,AAAA",
        "gopher://127.0.0.1/",
    ] {
        let e = fetch(url, &local()).await.unwrap_err();
        assert!(matches!(e, FetchError::Scheme(_)), "{url}: {e:?}");
    }
    for url in ["not a url", "http://", "/relative/a.mp3", ""] {
        let e = fetch(url, &local()).await.unwrap_err();
        assert!(matches!(e, FetchError::BadUrl(_)), "{url}: {e:?}");
    }
}

const LIMIT: u64 = 10_485_760;

/// The server offers four times the limit; the client must stop near the limit.
async fn over_the_limit(content_length: Option<u64>) {
    let body = Arc::new(vec![b'a'; 4 * LIMIT as usize]);
    let server = serve(move |_| Reply::Body {
        head: "HTTP/1.1 200 OK".into(),
        body: body.clone(),
        content_length,
    })
    .await;
    let e = fetch(&format!("http://{}/big.mp3", server.addr), &local())
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::TooLarge { limit: LIMIT });
    // Let the server's writes fail against the closed socket.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = server.written.load(Ordering::SeqCst);
    // Written = what the client read + what the kernel's socket buffers held; never
    // the whole body.
    assert!(
        written < 2 * LIMIT,
        "the server wrote {written} bytes: the client read past the limit"
    );
}

#[tokio::test]
async fn a_body_without_content_length_is_cut_when_it_passes_the_limit() {
    over_the_limit(None).await;
}

#[tokio::test]
async fn a_false_content_length_under_the_limit_does_not_let_more_through() {
    // The header says 100 bytes; the client reads no more than that, and the body
    // that went on is not taken for the file.
    let server = serve(|_| Reply::Body {
        head: "HTTP/1.1 200 OK".into(),
        body: Arc::new(vec![b'b'; 1000]),
        content_length: Some(100),
    })
    .await;
    let f = fetch(&format!("http://{}/x", server.addr), &local())
        .await
        .unwrap();
    assert_eq!(f.body.len(), 100);
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_refused_before_the_body() {
    over_the_limit(Some(4 * LIMIT)).await;
}

#[tokio::test]
async fn exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    for (len, cl) in [
        (LIMIT, true),
        (LIMIT, false),
        (LIMIT + 1, true),
        (LIMIT + 1, false),
    ] {
        let body = Arc::new(vec![b'c'; len as usize]);
        let server = serve(move |_| Reply::Body {
            head: "HTTP/1.1 200 OK".into(),
            body: body.clone(),
            content_length: cl.then_some(len),
        })
        .await;
        let got = fetch(&format!("http://{}/x", server.addr), &local()).await;
        if len <= LIMIT {
            assert_eq!(got.unwrap().body.len() as u64, LIMIT);
        } else {
            assert_eq!(got.unwrap_err(), FetchError::TooLarge { limit: LIMIT });
        }
    }
}

#[tokio::test]
async fn a_dripping_server_times_out_on_the_total_deadline() {
    let server = serve(|_| Reply::Drip).await;
    let s = FetchSettings {
        total_timeout: Duration::from_millis(700),
        ..local()
    };
    let e = fetch(&format!("http://{}/slow.mp3", server.addr), &s)
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Timeout(Duration::from_millis(700)));
}

#[tokio::test]
async fn redirects_are_followed_and_each_target_is_checked_again() {
    let target = serve(|_| ok(b"RIFF")).await;
    let to = format!("http://{}/final.wav", target.addr);
    let hop = serve(move |_| redirect(&to)).await;
    let f = fetch(&format!("http://{}/start", hop.addr), &local())
        .await
        .unwrap();
    assert_eq!(&f.body[..], b"RIFF");
    assert_eq!(f.url.path(), "/final.wav");

    // A relative Location resolves against the current URL.
    let relative = serve(|head: &str| {
        if head.starts_with("GET /here ") {
            ok(b"done")
        } else {
            redirect("/here")
        }
    })
    .await;
    let f = fetch(&format!("http://{}/there", relative.addr), &local())
        .await
        .unwrap();
    assert_eq!(&f.body[..], b"done");
    assert_eq!(relative.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_redirect_to_a_denied_address_is_refused_without_connecting() {
    // 127.0.0.2 is loopback and not in the allow list.
    let inner = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let inner_port = inner.local_addr().unwrap().port();
    for to in [
        format!("http://127.0.0.2:{inner_port}/secret"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]/".to_owned(),
    ] {
        let t = to.clone();
        let hop = serve(move |_| redirect(&t)).await;
        let e = fetch(&format!("http://{}/", hop.addr), &local())
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Denied { .. }), "{to}: {e:?}");
    }
    let never = tokio::time::timeout(Duration::from_millis(50), inner.accept()).await;
    assert!(never.is_err(), "the denied address was connected to");

    let hop = serve(|_| redirect("file:///etc/passwd")).await;
    let e = fetch(&format!("http://{}/", hop.addr), &local())
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Scheme("file".into()));
}

#[tokio::test]
async fn the_default_guard_refuses_loopback_by_name_and_by_address() {
    let server = serve(|_| ok(b"x")).await;
    let s = FetchSettings::default();
    for url in [
        format!("http://{}/", server.addr),
        format!("http://localhost:{}/", server.addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", server.addr.port()),
    ] {
        let e = fetch(&url, &s).await.unwrap_err();
        assert!(
            matches!(
                e,
                FetchError::Denied {
                    why: Refusal::Loopback,
                    ..
                }
            ),
            "{url}: {e:?}"
        );
    }
    assert_eq!(server.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_is_connected_to_at_the_address_that_was_checked() {
    // `localhost` resolves here to 127.0.0.1 (and perhaps ::1): allowing exactly those
    // lets it through, and the connection goes to the checked address.
    let server = serve(|_| ok(b"pinned")).await;
    let s = FetchSettings {
        guard: NetGuard::parse(&["127.0.0.1/32", "::1/128"], &[]).unwrap(),
        ..local()
    };
    let f = fetch(&format!("http://localhost:{}/", server.addr.port()), &s)
        .await
        .unwrap();
    assert_eq!(&f.body[..], b"pinned");
    let head = server.heads.lock().unwrap()[0].to_lowercase();
    assert!(
        head.contains(&format!("host: localhost:{}", server.addr.port())),
        "{head}"
    );
}

#[tokio::test]
async fn too_many_redirects_are_refused() {
    let looping = serve(|_| redirect("/again")).await;
    let e = fetch(&format!("http://{}/", looping.addr), &local())
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::TooManyRedirects(3));
    // The first request and three redirects followed.
    assert_eq!(looping.hits.load(Ordering::SeqCst), 4);
    let no_location = serve(|_| Reply::Body {
        head: "HTTP/1.1 301 Moved".into(),
        body: Arc::new(Vec::new()),
        content_length: Some(0),
    })
    .await;
    let e = fetch(&format!("http://{}/", no_location.addr), &local())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::BadRedirect(_)), "{e:?}");
}

#[tokio::test]
async fn an_error_status_is_an_error_naming_it() {
    let server = serve(|_| Reply::Body {
        head: "HTTP/1.1 404 Not Found".into(),
        body: Arc::new(b"<html>404</html>".to_vec()),
        content_length: Some(16),
    })
    .await;
    let e = fetch(&format!("http://{}/gone.mp3", server.addr), &local())
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Status(404));
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = fetch(&format!("http://127.0.0.1:{port}/a.mp3"), &local())
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Connect { .. }), "{e:?}");
}

#[tokio::test]
async fn revalidation_sends_the_validators_and_a_304_is_not_modified() {
    let server = serve(|head: &str| {
        if head.to_lowercase().contains("if-none-match: \"v1\"") {
            Reply::Body {
                head: "HTTP/1.1 304 Not Modified".into(),
                body: Arc::new(Vec::new()),
                content_length: None,
            }
        } else {
            Reply::Body {
                head: "HTTP/1.1 200 OK\r\nETag: \"v1\"".into(),
                body: Arc::new(b"RIFF".to_vec()),
                content_length: Some(4),
            }
        }
    })
    .await;
    let url = format!("http://{}/a.wav", server.addr);
    let first = fetch(&url, &local()).await.unwrap();
    let again = fetch_if_changed(&url, &first.validators, &local())
        .await
        .unwrap();
    assert!(matches!(again, Fetch::NotModified), "{again:?}");
    let v = Validators {
        etag: None,
        last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
    };
    let by_date = fetch_if_changed(&url, &v, &local()).await.unwrap();
    assert!(matches!(by_date, Fetch::Body(_)));
    let third = server.heads.lock().unwrap()[2].to_lowercase();
    assert!(
        third.contains("if-modified-since: tue, 01 dec 2026"),
        "{third}"
    );
    let odd = serve(|_| Reply::Body {
        head: "HTTP/1.1 304 Not Modified".into(),
        body: Arc::new(Vec::new()),
        content_length: None,
    })
    .await;
    let e = fetch(&format!("http://{}/", odd.addr), &local())
        .await
        .unwrap_err();
    assert_eq!(e, FetchError::Status(304));
}

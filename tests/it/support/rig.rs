//! Where the Asterisk rig listens, as `scripts/asterisk-rig` set it up, and a raw AMI
//! session independent of medcall's own client: an oracle for what Asterisk really says.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Clone, Debug)]
pub struct Rig {
    pub ami_port: u16,
    pub username: String,
    pub secret: String,
    /// The sid root Asterisk runs in (`chroot`): its `/x` is `<root>/x` here.
    pub root: String,
}

impl Rig {
    /// The rig's settings from the environment `scripts/test` exports (rig defaults otherwise).
    pub fn from_env() -> Rig {
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        Rig {
            ami_port: var("MEDCALL_RIG_AMI_PORT", "5038").parse().unwrap(),
            username: var("MEDCALL_RIG_AMI_USER", "medcall"),
            secret: var("MEDCALL_RIG_AMI_SECRET", "medcall-rig-secret"),
            root: var(
                "MEDCALL_RIG_ROOT",
                &format!(
                    "{}/.cache/medcall/asterisk-22-sid",
                    std::env::var("HOME").unwrap_or_default()
                ),
            ),
        }
    }
}

impl Rig {
    /// A fresh media directory for one daemon: as medcall sees it and as Asterisk (in
    /// its chroot) sees it.
    pub fn media_dir(&self) -> (String, String) {
        let inside = format!(
            "/var/spool/asterisk/medcall/t-{:016x}",
            rand::random::<u64>()
        );
        (format!("{}{inside}", self.root), inside)
    }
}

/// A raw AMI connection: write actions as text, read messages as key/value lists.
pub struct RawAmi {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    pub banner: String,
}

pub type RawMessage = Vec<(String, String)>;

pub fn field<'a>(m: &'a RawMessage, key: &str) -> Option<&'a str> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

impl RawAmi {
    /// Connects to the rig; panics with instructions when it is not up.
    pub async fn connect(rig: &Rig) -> RawAmi {
        let stream = TcpStream::connect(("127.0.0.1", rig.ami_port)).await.unwrap_or_else(|e| {
            panic!("the Asterisk rig is not answering on AMI port {}: {e}; run `scripts/asterisk-rig up`", rig.ami_port)
        });
        let (r, writer) = stream.into_split();
        let mut reader = BufReader::new(r);
        let mut banner = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut banner))
            .await
            .unwrap()
            .unwrap();
        RawAmi {
            reader,
            writer,
            banner: banner.trim_end().to_string(),
        }
    }

    pub async fn send(&mut self, lines: &[(&str, &str)]) {
        let mut text = String::new();
        for (k, v) in lines {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next message, or `None` after `limit` without one.
    pub async fn next(&mut self, limit: Duration) -> Option<RawMessage> {
        tokio::time::timeout(limit, async {
            let mut message = Vec::new();
            loop {
                let mut line = String::new();
                let n = self.reader.read_line(&mut line).await.unwrap();
                assert!(n > 0, "AMI closed the connection");
                let line = line.trim_end_matches(['\r', '\n']);
                if line.is_empty() {
                    if message.is_empty() {
                        continue;
                    }
                    return message;
                }
                let (k, v) = line.split_once(':').unwrap_or((line, ""));
                message.push((k.to_string(), v.trim_start().to_string()));
            }
        })
        .await
        .ok()
    }

    /// Reads until a message matching `pred`, up to `limit`.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        pred: impl Fn(&RawMessage) -> bool,
    ) -> Option<RawMessage> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next(left).await?;
            if pred(&m) {
                return Some(m);
            }
        }
    }

    /// Logs in with a plain secret; returns the response.
    pub async fn login(&mut self, username: &str, secret: &str) -> RawMessage {
        self.send(&[
            ("Action", "Login"),
            ("Username", username),
            ("Secret", secret),
            ("ActionID", "login"),
        ])
        .await;
        self.wait_for(Duration::from_secs(5), |m| {
            field(m, "ActionID") == Some("login")
        })
        .await
        .expect("login response")
    }
}

/// Hangs up channels by uniqueid when dropped, so a failing test leaves no call on the
/// shared rig. Synchronous (a plain socket): it runs during a panic too.
pub struct HangupOnDrop(pub Vec<String>);

impl Drop for HangupOnDrop {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let rig = Rig::from_env();
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", rig.ami_port)) else {
            return;
        };
        let mut text = format!(
            "Action: Login\r\nUsername: {}\r\nSecret: {}\r\n\r\n",
            rig.username, rig.secret
        );
        for uid in &self.0 {
            text.push_str(&format!("Action: Hangup\r\nChannel: {uid}\r\n\r\n"));
        }
        text.push_str("Action: Logoff\r\n\r\n");
        let _ = s.write_all(text.as_bytes());
        // Logoff makes Asterisk close the session once it has read everything before it.
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read_to_end(&mut Vec::new());
    }
}

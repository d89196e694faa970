//! FastAGI against the real Asterisk: calls are Local channels originated over AMI
//! into `medcall-agi-test` (asterisk-conf/test/extensions_test.conf), whose AGI()
//! reaches a server on a free port — the daemon's own for `diagnostics`, otherwise
//! an `agi::Server` built here with probe routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use medcall::agi::command::{Command, ResultError};
use medcall::agi::{
    AgiError, AgiText, Handler, HandlerFuture, Reply, Request, Router, Server, ServerSettings,
    Session, SessionLimits,
};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::support::rig::{RawAmi, RawMessage, Rig, field};
use crate::support::{Daemon, free_port};

const LONG: Duration = Duration::from_secs(15);

/// What a probe route saw, sent to the test as it happens.
#[derive(Debug)]
enum Seen {
    Started(Box<Request>),
    // Read through `Debug` in assertion messages.
    #[allow(dead_code)]
    Note(String),
    #[allow(dead_code)]
    Error(AgiError),
    Usage(Vec<AgiText>),
    Gosub {
        interim: u64,
        text: String,
        arg: Option<AgiText>,
    },
    Finished {
        hung_up: bool,
    },
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// Echo each argument into ECHO_<n>, the path parameter and query into variables.
    EchoArgs,
    /// Play a long file until the caller hangs up, then try ANSWER on the dead channel.
    StreamUntilHangup,
    /// Wait for a digit until the caller hangs up, then ANSWER (511) and GET VARIABLE.
    DeadChannel,
    /// Send STREAM FILE without arguments (520), then carry on.
    Malformed,
    /// GOSUB into medcall-agi-test-sub, then read what it set.
    Gosub,
    /// Wait for the test's go-ahead, then set MEDCALL_STATUS=OK.
    Hold,
    /// WAIT FOR DIGIT forever: only the per-command deadline ends it.
    Stall,
}

struct Probe {
    behaviour: Behaviour,
    seen: mpsc::UnboundedSender<Seen>,
    release: Arc<Notify>,
}

impl Handler for Probe {
    fn call<'s>(&'s self, request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            let args = request.args.clone();
            let _ = self.seen.send(Seen::Started(Box::new(request)));
            let result = self.run(args, session).await;
            if let Err(e) = result {
                let _ = self.seen.send(Seen::Error(e));
            }
            let _ = self.seen.send(Seen::Finished {
                hung_up: session.hung_up(),
            });
            Ok(())
        })
    }
}

impl Probe {
    async fn run(&self, args: Vec<AgiText>, session: &mut Session) -> Result<(), AgiError> {
        match self.behaviour {
            Behaviour::EchoArgs => {
                for (i, arg) in args.iter().enumerate() {
                    session
                        .set_variable(&format!("ECHO_{}", i + 1), &arg.to_str_lossy())
                        .await?;
                }
                session.set_variable("MEDCALL_STATUS", "OK").await?;
            }
            Behaviour::StreamUntilHangup => {
                let playback = session.stream_file("demo-congrats", "").await?;
                self.note(format!(
                    "playback {playback:?} hung_up={}",
                    session.hung_up()
                ));
                let reply = session.send(&Command::answer()).await?;
                self.note(format!("answer {}", reply.code()));
            }
            Behaviour::DeadChannel => {
                let digit = session.wait_for_digit(20_000).await;
                self.note(format!("digit {digit:?}"));
                match session.answer().await {
                    Err(AgiError::Result(ResultError::Refused(Reply::DeadChannel(_)))) => {
                        self.note("answer 511".into());
                    }
                    other => self.note(format!("answer {other:?}")),
                }
                let channel = session.get_variable("CHANNEL").await?;
                self.note(format!("dead get variable {}", channel.is_some()));
            }
            Behaviour::Malformed => {
                let reply = session.send(&Command::custom("STREAM FILE", &[])?).await?;
                if let Reply::Usage(lines) = reply {
                    let _ = self.seen.send(Seen::Usage(lines));
                } else {
                    self.note(format!("unexpected {reply:?}"));
                }
                session.set_variable("MEDCALL_STATUS", "OK").await?;
            }
            Behaviour::Gosub => {
                let outcome = session
                    .gosub("medcall-agi-test-sub", "s", "1", Some("from gosub"))
                    .await?;
                let arg = session.get_variable("MEDCALL_SUB_ARG").await?;
                let _ = self.seen.send(Seen::Gosub {
                    interim: session.interim_replies(),
                    text: outcome.text.to_string(),
                    arg,
                });
                session.set_variable("MEDCALL_STATUS", "OK").await?;
            }
            Behaviour::Hold => {
                let _ = tokio::time::timeout(LONG, self.release.notified()).await;
                session.set_variable("MEDCALL_STATUS", "OK").await?;
            }
            Behaviour::Stall => {
                session.wait_for_digit(-1).await?;
                session.set_variable("MEDCALL_STATUS", "NOT-CUT").await?;
            }
        }
        Ok(())
    }

    fn note(&self, text: String) {
        let _ = self.seen.send(Seen::Note(text));
    }
}

/// An `agi::Server` on a free port serving one probe route.
struct ProbeServer {
    port: u16,
    seen: mpsc::UnboundedReceiver<Seen>,
    release: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Drop for ProbeServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl ProbeServer {
    async fn start(
        route: &'static str,
        behaviour: Behaviour,
        settings: ServerSettings,
    ) -> ProbeServer {
        let (tx, seen) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let probe = Probe {
            behaviour,
            seen: tx,
            release: Arc::clone(&release),
        };
        let router = Router::new().route(route, probe).unwrap();
        let port = free_port();
        let listener = medcall::agi::bind(([127, 0, 0, 1], port).into(), 128).unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(Server::new(router, settings).serve(listener, shutdown.clone()));
        ProbeServer {
            port,
            seen,
            release,
            shutdown,
        }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(LONG, self.seen.recv())
            .await
            .expect("the probe route reported nothing")
            .expect("probe channel closed")
    }

    /// Seen items until `Finished`.
    async fn until_finished(&mut self) -> Vec<Seen> {
        let mut all = Vec::new();
        loop {
            let s = self.next().await;
            let done = matches!(s, Seen::Finished { .. });
            all.push(s);
            if done {
                return all;
            }
        }
    }
}

/// A test call: a Local channel whose `;1` half runs `medcall-agi-test,<case>`.
struct Call {
    ami: RawAmi,
    /// Uniqueid of the half running the AGI.
    uid: String,
    /// Uniqueid of the fake phone (the "caller").
    phone: String,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

impl Call {
    async fn start(case: &str, agi_port: u16) -> Call {
        let rig = Rig::from_env();
        let mut ami = RawAmi::connect(&rig).await;
        let login = ami.login(&rig.username, &rig.secret).await;
        assert_eq!(field(&login, "Response"), Some("Success"), "{login:?}");
        Call::originate(ami, case, agi_port).await
    }

    async fn originate(mut ami: RawAmi, case: &str, agi_port: u16) -> Call {
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let uid = format!("agi-{}-{n}-{case}", std::process::id());
        let phone = format!("{uid}-phone");
        let variable = format!("MEDCALL_AGI_TEST=agi://127.0.0.1:{agi_port}");
        ami.send(&[
            ("Action", "Originate"),
            ("Channel", "Local/answer@fake-phones/n"),
            ("Context", "medcall-agi-test"),
            ("Exten", case),
            ("Priority", "1"),
            ("Async", "true"),
            ("Timeout", "10000"),
            ("ChannelId", &uid),
            ("OtherChannelId", &phone),
            ("Variable", &variable),
            ("ActionID", &uid),
        ])
        .await;
        Call { ami, uid, phone }
    }

    /// The dialplan's report after AGI(): `UserEvent: MedcallAgiTest`.
    async fn report(&mut self) -> RawMessage {
        let uid = self.uid.clone();
        self.ami
            .wait_for(LONG, |m| {
                field(m, "UserEvent") == Some("MedcallAgiTest")
                    && field(m, "Uniqueid") == Some(&uid)
            })
            .await
            .unwrap_or_else(|| panic!("no MedcallAgiTest report for {uid}"))
    }

    async fn getvar(&mut self, name: &str) -> Option<String> {
        let id = format!("{}-get-{name}", self.uid);
        self.ami
            .send(&[
                ("Action", "Getvar"),
                ("Channel", &self.uid),
                ("Variable", name),
                ("ActionID", &id),
            ])
            .await;
        let reply = self
            .ami
            .wait_for(LONG, |m| field(m, "ActionID") == Some(&id))
            .await
            .expect("Getvar answer");
        assert_eq!(field(&reply, "Response"), Some("Success"), "{reply:?}");
        field(&reply, "Value").map(str::to_string)
    }

    /// The caller hangs up: the fake phone's half goes, taking the AGI half with it.
    async fn caller_hangs_up(&mut self) {
        let phone = self.phone.clone();
        self.ami
            .send(&[
                ("Action", "Hangup"),
                ("Channel", &phone),
                ("ActionID", "hangup"),
            ])
            .await;
    }

    /// Waits for the AGI half's `Hangup` event.
    async fn gone(&mut self, within: Duration) -> bool {
        let uid = self.uid.clone();
        self.ami
            .wait_for(within, |m| {
                field(m, "Event") == Some("Hangup") && field(m, "Uniqueid") == Some(&uid)
            })
            .await
            .is_some()
    }

    async fn end(mut self) {
        let uid = self.uid.clone();
        self.ami
            .send(&[("Action", "Hangup"), ("Channel", &uid), ("ActionID", "end")])
            .await;
    }
}

fn started(seen: Seen) -> Request {
    match seen {
        Seen::Started(r) => *r,
        other => panic!("expected Started, got {other:?}"),
    }
}

#[tokio::test]
async fn diagnostics_route_of_the_daemon_sets_version_pbx_and_ok_read_back_over_getvar() {
    let daemon = Daemon::start().await;
    let mut call = Call::start("diagnostics", daemon.agi_port).await;
    let report = call.report().await;
    assert_eq!(
        field(&report, "MedcallStatus"),
        Some("OK"),
        "{report:?}\n{}",
        daemon.stderr()
    );
    assert_eq!(field(&report, "AgiStatus"), Some("SUCCESS"));
    assert_eq!(call.getvar("MEDCALL_STATUS").await.as_deref(), Some("OK"));
    assert_eq!(
        call.getvar("MEDCALL_VERSION").await.as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(call.getvar("MEDCALL_PBX").await.as_deref(), Some("rig"));
    call.end().await;
}

#[tokio::test]
async fn an_unknown_route_sets_noroute_and_the_call_continues() {
    let daemon = Daemon::start().await;
    let mut call = Call::start("nosuchroute", daemon.agi_port).await;
    let report = call.report().await;
    assert_eq!(
        field(&report, "MedcallStatus"),
        Some("NOROUTE"),
        "{report:?}"
    );
    assert!(daemon.stdout().contains("unknown route") || daemon.stderr().contains("unknown route"));
    call.end().await;
}

#[tokio::test]
async fn arguments_with_spaces_quotes_commas_and_cyrillic_survive_the_round_trip() {
    let mut server = ProbeServer::start(
        "args/{param}",
        Behaviour::EchoArgs,
        ServerSettings::default(),
    )
    .await;
    let mut call = Call::start("args", server.port).await;
    let request = started(server.next().await);
    let expected = ["hello world", "say \"hi\"", "a,b", "Привет мир"];
    let args: Vec<String> = request.args.iter().map(|a| a.to_string()).collect();
    assert_eq!(args, expected);
    assert_eq!(request.param("param"), Some("p1"));
    assert_eq!(request.query("q"), Some("a b"));
    assert_eq!(request.query("n"), Some("2"));
    assert_eq!(request.uniqueid, call.uid);
    assert_eq!(request.context, "medcall-agi-test");
    assert_eq!(request.extension, "args");
    let report = call.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some("OK"), "{report:?}");
    for (i, value) in expected.iter().enumerate() {
        assert_eq!(
            call.getvar(&format!("ECHO_{}", i + 1)).await.as_deref(),
            Some(*value)
        );
    }
    call.end().await;
}

#[tokio::test]
async fn a_caller_hanging_up_during_stream_file_ends_the_session_and_the_channel_goes() {
    let mut server = ProbeServer::start(
        "streamhangup",
        Behaviour::StreamUntilHangup,
        ServerSettings::default(),
    )
    .await;
    let mut call = Call::start("streamhangup", server.port).await;
    started(server.next().await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    call.caller_hangs_up().await;
    let seen = server.until_finished().await;
    let text = format!("{seen:?}");
    // Asterisk answers the playback with result=-1; its HANGUP may come before or after.
    assert!(text.contains("failed: true"), "{text}");
    assert!(text.contains("answer 511"), "{text}");
    assert!(
        matches!(seen.last(), Some(Seen::Finished { hung_up: true })),
        "{text}"
    );
    assert!(
        call.gone(Duration::from_secs(5)).await,
        "the channel lingered after the session closed"
    );
}

#[tokio::test]
async fn a_command_on_a_dead_channel_is_answered_511_while_get_variable_still_works() {
    let mut server = ProbeServer::start(
        "deadchannel",
        Behaviour::DeadChannel,
        ServerSettings::default(),
    )
    .await;
    let mut call = Call::start("deadchannel", server.port).await;
    started(server.next().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.caller_hangs_up().await;
    let seen = format!("{:?}", server.until_finished().await);
    assert!(seen.contains("digit Err(Result(Failed"), "{seen}");
    assert!(seen.contains("answer 511"), "{seen}");
    assert!(seen.contains("dead get variable true"), "{seen}");
    assert!(call.gone(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_malformed_command_gets_the_520_usage_and_the_session_continues() {
    let mut server =
        ProbeServer::start("malformed", Behaviour::Malformed, ServerSettings::default()).await;
    let mut call = Call::start("malformed", server.port).await;
    started(server.next().await);
    match server.next().await {
        Seen::Usage(lines) => {
            let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            // Asterisk 22 sends the command's documentation as the usage.
            assert!(text.join("\n").contains("Send the given file"), "{text:?}");
        }
        other => panic!("expected the usage, got {other:?}"),
    }
    let report = call.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some("OK"), "{report:?}");
    call.end().await;
}

#[tokio::test]
async fn gosub_is_answered_trying_then_complete_and_the_subroutine_ran() {
    let mut server = ProbeServer::start("gosub", Behaviour::Gosub, ServerSettings::default()).await;
    let mut call = Call::start("gosub", server.port).await;
    started(server.next().await);
    match server.next().await {
        Seen::Gosub { interim, text, arg } => {
            assert_eq!(interim, 1, "one `100 Trying...` before the real reply");
            assert!(text.contains("Gosub complete"), "{text}");
            assert_eq!(arg, Some(AgiText::from("from gosub")));
        }
        other => panic!("expected the gosub result, got {other:?}"),
    }
    let report = call.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some("OK"), "{report:?}");
    call.end().await;
}

#[tokio::test]
async fn past_the_session_limit_a_call_is_refused_busy_and_continues_its_dialplan() {
    let settings = ServerSettings {
        max_sessions: 1,
        ..ServerSettings::default()
    };
    let mut server = ProbeServer::start("hold", Behaviour::Hold, settings).await;
    let mut first = Call::start("hold", server.port).await;
    started(server.next().await);
    let mut second = Call::start("hold", server.port).await;
    let report = second.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some("BUSY"), "{report:?}");
    assert_eq!(field(&report, "AgiStatus"), Some("SUCCESS"));
    server.release.notify_one();
    let report = first.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some("OK"), "{report:?}");
    first.end().await;
    second.end().await;
}

#[tokio::test]
async fn a_command_past_its_deadline_is_cut_off_and_the_channel_continues() {
    let settings = ServerSettings {
        session: SessionLimits {
            command_timeout: Duration::from_millis(500),
            ..SessionLimits::default()
        },
        ..ServerSettings::default()
    };
    let mut server = ProbeServer::start("stall", Behaviour::Stall, settings).await;
    let mut call = Call::start("stall", server.port).await;
    started(server.next().await);
    let seen = format!("{:?}", server.until_finished().await);
    assert!(seen.contains("CommandTimedOut"), "{seen}");
    let report = call.report().await;
    assert_eq!(field(&report, "MedcallStatus"), Some(""), "{report:?}");
    call.end().await;
}

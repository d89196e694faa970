//! The FastAGI listener: accepts connections, enforces the peer allow-list and the
//! session limit, runs each session under its deadline, drains on shutdown.
//!
//! Owns the listening socket, the session count and every session task (on its own
//! [`TaskTracker`]). It must never leave Asterisk hanging: a refused, timed-out or
//! failed session is always closed, so the channel continues its dialplan.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::command::Command;
use super::router::{Request, Router};
use super::session::{Session, SessionLimits};

/// Which peers may open sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    /// Any loopback address (127.0.0.0/8, ::1).
    pub loopback: bool,
    /// These exact addresses.
    pub addresses: Vec<IpAddr>,
}

impl AllowList {
    /// Loopback only.
    pub fn loopback() -> AllowList {
        AllowList {
            loopback: true,
            addresses: Vec::new(),
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (self.loopback && ip.is_loopback()) || self.addresses.contains(&ip)
    }
}

/// The server's operational limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Sessions served at once; the next one is refused (`MEDCALL_STATUS=BUSY`).
    pub max_sessions: usize,
    /// Bounds and the per-command deadline of each session.
    pub session: SessionLimits,
    /// How long one whole session may last, handler included.
    pub session_timeout: Duration,
    /// On shutdown, how long running sessions may finish before they are cut.
    pub drain_timeout: Duration,
    pub allow: AllowList,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            max_sessions: 256,
            session: SessionLimits::default(),
            session_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(5),
            allow: AllowList::loopback(),
        }
    }
}

/// Told when sessions start and end, e.g. to link `agi_uniqueid` to AMI call state.
/// Called on the session's task: must return quickly and never block.
pub trait SessionHook: Send + Sync + 'static {
    /// A session was routed; its handler runs next. The mark returned comes back to
    /// [`SessionHook::session_ended`]: the hook keeps what it needs of the request,
    /// the server keeps no copy of it.
    fn session_started(&self, _request: &Request) -> SessionMark {
        SessionMark::none()
    }
    /// The session's handler returned (not called when the session was cut by its
    /// deadline or by shutdown).
    fn session_ended(&self, _mark: SessionMark) {}
}

/// What a [`SessionHook`] keeps of one session from its start to its end; opaque to
/// the server.
#[derive(Default)]
pub struct SessionMark(Option<Arc<dyn std::any::Any + Send + Sync>>);

impl SessionMark {
    /// Nothing kept.
    pub fn none() -> SessionMark {
        SessionMark(None)
    }

    /// Keeps `value` (shared: the hook may hold it elsewhere too).
    pub fn new<T: Send + Sync + 'static>(value: Arc<T>) -> SessionMark {
        SessionMark(Some(value))
    }

    /// The value kept, if it is a `T`.
    pub fn take<T: Send + Sync + 'static>(self) -> Option<Arc<T>> {
        self.0.and_then(|v| v.downcast::<T>().ok())
    }
}

impl std::fmt::Debug for SessionMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SessionMark")
            .field(&self.0.as_ref().map(|_| ".."))
            .finish()
    }
}

/// Binds a listener with an explicit accept backlog: bursts of connections queue
/// in the kernel instead of overflowing into SYN retries (about a second each).
///
/// # Errors
/// The address cannot be bound.
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A FastAGI server: a router plus its settings.
#[derive(Clone)]
pub struct Server {
    router: Arc<Router>,
    settings: Arc<ServerSettings>,
    hook: Option<Arc<dyn SessionHook>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("router", &self.router)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

struct Shared {
    router: Arc<Router>,
    settings: Arc<ServerSettings>,
    hook: Option<Arc<dyn SessionHook>>,
}

impl Server {
    pub fn new(router: Router, settings: ServerSettings) -> Server {
        Server {
            router: Arc::new(router),
            settings: Arc::new(settings),
            hook: None,
        }
    }

    /// Installs the hook told of every session's start and end.
    pub fn with_hook(mut self, hook: Arc<dyn SessionHook>) -> Server {
        self.hook = Some(hook);
        self
    }

    /// Accepts sessions until `shutdown` is cancelled, then stops accepting, lets
    /// running sessions finish for the drain timeout, cuts the rest, and returns.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let settings = Arc::clone(&self.settings);
        let shared = Arc::new(Shared {
            router: self.router,
            settings: Arc::clone(&settings),
            hook: self.hook,
        });
        let sessions = TaskTracker::new();
        let cut = CancellationToken::new();
        let slots = Arc::new(Semaphore::new(settings.max_sessions));
        // Refusals are cheap but not free: as many may be under way as sessions.
        let refusals = Arc::new(Semaphore::new(settings.max_sessions.max(1)));
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "AGI accept failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            if !settings.allow.allows(peer.ip()) {
                tracing::warn!(%peer, "AGI connection from a peer not in agi.allow; closed");
                drop(stream);
                continue;
            }
            // No TCP_NODELAY: AGI is strict lockstep (one command, one reply), so each
            // command is written when the previous one was acknowledged by its reply and
            // Nagle never holds it back; the setsockopt would cost a syscall per session.
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => {
                    let shared = Arc::clone(&shared);
                    let cut = cut.clone();
                    // Boxed: the session's future is large, and the task machinery
                    // would otherwise copy it whole several times on the way in.
                    sessions.spawn(Box::pin(async move {
                        run_session(stream, peer, &shared, &cut).await;
                        drop(permit);
                    }));
                }
                Err(_) => match Arc::clone(&refusals).try_acquire_owned() {
                    Ok(permit) => {
                        let limits = settings.session;
                        let cut = cut.clone();
                        sessions.spawn(async move {
                            tokio::select! {
                                () = cut.cancelled() => {}
                                () = refuse(stream, peer, limits) => {}
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "AGI session limit reached and refusals saturated; connection closed");
                        drop(stream);
                    }
                },
            }
        }
        drop(listener);
        sessions.close();
        if !sessions.is_empty() {
            tracing::info!(running = sessions.len(), "AGI: draining sessions");
        }
        if tokio::time::timeout(settings.drain_timeout, sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                running = sessions.len(),
                "AGI: sessions still running after the drain timeout; cutting them"
            );
            cut.cancel();
            sessions.wait().await;
        }
        tracing::info!("AGI server stopped");
    }
}

/// Over the session limit: read the environment, say `MEDCALL_STATUS=BUSY`, close.
async fn refuse(stream: TcpStream, peer: SocketAddr, limits: SessionLimits) {
    tracing::warn!(%peer, "AGI session limit reached; session refused");
    let mut session = Session::new(stream, peer, limits);
    if session.read_env().await.is_ok() {
        if let Ok(command) = Command::set_variable("MEDCALL_STATUS", "BUSY") {
            let _ = session.send(&command).await;
        }
    }
    session.close().await;
}

async fn run_session(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    cut: &CancellationToken,
) {
    let mut session = Session::new(stream, peer, shared.settings.session);
    let timeout = shared.settings.session_timeout;
    tokio::select! {
        () = cut.cancelled() => {
            tracing::warn!(%peer, "AGI session cut by shutdown");
        }
        outcome = tokio::time::timeout(timeout, serve(&mut session, shared)) => {
            if outcome.is_err() {
                tracing::warn!(%peer, ?timeout, "AGI session exceeded its deadline; closed");
            }
        }
    }
    session.close().await;
}

async fn serve(session: &mut Session, shared: &Shared) {
    let peer = session.peer();
    let env = match session.read_env().await {
        Ok(env) => env,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "AGI environment not received");
            return;
        }
    };
    let resolved = match shared.router.resolve(env, peer) {
        Ok(r) => r,
        Err(no_route) => {
            tracing::warn!(
                %peer,
                path = %no_route.path,
                channel = %no_route.env.text("agi_channel"),
                "AGI request for an unknown route; MEDCALL_STATUS=NOROUTE"
            );
            if let Err(e) = session.set_variable("MEDCALL_STATUS", "NOROUTE").await {
                tracing::debug!(%peer, error = %e, "could not set MEDCALL_STATUS");
            }
            return;
        }
    };
    let request = resolved.request;
    let mark = shared
        .hook
        .as_ref()
        .map(|hook| hook.session_started(&request));
    let route = request.route;
    tracing::debug!(%peer, route, uniqueid = %request.uniqueid, "AGI session");
    let uniqueid = request.uniqueid.clone();
    if let Err(e) = resolved.handler.call(request, session).await {
        // After a hangup most commands fail (511) by design: not worth a warning.
        if session.hung_up() {
            tracing::debug!(%peer, route, %uniqueid, error = %e, "AGI handler ended after hangup");
        } else {
            tracing::warn!(%peer, route, %uniqueid, error = %e, "AGI handler failed");
        }
    }
    if let (Some(hook), Some(mark)) = (&shared.hook, mark) {
        hook.session_ended(mark);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    use super::*;
    use crate::agi::router::HandlerFuture;

    const ENV: &[u8] = b"agi_network: yes\nagi_network_script: probe\nagi_channel: Local/x;1\nagi_uniqueid: 1.1\n\n";

    /// A fake Asterisk: writes the environment, then reads commands line by line.
    struct FakeAsterisk {
        reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
        writer: tokio::net::tcp::OwnedWriteHalf,
    }

    impl FakeAsterisk {
        async fn connect(addr: SocketAddr) -> FakeAsterisk {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (r, mut writer) = stream.into_split();
            writer.write_all(ENV).await.unwrap();
            FakeAsterisk {
                reader: BufReader::new(r),
                writer,
            }
        }

        /// The next command line; `None` once the server closed.
        async fn command(&mut self) -> Option<String> {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
                .await
                .unwrap()
                .unwrap_or(0);
            (n > 0).then_some(line)
        }

        async fn say(&mut self, text: &[u8]) {
            self.writer.write_all(text).await.unwrap();
        }
    }

    async fn start(
        router: Router,
        settings: ServerSettings,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 64).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let task = tokio::spawn(Server::new(router, settings).serve(listener, token.clone()));
        (addr, token, task)
    }

    static HUNG_UP_SEEN: AtomicBool = AtomicBool::new(false);

    fn answer_then_report<'s>(_: Request, session: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            session.answer().await?;
            HUNG_UP_SEEN.store(session.hung_up(), Ordering::SeqCst);
            session.set_variable("AFTER", "hangup").await?;
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_hangup_before_the_reply_is_noted_and_the_handler_may_finish() {
        let router = Router::new().route("probe", answer_then_report).unwrap();
        let (addr, _token, _task) = start(router, ServerSettings::default()).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        assert_eq!(asterisk.command().await.as_deref(), Some("ANSWER\n"));
        asterisk.say(b"HANGUP\n200 result=0\n").await;
        assert_eq!(
            asterisk.command().await.as_deref(),
            Some("SET VARIABLE \"AFTER\" \"hangup\"\n")
        );
        asterisk.say(b"200 result=1\n").await;
        assert_eq!(asterisk.command().await, None, "the session must close");
        assert!(HUNG_UP_SEEN.load(Ordering::SeqCst));
    }

    fn sleep_forever<'s>(_: Request, _: &'s mut Session) -> HandlerFuture<'s> {
        Box::pin(async move {
            std::future::pending::<()>().await;
            Ok(())
        })
    }

    #[tokio::test]
    async fn a_stalling_handler_is_cut_off_at_the_session_deadline_and_the_socket_closed() {
        let router = Router::new().route("probe", sleep_forever).unwrap();
        let settings = ServerSettings {
            session_timeout: Duration::from_millis(200),
            ..ServerSettings::default()
        };
        let (addr, _token, _task) = start(router, settings).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        assert_eq!(asterisk.command().await, None);
    }

    #[tokio::test]
    async fn a_peer_outside_the_allow_list_is_closed_without_a_command() {
        let router = Router::new().route("probe", answer_then_report).unwrap();
        let settings = ServerSettings {
            allow: AllowList {
                loopback: false,
                addresses: vec!["10.9.9.9".parse().unwrap()],
            },
            ..ServerSettings::default()
        };
        let (addr, _token, _task) = start(router, settings).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        assert_eq!(asterisk.command().await, None);
    }

    #[tokio::test]
    async fn an_unknown_route_sets_noroute_and_closes() {
        let router = Router::new().route("other", answer_then_report).unwrap();
        let (addr, _token, _task) = start(router, ServerSettings::default()).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        assert_eq!(
            asterisk.command().await.as_deref(),
            Some("SET VARIABLE \"MEDCALL_STATUS\" \"NOROUTE\"\n")
        );
        asterisk.say(b"200 result=1\n").await;
        assert_eq!(asterisk.command().await, None);
    }

    #[tokio::test]
    async fn an_oversized_reply_line_ends_the_session() {
        let router = Router::new().route("probe", answer_then_report).unwrap();
        let mut settings = ServerSettings::default();
        settings.session.reply.max_line = 64;
        settings.session.env.max_line = 64;
        let (addr, _token, _task) = start(router, settings).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        assert_eq!(asterisk.command().await.as_deref(), Some("ANSWER\n"));
        asterisk.say(&[b'2'; 200]).await;
        assert_eq!(asterisk.command().await, None);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_cuts_sessions_after_the_drain_timeout() {
        let router = Router::new().route("probe", sleep_forever).unwrap();
        let settings = ServerSettings {
            drain_timeout: Duration::from_millis(100),
            ..ServerSettings::default()
        };
        let (addr, token, task) = start(router, settings).await;
        let mut asterisk = FakeAsterisk::connect(addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(asterisk.command().await, None);
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
    }

    #[test]
    fn the_allow_list_admits_loopback_and_listed_addresses_only() {
        let list = AllowList {
            loopback: true,
            addresses: vec!["10.0.0.5".parse().unwrap()],
        };
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "10.0.0.5",
            "::ffff:10.0.0.5",
        ] {
            assert!(list.allows(ok.parse().unwrap()), "{ok}");
        }
        for no in ["10.0.0.6", "192.168.1.1", "::ffff:10.0.0.6"] {
            assert!(!list.allows(no.parse().unwrap()), "{no}");
        }
    }
}

//! FastAGI: the server Asterisk's `AGI(agi://…)` connects to.
//!
//! Layers, bottom up: [`line`] (bytes → lines) → [`env`] and [`reply`] (lines →
//! environment, replies; no I/O) → [`command`] (typed commands → safe wire lines,
//! replies → typed results) → [`session`] (one socket, one task) → [`router`]
//! (script path → handler) → [`server`] (accept, limits, deadlines, drain).
//!
//! This module knows nothing of SQL, HTTP, AMI or the clinic domain: handlers that
//! do are registered from `crate::routes`.
//!
//! Registering a route:
//!
//! ```no_run
//! use medcall::agi::{self, HandlerFuture, Request, Router, Server, ServerSettings, Session};
//! # async fn demo(shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
//! fn hello<'s>(request: Request, session: &'s mut Session) -> HandlerFuture<'s> {
//!     Box::pin(async move {
//!         session.set_variable("HELLO", &request.channel).await?;
//!         Ok(())
//!     })
//! }
//! let router = Router::new().route("hello", hello)?;
//! let listener = agi::bind("127.0.0.1:4573".parse()?, 4096)?;
//! Server::new(router, ServerSettings::default()).serve(listener, shutdown).await;
//! # Ok(()) }
//! ```

pub mod command;
pub mod env;
pub mod line;
pub mod reply;
pub mod router;
pub mod server;
pub mod session;
pub mod text;

pub use command::{Command, CommandError};
pub use env::{AgiEnv, EnvLimits};
pub use reply::{Inbound, Outcome, Reply, ReplyLimits};
pub use router::{BoxError, CallerId, Handler, HandlerFuture, HandlerResult, Request, Router};
pub use server::{AllowList, Server, ServerSettings, SessionHook, SessionMark, bind};
pub use session::{AgiError, Session, SessionLimits};
pub use text::AgiText;

//! One FastAGI connection after the environment: writes commands, reads replies,
//! notices `HANGUP`.
//!
//! Owns the socket for its whole life (one task, the session's own), the read
//! buffer and its bounds, and the per-command deadline. It must never write a byte
//! that did not come from a [`Command`], never block without a deadline, and never
//! panic on what Asterisk sends.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::command::{self, Command, CommandError, DataInput, Playback, ResultError};
use super::env::{AgiEnv, EnvCollector, EnvError, EnvLimits};
use super::line::{LineFramer, LineTooLong};
use super::reply::{Inbound, Outcome, Reply, ReplyAssembler, ReplyError, ReplyLimits};
use super::text::AgiText;

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgiError {
    #[error("AGI socket: {0}")]
    Io(#[from] std::io::Error),
    /// Asterisk closed the connection (the channel is gone or AGI was left).
    #[error("Asterisk closed the AGI connection")]
    Closed,
    /// No complete reply within the per-command deadline; the session is now unusable.
    #[error("no reply from Asterisk within {0:?}")]
    CommandTimedOut(Duration),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Result(#[from] ResultError),
    /// An earlier command was cut off or failed mid-way; replies can no longer be
    /// matched to commands, so nothing more is sent.
    #[error("AGI session is out of step after an earlier failure")]
    OutOfStep,
}

impl From<LineTooLong> for AgiError {
    fn from(e: LineTooLong) -> Self {
        AgiError::Reply(ReplyError::LineTooLong(e))
    }
}

/// Bounds and deadlines of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub env: EnvLimits,
    pub reply: ReplyLimits,
    /// How long Asterisk may take to answer one command (and to send the environment).
    pub command_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            env: EnvLimits::default(),
            reply: ReplyLimits::default(),
            command_timeout: Duration::from_secs(10),
        }
    }
}

/// A FastAGI session: the handler's way to talk to the channel.
#[derive(Debug)]
pub struct Session {
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    framer: LineFramer,
    assembler: ReplyAssembler,
    limits: SessionLimits,
    hung_up: bool,
    out_of_step: bool,
    interim_replies: u64,
}

impl Session {
    /// Wraps an accepted connection.
    pub fn new(stream: TcpStream, peer: SocketAddr, limits: SessionLimits) -> Session {
        let max_line = limits.env.max_line.max(limits.reply.max_line);
        Session {
            stream,
            peer,
            // Under glibc's 1 KiB large-bin threshold: a typical environment (~700
            // bytes) fits, and a large first allocation would consolidate the heap on
            // every session.
            buf: BytesMut::with_capacity(960),
            framer: LineFramer::new(max_line),
            assembler: ReplyAssembler::new(limits.reply),
            limits,
            hung_up: false,
            out_of_step: false,
            interim_replies: 0,
        }
    }

    /// Who connected: the PBX's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// True once Asterisk said `HANGUP`: most commands now answer `511`; a handler
    /// should finish what works on a dead channel (GET/SET VARIABLE…) and return.
    pub fn hung_up(&self) -> bool {
        self.hung_up
    }

    /// How many interim `100 Trying...` replies (GOSUB) this session has skipped.
    pub fn interim_replies(&self) -> u64 {
        self.interim_replies
    }

    /// Reads one more chunk into the buffer; `Closed` at end of stream.
    async fn fill(&mut self) -> Result<(), AgiError> {
        // Bounded: the framer refuses a line past its limit, so the buffer never
        // holds more than one line plus one read (the environment: its variable
        // count times the line limit, which the collector enforces).
        if self.buf.capacity() - self.buf.len() < 256 {
            self.buf.reserve(1024);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(AgiError::Closed);
        }
        Ok(())
    }

    /// Reads the environment Asterisk sends first. Called by the server.
    ///
    /// # Errors
    /// I/O, a malformed or oversized environment, or none within the command deadline.
    pub async fn read_env(&mut self) -> Result<AgiEnv, AgiError> {
        let deadline = self.limits.command_timeout;
        match tokio::time::timeout(deadline, self.collect_env()).await {
            Ok(result) => result,
            Err(_) => Err(AgiError::CommandTimedOut(deadline)),
        }
    }

    async fn collect_env(&mut self) -> Result<AgiEnv, AgiError> {
        let mut collector = EnvCollector::new(self.limits.env);
        loop {
            if let Some(env) = collector.collect(&mut self.buf)? {
                return Ok(env);
            }
            self.fill().await?;
        }
    }

    async fn exchange(&mut self, command: &Command) -> Result<Reply, AgiError> {
        self.stream.write_all(command.as_bytes()).await?;
        loop {
            match self.next_inbound().await? {
                Inbound::Hangup => {
                    tracing::debug!(peer = %self.peer, "AGI: channel hung up");
                    self.hung_up = true;
                }
                Inbound::Trying(_) => self.interim_replies += 1,
                Inbound::Reply(reply) => return Ok(reply),
            }
        }
    }

    async fn next_inbound(&mut self) -> Result<Inbound, AgiError> {
        loop {
            while let Some(line) = self.framer.next_line(&mut self.buf)? {
                if let Some(inbound) = self.assembler.push_line(line)? {
                    return Ok(inbound);
                }
            }
            self.fill().await?;
        }
    }

    /// Sends `command` and returns Asterisk's reply, whatever its code. A `HANGUP`
    /// arriving meanwhile is noted ([`Session::hung_up`]); GOSUB's `100 Trying...`
    /// is skipped for the real reply that follows.
    ///
    /// # Errors
    /// I/O, connection closed, a reply that does not parse, or none within the
    /// per-command deadline. After any error the session is out of step and later
    /// calls fail with [`AgiError::OutOfStep`].
    ///
    /// # Cancel safety
    /// Not cancel-safe: dropping the future mid-way leaves the session out of step.
    pub async fn send(&mut self, command: &Command) -> Result<Reply, AgiError> {
        if self.out_of_step {
            return Err(AgiError::OutOfStep);
        }
        // Cleared only when the reply arrives, so a dropped future leaves it set.
        self.out_of_step = true;
        let deadline = self.limits.command_timeout;
        let reply = match tokio::time::timeout(deadline, self.exchange(command)).await {
            Ok(result) => result?,
            Err(_) => return Err(AgiError::CommandTimedOut(deadline)),
        };
        self.out_of_step = false;
        tracing::trace!(
            command = command.as_str(),
            code = reply.code(),
            "AGI exchange"
        );
        Ok(reply)
    }

    /// Waits, without sending anything, until Asterisk says `HANGUP` or closes.
    /// Lets a handler that waits on something else notice the caller leaving.
    ///
    /// # Errors
    /// I/O, or a line that is not `HANGUP` (the session is then out of step).
    ///
    /// # Cancel safety
    /// Cancel-safe: bytes read stay buffered for the next call.
    pub async fn hangup_notice(&mut self) -> Result<(), AgiError> {
        while !self.hung_up {
            match self.next_inbound().await {
                Ok(Inbound::Hangup) | Err(AgiError::Closed) => self.hung_up = true,
                Ok(_) => {
                    self.out_of_step = true;
                    return Err(AgiError::OutOfStep);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes the connection so Asterisk can let the channel go (or continue its
    /// dialplan). Called by the server after the handler returns.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// `ANSWER`.
    ///
    /// # Errors
    /// [`AgiError`]; `Result(Refused(DeadChannel))` after a hangup.
    pub async fn answer(&mut self) -> Result<(), AgiError> {
        let reply = self.send(&Command::answer()).await?;
        command::done(reply)?;
        Ok(())
    }

    /// `SET VARIABLE name value`.
    ///
    /// # Errors
    /// A value with CR/LF/NUL ([`AgiError::Command`]), or the session's errors.
    pub async fn set_variable(&mut self, name: &str, value: &str) -> Result<(), AgiError> {
        let reply = self.send(&Command::set_variable(name, value)?).await?;
        command::done(reply)?;
        Ok(())
    }

    /// `GET VARIABLE name`: `None` when unset.
    ///
    /// # Errors
    /// The session's errors.
    pub async fn get_variable(&mut self, name: &str) -> Result<Option<AgiText>, AgiError> {
        let reply = self.send(&Command::get_variable(name)?).await?;
        Ok(command::variable(reply)?)
    }

    /// `GET FULL VARIABLE expression`.
    ///
    /// # Errors
    /// The session's errors.
    pub async fn get_full_variable(
        &mut self,
        expression: &str,
    ) -> Result<Option<AgiText>, AgiError> {
        let reply = self
            .send(&Command::get_full_variable(expression, None)?)
            .await?;
        Ok(command::variable(reply)?)
    }

    /// `STREAM FILE file escape_digits`: which digit stopped it and where.
    ///
    /// # Errors
    /// The session's errors; a hangup shows as `Playback { failed: true, .. }`.
    pub async fn stream_file(
        &mut self,
        file: &str,
        escape_digits: &str,
    ) -> Result<Playback, AgiError> {
        let reply = self
            .send(&Command::stream_file(file, escape_digits, None)?)
            .await?;
        Ok(command::playback(reply)?)
    }

    /// `WAIT FOR DIGIT timeout_ms`: the key, or `None` on timeout.
    ///
    /// # Errors
    /// The session's errors; `Result(Failed)` on hangup.
    pub async fn wait_for_digit(&mut self, timeout_ms: i64) -> Result<Option<char>, AgiError> {
        let reply = self.send(&Command::wait_for_digit(timeout_ms)).await?;
        Ok(command::digit(reply)?)
    }

    /// `GET DATA file timeout_ms max_digits`.
    ///
    /// # Errors
    /// The session's errors.
    pub async fn get_data(
        &mut self,
        file: &str,
        timeout_ms: u32,
        max_digits: u32,
    ) -> Result<DataInput, AgiError> {
        let reply = self
            .send(&Command::get_data(
                file,
                Some(timeout_ms),
                Some(max_digits),
            )?)
            .await?;
        Ok(command::data_input(reply)?)
    }

    /// `GOSUB context extension priority [arguments]`, waiting for the subroutine.
    ///
    /// # Errors
    /// The session's errors; `Result(Failed)` when the label does not exist.
    pub async fn gosub(
        &mut self,
        context: &str,
        extension: &str,
        priority: &str,
        arguments: Option<&str>,
    ) -> Result<Outcome, AgiError> {
        let reply = self
            .send(&Command::gosub(context, extension, priority, arguments)?)
            .await?;
        Ok(command::done(reply)?)
    }

    /// `VERBOSE message level`.
    ///
    /// # Errors
    /// The session's errors.
    pub async fn verbose(&mut self, message: &str, level: u8) -> Result<(), AgiError> {
        let reply = self.send(&Command::verbose(message, level)?).await?;
        command::done(reply)?;
        Ok(())
    }
}

//! One logged-in session, run by the connection task: writes the handles' actions,
//! routes each answer to its waiting caller by `ActionID` (a list's items to its
//! collector), publishes events, keeps the connection alive with `Ping`, and sends
//! `Logoff` on shutdown.
//!
//! Owns the never-re-send rule: when the session ends, every action written but not
//! answered fails as [`AmiError::OutcomeUnknown`]. It never reconnects: it returns why
//! it ended, and the task decides.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::list::ListCollector;
use super::login::Conn;
use super::{AmiError, ConnectionError, Reply, ReplyKind, Task};
use crate::ami::action::Action;
use crate::ami::codec::Frame;
use crate::ami::events::AmiEvent;
use crate::ami::message::{Message, MessageKind};

/// An action written and waiting for its answer.
struct Pending {
    answer: Answer,
    reply: oneshot::Sender<Result<Reply, AmiError>>,
}

/// What a written action is waiting for.
enum Answer {
    Single,
    List(ListCollector),
}

impl Task {
    /// Runs a logged-in session until it ends; returns why.
    pub(super) async fn session(&mut self, mut conn: Conn) -> ConnectionError {
        let mut pending: HashMap<String, Pending> = HashMap::new();
        let error = self.session_loop(&mut conn, &mut pending).await;
        if error == ConnectionError::Shutdown {
            self.logoff(&mut conn).await;
        }
        for (_, p) in pending.drain() {
            let _ = p.reply.send(Err(AmiError::OutcomeUnknown));
        }
        error
    }

    async fn session_loop(
        &mut self,
        conn: &mut Conn,
        pending: &mut HashMap<String, Pending>,
    ) -> ConnectionError {
        let timing = self.settings.timing;
        let write_limit = timing.connect_timeout;
        let ping_interval = timing.ping_interval;
        let ping_deadline = timing.ping_deadline;
        let max_items = self.settings.limits.max_list_items;
        let mut ticker = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The Ping in flight: its ActionID and when its answer is due.
        let mut ping: Option<(String, Instant)> = None;
        loop {
            let due = ping.as_ref().map(|(_, due)| *due);
            tokio::select! {
                () = self.shutdown.cancelled() => return ConnectionError::Shutdown,
                frame = conn.next() => match frame {
                    None => return ConnectionError::Closed,
                    Some(Err(e)) => return ConnectionError::Io(e.to_string()),
                    Some(Ok(frame)) if ping.is_some() && !matches!(frame, Frame::Banner(_)) => {
                        // The peer is talking: its Pong may be queued behind a burst of
                        // events we have not read yet. Only silence means it is dead.
                        if let Some((_, due)) = ping.as_mut() {
                            *due = Instant::now() + ping_deadline;
                        }
                        self.on_frame(frame, &mut ping, pending, max_items);
                    }
                    Some(Ok(frame)) => self.on_frame(frame, &mut ping, pending, max_items),
                },
                r = self.rx.recv(), if self.rx_open => match r {
                    None => self.rx_open = false,
                    Some(r) => {
                        if r.reply.is_closed() {
                            continue;
                        }
                        let id = self.shared.action_id();
                        match tokio::time::timeout(write_limit, conn.send((id.as_str(), &r.action))).await {
                            Ok(Ok(())) => {
                                let answer = match r.kind {
                                    ReplyKind::Single => Answer::Single,
                                    ReplyKind::List => Answer::List(ListCollector::default()),
                                };
                                pending.insert(id, Pending { answer, reply: r.reply });
                            }
                            Ok(Err(e)) => {
                                let _ = r.reply.send(Err(AmiError::OutcomeUnknown));
                                return ConnectionError::Io(e.to_string());
                            }
                            Err(_) => {
                                let _ = r.reply.send(Err(AmiError::OutcomeUnknown));
                                return ConnectionError::Timeout("writing an action");
                            }
                        }
                    }
                },
                _ = ticker.tick() => {
                    // Callers that gave up (timed out) no longer need their entry.
                    pending.retain(|_, p| !p.reply.is_closed());
                    if ping.is_none() {
                        let id = self.shared.action_id();
                        let Ok(action) = Action::ping() else { continue };
                        match tokio::time::timeout(write_limit, conn.send((id.as_str(), &action))).await {
                            Ok(Ok(())) => ping = Some((id, Instant::now() + ping_deadline)),
                            Ok(Err(e)) => return ConnectionError::Io(e.to_string()),
                            Err(_) => return ConnectionError::PingDeadline(ping_deadline),
                        }
                    }
                },
                () = sleep_until_opt(due) => return ConnectionError::PingDeadline(ping_deadline),
            }
        }
    }

    fn on_frame(
        &self,
        frame: Frame,
        ping: &mut Option<(String, Instant)>,
        pending: &mut HashMap<String, Pending>,
        max_items: usize,
    ) {
        match frame {
            Frame::Message(m) => {
                let is_pong = m.kind() == MessageKind::Response
                    && ping.as_ref().is_some_and(|(id, _)| {
                        m.action_id().is_some_and(|a| a.as_bytes() == id.as_bytes())
                    });
                if is_pong {
                    *ping = None;
                } else {
                    self.dispatch(m, pending, max_items);
                }
            }
            Frame::Skipped(s) => self.shared.skipped(&s),
            Frame::Banner(_) => {}
        }
    }

    fn dispatch(&self, m: Message, pending: &mut HashMap<String, Pending>, max_items: usize) {
        // With no action waiting (a busy PBX's usual state), an event is published
        // without looking for its `ActionID` (a scan of all its headers).
        if pending.is_empty() && m.kind() == MessageKind::Event {
            self.shared.publish(&AmiEvent::Message(Arc::new(m)));
            return;
        }
        let key = m.action_id().and_then(|a| a.as_str()).map(str::to_string);
        let entry = key
            .as_ref()
            .and_then(|k| pending.get_mut(k).map(|p| (k, p)));
        let Some((key, p)) = entry else {
            if m.kind() != MessageKind::Response {
                self.shared.publish(&AmiEvent::Message(Arc::new(m)));
            } else {
                tracing::debug!(pbx = %self.shared.name, action_id = ?m.action_id(), "AMI response nobody waits for");
            }
            return;
        };
        let key = key.clone();
        match (&mut p.answer, m.kind()) {
            (Answer::Single, MessageKind::Response) => {
                if let Some(p) = pending.remove(&key) {
                    let _ = p.reply.send(Ok(Reply::Single(m)));
                }
            }
            (Answer::Single, _) => self.shared.publish(&AmiEvent::Message(Arc::new(m))),
            (Answer::List(list), MessageKind::Response) => {
                if list.response(m) {
                    if let Some(Pending {
                        answer: Answer::List(list),
                        reply,
                    }) = pending.remove(&key)
                    {
                        let _ = reply.send(Ok(Reply::List(list.finish())));
                    }
                }
            }
            (Answer::List(list), _) => {
                if let Some(outcome) = list.event(m, max_items) {
                    if let Some(p) = pending.remove(&key) {
                        let _ = p.reply.send(outcome.map(Reply::List));
                    }
                }
            }
        }
    }

    async fn logoff(&self, conn: &mut Conn) {
        let limit = self
            .settings
            .timing
            .connect_timeout
            .min(std::time::Duration::from_secs(1));
        let Ok(action) = Action::logoff() else { return };
        let id = self.shared.action_id();
        let goodbye = async {
            conn.send((id.as_str(), &action)).await.ok()?;
            while let Some(Ok(frame)) = conn.next().await {
                if let Frame::Message(m) = frame {
                    if m.kind() == MessageKind::Response
                        && m.action_id().is_some_and(|a| a.as_bytes() == id.as_bytes())
                    {
                        return Some(());
                    }
                }
            }
            None
        };
        let _ = tokio::time::timeout(limit, goodbye).await;
        let _ = conn.close().await;
    }
}

async fn sleep_until_opt(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

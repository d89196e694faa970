//! The outbox's own records: a notification as the worker attempts it ([`Pending`]) and
//! as the routes show it ([`Notification`]), one attempt's [`Outcome`], and the
//! [`Step`] an attempt leads to. Plain values of the outbox, never a consultation's
//! domain types: the consultation code hands over an id, a URL, a status word and a
//! time, and that is all a webhook carries.

use chrono::{DateTime, Utc};

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Waiting for its turn in its consultation's order, or for its next attempt.
    Pending,
    /// A 2xx answered it.
    Delivered,
    /// No 2xx within the give-up window; its consultation's next notification went on.
    GaveUp,
}

impl DeliveryState {
    /// The stored word, which the routes answer too.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GaveUp => "gave_up",
        }
    }

    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::GaveUp,
    ];
}

/// A notification the worker has claimed for one attempt: what the GET and its headers
/// need, and what the retry decision needs (its age and its attempts so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: i64,
    /// The same on every attempt and every re-send of one status change.
    pub event_id: String,
    pub consultation_id: i64,
    pub url: String,
    /// The status word the consultation changed to (`CallingDoctor`).
    pub status: String,
    /// When the consultation's status changed.
    pub changed_at: DateTime<Utc>,
    /// When this notification was written: its give-up window starts here.
    pub created_at: DateTime<Utc>,
    /// Attempts made before this one (all failed: it is still pending).
    pub attempts: u32,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this HTTP status (2xx delivers; anything else fails).
    Answered(u16),
    /// There was no answer: why (refused by the network guard, DNS, connect, timeout).
    Failed(String),
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Answered(200..=299))
    }

    /// The text kept as a notification's `last_error`: `HTTP 500`, or why it failed.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Outcome::Answered(200..=299) => None,
            Outcome::Answered(status) => Some(format!("HTTP {status}")),
            Outcome::Failed(why) => Some(why.clone()),
        }
    }
}

/// One attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When it started.
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// From its start to its outcome, in milliseconds.
    pub elapsed_ms: u64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Done; the consultation's next notification becomes due.
    Delivered,
    /// Attempt again at this time; the consultation's later notifications wait.
    RetryAt(DateTime<Utc>),
    /// The give-up window is over: recorded as given up, and the next one goes on.
    GiveUp,
}

/// A notification as the routes show it, with every attempt in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub event_id: String,
    pub consultation_id: i64,
    pub url: String,
    pub status: String,
    pub changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// When the next attempt is due: set only while it is its consultation's oldest
    /// pending notification (the others wait for it).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The last failed attempt's outcome (`HTTP 500`, `cannot connect to …`).
    pub last_error: Option<String>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// The notification this one re-sends (same event id), if it is a re-send.
    pub resend_of: Option<i64>,
    pub attempts: Vec<Attempt>,
}

//! The clinic CRM's side of calls (seed 003, SPEC §6 and §8): clients and contracts with
//! ordered phones, requests (заявки) made from text leads and calls, the patient's
//! arrival, call detail records, and number lookup by dial identifier.
//!
//! This module holds the domain types, their validation and the CRM's decisions, each a
//! pure function from the facts the store loaded to a plan the store writes (`requests`,
//! `cdr`, `ident`): no SQL, no I/O, no wire shapes. Persistence is in `store::crm`, the
//! HTTP surface (with its own view types) in `http::events`, the dialplan's in `routes`.

pub mod cdr;
pub mod ident;
pub mod import;
pub mod phone;
pub mod requests;

use chrono::{DateTime, Utc};

pub use cdr::{CallDetailRecord, CallType, CdrSource, NewCallDetailRecord, RecordingPath};
pub use ident::{DialIdent, IdentError};
pub use phone::{PhoneError, PhoneNumber};

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSource {
    /// A text lead in the CRM; `sourceId` is its id there.
    Text,
    /// A call; `sourceId` is medcall's call id.
    Call,
}

impl RequestSource {
    /// The word stored and served: `text` or `call`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestSource::Text => "text",
            RequestSource::Call => "call",
        }
    }
}

/// Whether a request is still being worked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    Open,
    Closed,
}

impl RequestStatus {
    /// The word stored and served: `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Closed => "closed",
        }
    }
}

/// A request (заявка).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: i64,
    pub source: RequestSource,
    pub source_id: i64,
    pub client_id: Option<i64>,
    pub status: RequestStatus,
    pub created: DateTime<Utc>,
    /// When the patient arrived (`/api/events/coming`); the first mark is kept.
    pub arrived_at: Option<DateTime<Utc>>,
}

/// A client with their phones in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: i64,
    pub full_name: Option<String>,
    /// Normalised `7XXXXXXXXXX`, in the CRM's order.
    pub phones: Vec<String>,
}

/// What `call_asterisk` did with an incoming call.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingCall {
    pub call_id: i64,
    /// The caller's number as the PBX gave it.
    pub caller: Option<String>,
    pub client: Option<Client>,
    pub client_created: bool,
    pub request: Option<Request>,
    pub request_created: bool,
    /// The incoming-call event recorded for the CRM.
    pub event_id: i64,
}

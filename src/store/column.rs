//! How typed values sit in columns: the domain's enums as their stored words, JSON
//! columns, and the error for a stored value medcall cannot read.
//!
//! A stored value that does not decode is an error naming the column and the value
//! ([`super::StoreError::BadValue`]), never a default: a word nobody wrote (`closed ` with
//! a space, `fax`) would otherwise turn into some other state silently. Nothing here
//! decides anything; it only translates between a column and a type.

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::de::DeserializeOwned;

use crate::booking::Guid;
use crate::booking::rules::TicketState;
use crate::conference::engine::{
    CallPhase, CallResult, Direction, EndReason, LegState, RecordingState, Role,
};
use crate::crm::{CallType, CdrSource, PhoneNumber, RequestSource, RequestStatus};
use crate::directory::{DoctorGuid, DoctorId, Endpoint, InboundNumber, TeamId, ThreadId, UserId};

/// A stored value that does not decode as its column's type.
#[derive(Debug, thiserror::Error)]
#[error("column `{column}` holds {value:?}, which is not {expected}")]
pub struct BadValue {
    /// Filled in by [`read`] (empty when read without it).
    pub column: String,
    pub value: String,
    pub expected: &'static str,
}

/// The conversion error for `text` that is not `expected`.
pub(super) fn unreadable(text: &str, expected: &'static str) -> FromSqlError {
    FromSqlError::Other(Box::new(BadValue {
        column: String::new(),
        value: text.chars().take(200).collect(),
        expected,
    }))
}

/// `row.get(idx)`, with a value that does not decode reported by its column's name.
pub(super) fn read<T: FromSql>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    row.get(idx).map_err(|e| match e {
        rusqlite::Error::FromSqlConversionFailure(i, ty, cause) => {
            match cause.downcast::<BadValue>() {
                Ok(mut bad) => {
                    bad.column = row.as_ref().column_name(i).unwrap_or("?").to_string();
                    rusqlite::Error::FromSqlConversionFailure(i, ty, bad)
                }
                Err(cause) => rusqlite::Error::FromSqlConversionFailure(i, ty, cause),
            }
        }
        other => other,
    })
}

/// A JSON column read into `T`; text that does not parse as `T` is an error.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Json<T>(pub T);

impl<T: DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Json<T>> {
        let text = value.as_str()?;
        serde_json::from_str(text)
            .map(Json)
            .map_err(|_| unreadable(text, "JSON of the expected shape"))
    }
}

/// A domain enum stored as one of its words.
trait StoredWord: Sized + Copy + 'static {
    const ALL: &'static [Self];
    /// What the column may hold, for the error message.
    const EXPECTED: &'static str;
    fn word(self) -> &'static str;
}

fn word_from_sql<T: StoredWord>(value: ValueRef<'_>) -> FromSqlResult<T> {
    let text = value.as_str()?;
    T::ALL
        .iter()
        .copied()
        .find(|v| v.word() == text)
        .ok_or_else(|| unreadable(text, T::EXPECTED))
}

macro_rules! stored_word {
    ($ty:ty, [$($variant:expr),+], $expected:literal) => {
        impl StoredWord for $ty {
            const ALL: &'static [Self] = &[$($variant),+];
            const EXPECTED: &'static str = $expected;
            fn word(self) -> &'static str {
                self.as_str()
            }
        }
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                word_from_sql(value)
            }
        }
    };
}

stored_word!(
    RequestSource,
    [RequestSource::Text, RequestSource::Call],
    "text or call"
);
stored_word!(
    RequestStatus,
    [RequestStatus::Open, RequestStatus::Closed],
    "open or closed"
);
stored_word!(
    TicketState,
    [
        TicketState::Held,
        TicketState::Appointment,
        TicketState::Cancelled,
        TicketState::Expired
    ],
    "held, appointment, cancelled or expired"
);
stored_word!(CdrSource, [CdrSource::Api, CdrSource::Ami], "api or ami");
stored_word!(
    CallType,
    [CallType::Incoming, CallType::Outgoing],
    "incoming or outgoing"
);

/// A phone column holds the normalised form (`7XXXXXXXXXX`) and nothing else.
impl FromSql for PhoneNumber {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<PhoneNumber> {
        let text = value.as_str()?;
        PhoneNumber::parse(text)
            .ok()
            .filter(|p| p.as_str() == text)
            .ok_or_else(|| unreadable(text, "a normalised phone number (7XXXXXXXXXX)"))
    }
}

stored_word!(
    Direction,
    [Direction::Outbound, Direction::Inbound],
    "outbound or inbound"
);
stored_word!(
    Role,
    [Role::Participant, Role::Caller, Role::Player, Role::Stream],
    "participant, caller, player or stream"
);
stored_word!(
    LegState,
    [
        LegState::Dialing,
        LegState::Ringing,
        LegState::Joined,
        LegState::Paused,
        LegState::Left,
        LegState::Busy,
        LegState::NoAnswer,
        LegState::Congestion,
        LegState::Failed
    ],
    "a leg state (dialing, ringing, joined, paused, left, busy, no-answer, congestion, failed)"
);
stored_word!(
    EndReason,
    [
        EndReason::Hangup,
        EndReason::Excluded,
        EndReason::Ended,
        EndReason::Cancelled,
        EndReason::Refused,
        EndReason::Vanished,
        EndReason::PbxRestart,
        EndReason::Stopped,
        EndReason::Replaced
    ],
    "a leg end reason"
);
stored_word!(
    RecordingState,
    [
        RecordingState::Starting,
        RecordingState::Recording,
        RecordingState::Stopped,
        RecordingState::Failed
    ],
    "starting, recording, stopped or failed"
);
stored_word!(
    CallResult,
    [
        CallResult::Answered,
        CallResult::Busy,
        CallResult::NoAnswer,
        CallResult::Cancelled,
        CallResult::Failed
    ],
    "answered, busy, no-answer, cancelled or failed"
);
stored_word!(
    CallPhase,
    [CallPhase::Active, CallPhase::Ending, CallPhase::Ended],
    "active, ending or ended"
);

/// A directory value stored as its text: written as the type spells it, read back only
/// when the text parses *and* is already in that spelling (an id in uppercase, which the
/// directory never writes, is an unreadable value, not silently another spelling).
macro_rules! stored_text {
    ($ty:ty, $expected:literal) => {
        impl ToSql for $ty {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $ty {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                text.parse::<$ty>()
                    .ok()
                    .filter(|v| v.as_str() == text)
                    .ok_or_else(|| unreadable(text, $expected))
            }
        }
    };
}

stored_text!(TeamId, "a team id (24 lowercase hex digits)");
stored_text!(UserId, "a user id (24 lowercase hex digits)");
stored_text!(ThreadId, "a thread id (24 lowercase hex digits)");
stored_text!(DoctorGuid, "a doctor's GUID in lowercase");
stored_text!(Guid, "a GUID in lowercase");
stored_text!(Endpoint, "a dial string (TECH/resource)");
stored_text!(
    InboundNumber,
    "a dialled number (digits, optional leading +)"
);

impl ToSql for DoctorId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.get()))
    }
}

/// A doctor id column holds a positive integer.
impl FromSql for DoctorId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<DoctorId> {
        let id = value.as_i64()?;
        DoctorId::new(id).map_err(|_| unreadable(&id.to_string(), "a positive doctor id"))
    }
}

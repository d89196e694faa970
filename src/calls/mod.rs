//! Calls as the PBX sees them (SPEC §9): the tracker state machine, its records, and
//! the ingest task that feeds it AMI events and writes its changes to the store in
//! batches.

pub mod ingest;
pub mod model;
#[cfg(test)]
pub(crate) mod test_event;
pub mod tracker;

pub use model::{
    CallChange, CallRecord, CdrRecord, ConferenceRecord, EventRecord, GapRecord, LegRecord,
    LegSnapshot, TimelineChunk,
};
pub use tracker::{CallTracker, EventFields};

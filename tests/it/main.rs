//! medcall's integration tests: one binary, driving the real daemon against the real
//! Asterisk rig (`scripts/asterisk-rig up`). Fakes appear only for faults a real peer
//! cannot produce on demand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod agi;
mod agi_corpus;
mod ami_client;
mod ami_corpus;
mod ami_faults;
mod audiosocket_corpus;
mod booking;
mod call_media;
mod calls;
mod conference_audio;
mod consultation;
mod conversation;
mod crm_dialplan;
mod directory;
mod events;
mod foundation;
mod media_corpus;
mod media_fetch;
mod openapi;
mod recording_file;
mod replay;
mod schedule_import;
mod stream;
mod support;

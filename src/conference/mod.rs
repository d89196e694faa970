//! Conversation calls (seed 002): one ConfBridge per thread, steered over HTTP.
//!
//! `engine` is the sans-I/O state machine (commands and AMI observations in, PBX
//! requests, records and answers out); `observe` reads AMI events as its observations
//! and writes its requests as AMI actions; `control` is the task per PBX that feeds it
//! and applies its effects.

pub mod control;
pub mod engine;
pub mod observe;

pub use control::{ConferenceHandle, ControlError, ControlSettings};

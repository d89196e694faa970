//! Conversation calls (seed 002): one ConfBridge per thread, steered over HTTP.
//!
//! `engine` is the sans-I/O state machine (commands and AMI observations in, PBX
//! requests, records and answers out); `control` is the task per PBX that feeds it and
//! applies its effects.

pub mod engine;

//! Sound in a thread's call (seed 002, part 2): what medcall does with audio itself.
//!
//! - fetching a `fileUrl` safely (network guard, size and time limits), sniffing it,
//!   and decoding it to 16 kHz signed linear in a limited child process, cached by
//!   content hash, for the conference's player leg;
//! - the AudioSocket server and the fan-out of one conference's mix to many HTTP and
//!   WebSocket listeners;
//! - recordings: when Asterisk's WAV is final, and serving finished files.
//!
//! The conference engine decides which legs exist; this module never speaks AMI.

pub mod audiosocket;
pub mod child;
pub mod decode;
pub mod fetch;
pub mod library;
pub mod netguard;
pub mod recordings;
pub mod sniff;
pub mod stream;
pub mod wavfile;

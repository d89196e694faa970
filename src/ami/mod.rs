//! The Asterisk Manager Interface: the wire protocol and a client per PBX.
//!
//! Layers, each in its own file: bytes → [`codec`] (frames: banner, whole messages,
//! bounded) → [`parser`] (nom grammar of one frame) → [`message`] (headers, bytes kept;
//! [`reader`] for many lookups in one message)
//! → [`action`] (typed, injection-safe actions) → [`client`] (one task per socket,
//! `ActionID` correlation, lists, reconnect, keepalive) → [`events`] (bounded fan-out of
//! lifecycle and events to consumers).
//!
//! `ami` knows nothing of SQL, HTTP, the clinic domain or the daemon's configuration: it
//! never reads the store, never shapes an API answer, never names a consultation, and
//! takes plain settings ([`ClientSettings`]) that the daemon maps from its own. Other
//! modules subscribe ([`AmiClient::subscribe`]), send actions ([`AmiClient::send`],
//! [`AmiClient::list`], [`AmiClient::command`]) and translate.

pub mod action;
pub mod capture;
pub mod client;
pub mod codec;
pub mod events;
pub mod message;
pub mod parser;
pub mod reader;

pub use action::{Action, ActionError, MuteDirection, Originate, OriginateTarget, PlaybackControl};
pub use capture::CaptureSettings;
pub use client::{
    AmiClient, AmiError, ClientLimits, ClientSettings, ClientState, ClientStatus, ConnectionError,
    EventCounters, ListReply, LoginMethod, Timing,
};
pub use codec::{AmiCodec, CodecError, Frame, Limits, SkipReason, Skipped};
pub use events::{AmiEvent, EventStream};
pub use message::{Field, Header, Message, MessageKind, Value};
pub use reader::FieldReader;

//! medcall: a daemon beside Asterisk 22 that keeps the PBX's calls and the clinic CRM's
//! clients, contracts, requests and call records in SQLite, answers the dialplan over
//! FastAGI, and exposes them over HTTP. See ARCHITECTURE.md for the map.

pub mod agi;
pub mod ami;
pub mod auth;
pub mod backoff;
pub mod booking;
pub mod calls;
pub mod conference;
pub mod config;
pub mod consultation;
pub mod crm;
pub mod daemon;
pub mod directory;
pub mod http;
pub mod import;
pub mod json;
pub mod media;
pub mod metrics;
pub mod outbox;
pub mod pbx;
pub mod replay;
pub mod routes;
pub mod scheduler;
pub mod secret;
pub mod signing;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod timefmt;

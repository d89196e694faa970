//! Booking a doctor's timetable cell (seed 004; SPEC §7, §8). Pure: no store, no HTTP,
//! no clock (every decision takes `now` as a value).
//!
//! - [`model`]: the identifiers and small values every part names ([`Guid`],
//!   [`AgeCategory`], [`AgeMask`], [`UtcOffset`]).
//! - `schedule`: the schedule document (LPUs, cells, patients), validated whole.
//! - `rules`: the SPEC §7 check order as one function returning the first failing code;
//!   capacity and holds given `now`; confirming and cancelling.
//! - `ticket`: a ticket as answered (the store reads it, `http::booking` renders it).

pub mod model;
pub mod rules;
pub mod schedule;
pub mod ticket;

pub use model::{AgeCategory, AgeMask, Guid, UtcOffset};

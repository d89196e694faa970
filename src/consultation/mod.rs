//! Telemedicine consultations (seeds 000 and 001): an internet call (`voip`) or a
//! callback between a doctor and a patient, scheduled, limited in time, notified.
//!
//! `model` is the vocabulary; `request` turns a client's fields into a
//! [`model::NewConsultation`] (pure). The pure lifecycle, the schedule of jobs and the
//! task that applies their effects on the PBX live beside them.

pub mod lifecycle;
pub mod model;
pub mod request;
pub mod run;

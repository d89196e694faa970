//! The clinic's directory (SPEC §8): teams, users, doctors and inbound routes, the
//! identifiers every other part names them by, and the import document validated whole.
//! Pure: no store, no HTTP, no AMI (the store loads and writes what `document` decides).

pub mod doctor;
pub mod document;
pub mod endpoint;
pub mod ids;
pub mod model;
pub mod number;

pub use doctor::{DoctorGuid, DoctorId, DoctorIdError};
pub use document::{DirectoryCounts, DirectoryDocument, UpsertCounts};
pub use endpoint::{Endpoint, EndpointError};
pub use ids::{IdError, TeamId, ThreadId, UserId};
pub use model::{DirectoryDoctor, DirectoryTeam, DirectoryUser, InboundRoute};
pub use number::{InboundNumber, NumberError};

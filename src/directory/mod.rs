//! The clinic's directory (SPEC §8): teams, users and doctors, and the identifiers
//! every other part names them by. Pure: no store, no HTTP, no AMI.

pub mod endpoint;
pub mod ids;

pub use endpoint::{Endpoint, EndpointError};
pub use ids::{IdError, TeamId, ThreadId, UserId};

//! The directory's entries as the rest of medcall reads them: plain values, every field
//! already validated (the document is the only way in).

use super::{DoctorGuid, DoctorId, Endpoint, InboundNumber, TeamId, ThreadId, UserId};

/// A team of the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTeam {
    pub team: TeamId,
    pub name: String,
}

/// A user of the CRM: the team they belong to, and how they are dialled (`None`: through
/// the configured dial template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub user: UserId,
    pub team: TeamId,
    pub name: String,
    pub endpoint: Option<Endpoint>,
}

/// A doctor of the consultation and booking APIs. `role` and `speciality` may be empty,
/// as seed 004 answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryDoctor {
    pub id: DoctorId,
    pub guid: DoctorGuid,
    pub full_name: String,
    pub role: String,
    pub speciality: String,
    pub endpoint: Option<Endpoint>,
}

/// A dialled number and the team's thread whose call an inbound caller joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    pub number: InboundNumber,
    pub team: TeamId,
    pub thread: ThreadId,
}

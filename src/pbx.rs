//! The PBXs the daemon talks to, as one registry: each PBX's [`PbxName`], where it is,
//! its AMI handle and — read from that handle, never copied — its live status. HTTP
//! (`/health`, `/api/pbx`), `/metrics` and, later, call control ask it "which PBX, is it
//! up, give me its AMI handle".
//!
//! Owns the PBX's identity: a [`PbxName`] is valid by construction (the configuration
//! is checked through it). It never keeps a status of its own and never shapes an API
//! answer: the AMI client is the one source of a PBX's state, and `http` builds its
//! views from it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ami::{AmiClient, ClientStatus};

/// A configured PBX's short name: letters, digits, `-` and `_`, not empty. It appears in
/// `/health`, `/api/pbx`, metrics labels, call records and capture file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct PbxName(String);

/// Why a text is not a [`PbxName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be letters, digits, '-' or '_'")]
pub struct InvalidPbxName;

impl PbxName {
    /// # Errors
    /// [`InvalidPbxName`] for an empty name or one with another character.
    pub fn new(name: impl Into<String>) -> Result<PbxName, InvalidPbxName> {
        let name = name.into();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(PbxName(name))
        } else {
            Err(InvalidPbxName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PbxName {
    type Error = InvalidPbxName;
    fn try_from(name: String) -> Result<PbxName, InvalidPbxName> {
        PbxName::new(name)
    }
}

impl fmt::Display for PbxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for PbxName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PartialEq<&str> for PbxName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// One PBX: its name, where it is, and its AMI connection.
#[derive(Debug, Clone)]
pub struct Pbx {
    name: PbxName,
    host: String,
    port: u16,
    client: AmiClient,
}

impl Pbx {
    pub fn new(name: PbxName, host: String, port: u16, client: AmiClient) -> Pbx {
        Pbx {
            name,
            host,
            port,
            client,
        }
    }

    pub fn name(&self) -> &PbxName {
        &self.name
    }

    /// The AMI host as configured.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The handle to send actions and subscribe to events through.
    pub fn client(&self) -> &AmiClient {
        &self.client
    }

    /// The connection's status now, read from the client.
    pub fn status(&self) -> ClientStatus {
        self.client.status()
    }
}

/// Two configured PBXs share a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("two PBXs are named {0}")]
pub struct DuplicatePbx(pub PbxName);

/// Every PBX, by name, in configuration order. Cheap to clone; clones share the entries.
#[derive(Debug, Clone, Default)]
pub struct PbxRegistry {
    inner: Arc<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// In configuration order: `/health` and `/api/pbx` list them so.
    pbxs: Vec<Pbx>,
    /// Name → position in `pbxs`.
    by_name: HashMap<PbxName, usize>,
}

impl PbxRegistry {
    /// # Errors
    /// [`DuplicatePbx`] when two entries share a name.
    pub fn new(pbxs: Vec<Pbx>) -> Result<PbxRegistry, DuplicatePbx> {
        let mut by_name = HashMap::with_capacity(pbxs.len());
        for (i, pbx) in pbxs.iter().enumerate() {
            if by_name.insert(pbx.name.clone(), i).is_some() {
                return Err(DuplicatePbx(pbx.name.clone()));
            }
        }
        Ok(PbxRegistry {
            inner: Arc::new(Entries { pbxs, by_name }),
        })
    }

    /// The PBX named `name`, if one is configured.
    pub fn get(&self, name: &PbxName) -> Option<&Pbx> {
        let i = *self.inner.by_name.get(name)?;
        self.inner.pbxs.get(i)
    }

    /// Every PBX, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Pbx> {
        self.inner.pbxs.iter()
    }

    pub fn len(&self) -> usize {
        self.inner.pbxs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.pbxs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::ClientState;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    #[test]
    fn a_pbx_name_is_letters_digits_dashes_and_underscores_and_not_empty() {
        for good in ["main", "branch-2", "PBX_b", "7"] {
            assert_eq!(PbxName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "a b", "main.1", "ünï", "a/b", "a\n"] {
            assert_eq!(PbxName::new(bad), Err(InvalidPbxName), "{bad:?}");
        }
    }

    #[test]
    fn a_pbx_name_reads_and_writes_as_a_plain_string_and_refuses_a_bad_one() {
        let name: PbxName = serde_json::from_str("\"main\"").unwrap();
        assert_eq!(name, "main");
        assert_ne!(name, "mains");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"main\"");
        assert_eq!(name.to_string(), "main");
        let e = serde_json::from_str::<PbxName>("\"no way\"").unwrap_err();
        assert!(e.to_string().contains("letters, digits"), "{e}");
    }

    fn pbx(name: &str, tasks: &TaskTracker, shutdown: &CancellationToken) -> Pbx {
        use crate::ami::client::settings::{CLOSED_PORT, for_tests};
        let settings = for_tests(name, CLOSED_PORT);
        let client = AmiClient::spawn(settings, tasks, shutdown.clone());
        Pbx::new(
            PbxName::new(name).unwrap(),
            format!("{name}.host"),
            5038,
            client,
        )
    }

    #[tokio::test]
    async fn the_registry_finds_each_pbx_by_name_and_lists_them_in_configuration_order() {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let registry =
            PbxRegistry::new(["b", "a", "c"].map(|n| pbx(n, &tasks, &shutdown)).into()).unwrap();
        let names: Vec<&str> = registry.iter().map(|p| p.name().as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!((registry.len(), registry.is_empty()), (3, false));
        for name in ["a", "b", "c"] {
            let found = registry.get(&PbxName::new(name).unwrap()).unwrap();
            assert_eq!(found.name(), &name);
            assert_eq!(found.client().name(), name, "its own AMI handle");
            assert_eq!(found.host(), format!("{name}.host"));
            assert_eq!(found.port(), 5038);
        }
        assert!(registry.get(&PbxName::new("d").unwrap()).is_none());
        assert!(PbxRegistry::default().is_empty());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_pbx_status_is_its_clients_live_status() {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let registry = PbxRegistry::new(vec![pbx("main", &tasks, &shutdown)]).unwrap();
        let main = registry.get(&PbxName::new("main").unwrap()).unwrap();
        // Nobody listens on the port: the client's attempts show through the registry.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while main.status().last_error.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                main.status()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let status = main.status();
        assert_ne!(status.state, ClientState::Connected);
        assert!(status.last_error.unwrap().contains("cannot connect"));
        // A minute's backoff: the one attempt, seen alike through either path.
        assert_eq!(status.connect_attempts, 1);
        assert_eq!(main.client().status().connect_attempts, 1);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn two_pbxs_with_one_name_are_refused() {
        let (tasks, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let e = PbxRegistry::new(vec![
            pbx("main", &tasks, &shutdown),
            pbx("other", &tasks, &shutdown),
            pbx("main", &tasks, &shutdown),
        ])
        .unwrap_err();
        assert_eq!(e, DuplicatePbx(PbxName::new("main").unwrap()));
        shutdown.cancel();
    }
}

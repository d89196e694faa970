//! The application's FastAGI routes: what the dialplan can ask medcall to do.
//!
//! Owns the translation between AGI sessions and the daemon's knowledge: the PBXs
//! (`diagnostics`), the consultations (`consultation-join`), the calls (`inbound` gives a call its id, `session_log` ties each
//! session to its leg's timeline) and the clinic's CRM (`number-from-id`). It must never
//! parse or write AGI bytes itself: it talks through [`crate::agi::Session`].

pub mod consultation_join;
pub mod diagnostics;
pub mod inbound;
pub mod number_from_id;
pub mod session_log;

use std::net::IpAddr;
use std::sync::Arc;

use crate::agi::Router;
use crate::agi::router::PatternError;
use crate::conference::ConferenceHandle;
use crate::config::PbxConfig;
use crate::consultation::run::ConsultationHandle;
use crate::pbx::PbxName;
use crate::store::Store;

/// The configured PBXs with the addresses their hosts resolved to at startup.
#[derive(Debug, Clone, Default)]
pub struct PbxAddresses {
    entries: Vec<(PbxName, Vec<IpAddr>)>,
}

impl PbxAddresses {
    /// Resolves every `[[pbx]] host`; a host that does not resolve keeps no address
    /// (logged), so only loopback can stand for it.
    pub async fn resolve(pbxs: &[PbxConfig]) -> PbxAddresses {
        let mut entries = Vec::with_capacity(pbxs.len());
        for pbx in pbxs {
            let addrs = match tokio::net::lookup_host((pbx.host.as_str(), pbx.port)).await {
                Ok(found) => found.map(|a| a.ip()).collect(),
                Err(e) => {
                    tracing::warn!(pbx = %pbx.name, host = %pbx.host, error = %e, "cannot resolve PBX host");
                    Vec::new()
                }
            };
            entries.push((pbx.name.clone(), addrs));
        }
        PbxAddresses { entries }
    }

    /// From already known addresses (tests).
    pub fn from_entries(entries: Vec<(PbxName, Vec<IpAddr>)>) -> PbxAddresses {
        PbxAddresses { entries }
    }

    /// Every address of every PBX: the default AGI allow-list besides loopback.
    pub fn all_addresses(&self) -> Vec<IpAddr> {
        self.entries
            .iter()
            .flat_map(|(_, a)| a.iter().copied())
            .collect()
    }

    /// The PBX a connection from `peer` came from: the one whose host resolved to
    /// it; on loopback with exactly one PBX configured, that PBX. `None` when no PBX
    /// is it: where that is written, [`pbx_label`] says so.
    pub fn name_for(&self, peer: IpAddr) -> Option<&PbxName> {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        if let Some((name, _)) = self.entries.iter().find(|(_, a)| a.contains(&peer)) {
            return Some(name);
        }
        match self.entries.as_slice() {
            [(name, _)] if peer.is_loopback() => Some(name),
            _ => None,
        }
    }
}

/// What the routes write for the PBX a session came from: its name, or `unknown` when
/// the peer is no configured PBX (an address no `[[pbx]] host` resolved to, or loopback
/// with several PBXs). The dialplan sees it in `MEDCALL_PBX`; the store gets it in the
/// `pbx` of the call and FastAGI session rows.
pub fn pbx_label(pbx: Option<&PbxName>) -> &str {
    pbx.map_or("unknown", PbxName::as_str)
}

/// Every production route.
///
/// # Errors
/// A route pattern is invalid (a programming error caught at startup).
pub fn router(
    pbxs: Arc<PbxAddresses>,
    store: Store,
    conference: Option<ConferenceHandle>,
    consultations: Option<ConsultationHandle>,
) -> Result<Router, PatternError> {
    Router::new()
        .route(
            "consultation-join",
            consultation_join::ConsultationJoin::new(consultations),
        )?
        .route(
            "diagnostics",
            diagnostics::Diagnostics::new(Arc::clone(&pbxs)),
        )?
        .route(
            "number-from-id",
            number_from_id::NumberFromId::new(store.clone()),
        )?
        .route("inbound", inbound::Inbound::new(store, pbxs, conference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_maps_to_the_pbx_whose_host_it_is_and_loopback_to_the_only_pbx() {
        let name = |n: &str| PbxName::new(n).unwrap();
        let one =
            PbxAddresses::from_entries(vec![(name("main"), vec!["10.0.0.5".parse().unwrap()])]);
        let label =
            |a: &PbxAddresses, peer: &str| pbx_label(a.name_for(peer.parse().unwrap())).to_string();
        assert_eq!(label(&one, "10.0.0.5"), "main");
        assert_eq!(label(&one, "127.0.0.1"), "main");
        assert_eq!(one.name_for("10.0.0.6".parse().unwrap()), None);
        assert_eq!(label(&one, "10.0.0.6"), "unknown");
        let two = PbxAddresses::from_entries(vec![
            (name("a"), vec!["10.0.0.5".parse().unwrap()]),
            (name("b"), vec!["127.0.0.1".parse().unwrap()]),
        ]);
        assert_eq!(label(&two, "127.0.0.1"), "b");
        assert_eq!(two.name_for("127.0.0.2".parse().unwrap()), None);
        assert_eq!(label(&two, "::ffff:10.0.0.5"), "a");
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_allow_list_is_every_address_of_every_pbx_in_order() {
        let pbxs = PbxAddresses::from_entries(vec![
            (
                PbxName::new("a").unwrap(),
                vec![ip("10.0.0.5"), ip("10.0.0.6")],
            ),
            (PbxName::new("b").unwrap(), vec![]),
            (PbxName::new("c").unwrap(), vec![ip("10.0.0.7")]),
        ]);
        assert_eq!(
            pbxs.all_addresses(),
            [ip("10.0.0.5"), ip("10.0.0.6"), ip("10.0.0.7")]
        );
    }

    #[tokio::test]
    async fn each_configured_pbx_host_resolves_to_its_own_addresses() {
        let pbx = |name: &str, host: &str| -> PbxConfig {
            toml::from_str(&format!(
                "name = \"{name}\"\nhost = \"{host}\"\nport = 5038\nusername = \"u\"\nsecret = \"s\""
            ))
            .unwrap()
        };
        let pbxs = PbxAddresses::resolve(&[pbx("a", "10.1.2.3"), pbx("b", "10.1.2.4")]).await;
        assert_eq!(pbxs.all_addresses(), [ip("10.1.2.3"), ip("10.1.2.4")]);
        assert_eq!(
            pbxs.name_for(ip("10.1.2.4")).map(PbxName::as_str),
            Some("b")
        );
        assert_eq!(
            pbxs.name_for(ip("127.0.0.1")),
            None,
            "two PBXs: loopback is neither"
        );
    }
}

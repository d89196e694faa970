//! API-key authentication and scopes (SPEC §3).
//!
//! Keys are known only by their SHA-256: from the config file (`[[api_keys]]`) and from
//! the store (the first-start admin key). A presented key is hashed and looked up; the
//! key itself is never stored, logged or compared in plain text.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{ApiKeyConfig, Scope};
use crate::store::{Store, StoreError, StoredKey};

/// Who made a request, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// Team ids for the `calls` scope; empty means every team.
    pub teams: Vec<String>,
}

impl Principal {
    /// `admin` may do everything; other scopes only what they name.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

/// The keys the daemon accepts, indexed by hash.
#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    by_hash: HashMap<String, Principal>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Lowercase hex SHA-256 of a presented key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl KeyRing {
    pub fn new(configured: &[ApiKeyConfig], stored: &[StoredKey]) -> KeyRing {
        let mut by_hash = HashMap::new();
        for k in configured {
            by_hash.insert(
                k.sha256.clone(),
                Principal {
                    name: k.name.clone(),
                    scopes: k.scopes.clone(),
                    teams: k.teams.clone(),
                },
            );
        }
        for k in stored {
            let scopes = k
                .scopes
                .iter()
                .filter_map(|s| serde_json::from_value(serde_json::Value::String(s.clone())).ok())
                .collect();
            by_hash.entry(k.sha256.clone()).or_insert(Principal {
                name: k.name.clone(),
                scopes,
                teams: k.teams.clone(),
            });
        }
        KeyRing { by_hash }
    }

    /// The principal a presented key belongs to, if any.
    pub fn authenticate(&self, presented: &str) -> Option<&Principal> {
        self.by_hash.get(&hash_key(presented))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A freshly generated key: `mc_` and 64 hex digits of OS randomness.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("mc_{}", hex::encode(bytes))
}

/// Builds the key ring. When no key is configured and none is stored, creates the
/// first-start admin key: stores its hash, writes the key to `data_dir/admin.key`
/// (mode 0600) and returns it so the caller can print it — the only time it is shown.
///
/// # Errors
/// The store or the key file cannot be written.
pub async fn load_key_ring(
    configured: &[ApiKeyConfig],
    store: &Store,
    data_dir: &Path,
) -> Result<(KeyRing, Option<String>), AuthSetupError> {
    let mut stored = store.api_keys().await?;
    let mut created = None;
    if configured.is_empty() && stored.is_empty() {
        let key = generate_key();
        let path = data_dir.join("admin.key");
        write_private_file(&path, &format!("{key}\n"))
            .map_err(|source| AuthSetupError::KeyFile { path, source })?;
        let record = StoredKey {
            name: "admin".into(),
            sha256: hash_key(&key),
            scopes: vec![Scope::Admin.as_str().into()],
            teams: vec![],
        };
        store.insert_api_key(record.clone(), "first-start").await?;
        stored.push(record);
        created = Some(key);
    }
    Ok((KeyRing::new(configured, &stored), created))
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_start_creates_one_admin_key_in_a_private_file_and_never_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("medcall.db")).unwrap();
        let (ring, created) = load_key_ring(&[], &store, dir.path()).await.unwrap();
        let key = created.expect("a key is created on first start");
        let file = dir.path().join("admin.key");
        assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(ring.authenticate(&key).unwrap().allows(Scope::Booking));
        let stored = store.api_keys().await.unwrap();
        assert!(
            !stored.iter().any(|k| k.sha256 == key),
            "only the hash is stored"
        );

        let (ring, created) = load_key_ring(&[], &store, dir.path()).await.unwrap();
        assert!(created.is_none());
        assert!(ring.authenticate(&key).is_some());
        assert!(ring.authenticate("mc_wrong").is_none());
    }

    #[test]
    fn generated_keys_are_mc_and_64_hex_digits_and_never_repeat() {
        let (a, b) = (generate_key(), generate_key());
        for key in [&a, &b] {
            let digits = key.strip_prefix("mc_").unwrap_or_else(|| panic!("{key}"));
            assert_eq!(digits.len(), 64, "{key}");
            assert!(digits.bytes().all(|c| c.is_ascii_hexdigit()), "{key}");
        }
        assert_ne!(a, b);
    }

    #[test]
    fn a_ring_is_empty_only_without_any_key() {
        assert!(KeyRing::default().is_empty());
        assert!(KeyRing::new(&[], &[]).is_empty());
        let stored = StoredKey {
            name: "admin".into(),
            sha256: hash_key("k"),
            scopes: vec!["admin".into()],
            teams: vec![],
        };
        let ring = KeyRing::new(&[], &[stored]);
        assert!(!ring.is_empty());
        assert!(ring.authenticate("k").unwrap().allows(Scope::Events));
    }

    #[tokio::test]
    async fn configured_keys_suppress_the_first_start_key_and_carry_their_scopes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("medcall.db")).unwrap();
        let cfg = ApiKeyConfig {
            name: "crm".into(),
            sha256: hash_key("crm-key"),
            scopes: [Scope::Events].into(),
            teams: vec![],
        };
        let (ring, created) = load_key_ring(&[cfg], &store, dir.path()).await.unwrap();
        assert!(created.is_none());
        assert!(!dir.path().join("admin.key").exists());
        let p = ring.authenticate("crm-key").unwrap();
        assert!(p.allows(Scope::Events));
        assert!(!p.allows(Scope::Admin));
        assert!(!p.allows(Scope::Calls));
    }
}

//! API keys the daemon made itself (the first-start admin key), stored as hashes.

use rusqlite::params;

use super::time::StoredTime;
use super::{Store, StoreError};

/// A key as stored: its hash and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub name: String,
    pub sha256: String,
    pub scopes: Vec<String>,
    pub teams: Vec<String>,
}

impl Store {
    /// Every stored key.
    ///
    /// # Errors
    /// SQLite failures; a row whose JSON columns do not parse is skipped with a warning.
    pub async fn api_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        self.call(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, sha256, scopes, teams FROM api_keys ORDER BY name")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?;
            let mut keys = Vec::new();
            for row in rows {
                let (name, sha256, scopes, teams) = row?;
                match (serde_json::from_str(&scopes), serde_json::from_str(&teams)) {
                    (Ok(scopes), Ok(teams)) => keys.push(StoredKey {
                        name,
                        sha256,
                        scopes,
                        teams,
                    }),
                    _ => tracing::warn!(%name, "skipping stored API key with unreadable scopes"),
                }
            }
            Ok(keys)
        })
        .await
    }

    /// Stores a new key; `Ok(false)` if one with this name already exists.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn insert_api_key(
        &self,
        key: StoredKey,
        origin: &'static str,
    ) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let scopes = serde_json::to_string(&key.scopes).unwrap_or_else(|_| "[]".into());
            let teams = serde_json::to_string(&key.teams).unwrap_or_else(|_| "[]".into());
            let n = conn.execute(
                "INSERT INTO api_keys (name, sha256, scopes, teams, origin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                params![
                    key.name,
                    key.sha256,
                    scopes,
                    teams,
                    origin,
                    StoredTime::now()
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, sha256: &str) -> StoredKey {
        StoredKey {
            name: name.into(),
            sha256: sha256.into(),
            scopes: vec!["events".into()],
            teams: vec!["north".into()],
        }
    }

    #[tokio::test]
    async fn a_key_name_is_stored_once_and_a_second_insert_says_so_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        assert!(
            store
                .insert_api_key(key("crm", "h1"), "test")
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_api_key(key("crm", "h2"), "test")
                .await
                .unwrap()
        );
        assert!(
            store
                .insert_api_key(key("admin", "h3"), "test")
                .await
                .unwrap()
        );
        assert_eq!(
            store.api_keys().await.unwrap(),
            [key("admin", "h3"), key("crm", "h1")]
        );
    }

    #[tokio::test]
    async fn a_stored_key_with_unreadable_scopes_is_skipped_not_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        store
            .insert_api_key(key("crm", "h1"), "test")
            .await
            .unwrap();
        store
            .insert_api_key(key("old", "h2"), "test")
            .await
            .unwrap();
        store
            .call(|c| {
                Ok(c.execute(
                    "UPDATE api_keys SET scopes = 'events' WHERE name = 'old'",
                    [],
                )?)
            })
            .await
            .unwrap();
        assert_eq!(store.api_keys().await.unwrap(), [key("crm", "h1")]);
    }
}

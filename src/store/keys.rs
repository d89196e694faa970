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

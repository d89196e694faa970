//! The SQLite store: one connection on a dedicated thread, embedded migrations, and the
//! only place in medcall that contains SQL.
//!
//! Callers on the async runtime hand closures to the store thread and await the result,
//! so SQLite never blocks a runtime worker. Every write is committed with
//! `synchronous = FULL` in WAL mode before the caller hears "done": a state change the
//! API acknowledged survives `kill -9` and power loss.
//!
//! Submodules add typed queries per domain (`keys`, …); nothing outside `store` writes SQL.

mod calls;
mod crm;
mod keys;
mod migrations;

pub use calls::{AgiSessionRow, CallDetailRow, CallFilter, CallRow, EventRow, LegRow, LiveState};
pub use crm::ImportCounts;
pub use keys::StoredKey;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("database schema version {found} is newer than this medcall knows ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("the store thread has stopped")]
    Closed,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A cloneable handle to the store thread.
#[derive(Clone, Debug)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts the store thread. The thread ends when the last handle is dropped.
    ///
    /// # Errors
    /// The directory cannot be made, the file cannot be opened, or a migration fails.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut conn = open_connection(path)?;
        migrations::apply(&mut conn)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("medcall-store".into())
            .spawn(move || {
                // Jobs run in order; the loop ends when every Store handle is gone.
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|source| StoreError::DataDir {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            jobs,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the store thread and returns its result.
    ///
    /// Cancel-safety: dropping the future does not stop `f` once it has been queued; the
    /// work (and its commit) still happens, only the answer is lost.
    ///
    /// # Errors
    /// Whatever `f` returns, or [`StoreError::Closed`] if the thread is gone.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        self.jobs
            .send(Box::new(move |conn| {
                let _entered = span.enter();
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`Store::call`] but inside one transaction, committed before returning.
    ///
    /// # Errors
    /// Whatever `f` returns (the transaction is rolled back), or a commit failure.
    pub async fn transaction<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // 16 KiB pages for a new database (an existing one keeps its size: in WAL mode it
    // cannot change): call ingestion appends rows and index entries batch after batch,
    // and with 4 KiB pages writing the WAL and checkpointing it was a quarter of the
    // daemon's CPU, most of it kernel time per page written.
    conn.pragma_update(None, "page_size", 16_384)?;
    // WAL for concurrent readers; FULL so a commit is on disk before it is acknowledged.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Call ingestion touches the same index pages batch after batch: a 64 MiB page
    // cache (SQLite's default is 2 MiB) keeps them in memory instead of re-reading them.
    conn.pragma_update(None, "cache_size", -65_536)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_the_directory_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data/medcall.db");
        let store = Store::open(&path).unwrap();
        let mode: String = store
            .call(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(path.exists());
        let page_size: i64 = store
            .call(|c| Ok(c.query_row("PRAGMA page_size", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(page_size, 16_384);
    }

    #[tokio::test]
    async fn an_existing_database_keeps_its_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "journal_mode", "WAL").unwrap();
            c.execute_batch("CREATE TABLE t (x)").unwrap();
        }
        let store = Store::open(&path).unwrap();
        let page_size: i64 = store
            .call(|c| Ok(c.query_row("PRAGMA page_size", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(page_size, 4_096);
    }

    #[tokio::test]
    async fn a_failed_transaction_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let result: Result<(), _> = store
            .transaction(|tx| {
                tx.execute(
                    "INSERT INTO api_keys (name, sha256, scopes, teams, origin, created_at) VALUES ('a', 'h', '[]', '[]', 'test', 'now')",
                    [],
                )?;
                Err(StoreError::Closed)
            })
            .await;
        assert!(result.is_err());
        let n: i64 = store
            .call(|c| Ok(c.query_row("SELECT count(*) FROM api_keys", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}

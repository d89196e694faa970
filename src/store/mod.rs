//! The SQLite store: one connection on a dedicated thread, embedded migrations, and the
//! only place in medcall that contains SQL.
//!
//! Callers on the async runtime hand closures to the store thread and await the result,
//! so SQLite never blocks a runtime worker. Every write the API acknowledges is
//! committed with `synchronous = FULL` in WAL mode before the caller hears "done": it
//! survives `kill -9` and power loss. Observations that nobody is told were stored (the
//! FastAGI session timeline) may be committed [`Durability::Kernel`]: they survive
//! `kill -9`, and are on disk at the next `FULL` commit or checkpoint.
//!
//! Submodules add typed queries per domain (`keys`, `calls`, `crm`, `directory`, `schedule`); nothing outside
//! `store` writes SQL. Every time column is a [`StoredTime`] (`time`), every enum or JSON
//! column decodes strictly (`column`): what cannot be read is [`StoreError::BadValue`],
//! never a default.

mod booking;
mod calls;
mod column;
mod conference;
pub mod consultation;
mod crm;
mod directory;
mod keys;
mod migrations;
pub mod outbox;
mod schedule;
mod time;

pub use booking::{Render, ReplayKey, SWEEP_BATCH, StoredAnswer};
pub use calls::{AgiSessionRow, CallDetailRow, CallFilter, CallRow, EventRow, LegRow, LiveState};
pub use column::BadValue;
pub use conference::{CallWithLegs, MediaFile, RecordingFacts, StoredRecording};
pub use crm::ImportCounts;
pub use directory::{DirectoryImportError, DirectoryProgress};
pub use keys::StoredKey;
pub use schedule::{ScheduleImportError, ScheduleProgress};
pub use time::StoredTime;

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
    Sqlite(#[source] rusqlite::Error),
    /// A stored value that does not read as its column's type: a time that is not a
    /// time, a word that is not one of its enum's, JSON of another shape. Never replaced
    /// by a default.
    #[error("unreadable stored value: {0}")]
    BadValue(#[source] BadValue),
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
    /// A row the same transaction just wrote or read is not there: a bug, never input.
    #[error("the store is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The commit shared by a group of writes failed: none of them is stored.
    #[error("group commit failed: {0}")]
    GroupCommit(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        match e {
            rusqlite::Error::FromSqlConversionFailure(i, ty, cause) => {
                match cause.downcast::<BadValue>() {
                    Ok(bad) => {
                        let mut bad = *bad;
                        if bad.column.is_empty() {
                            bad.column = format!("#{i}");
                        }
                        StoreError::BadValue(bad)
                    }
                    Err(cause) => {
                        StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(i, ty, cause))
                    }
                }
            }
            other => StoreError::Sqlite(other),
        }
    }
}

/// Work for the store thread.
enum Job {
    /// Runs alone, with the connection to itself.
    Solo(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Runs in a savepoint of a transaction shared with the grouped jobs queued behind
    /// it, committed once for all of them ([`Store::grouped`]); returns what to do once
    /// that commit is known.
    Grouped(GroupedJob),
}

/// Given the open transaction's connection, or why the transaction could not begin.
type GroupedJob = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;
/// Told whether the shared commit succeeded (its error as text: one error, many jobs).
type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;

/// How far a committed transaction is guaranteed to have gone when the commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (`synchronous = FULL`: the WAL is fsynced): survives a power loss.
    /// Everything the API acknowledges is committed this way.
    Disk,
    /// Written to the WAL file, not yet fsynced (`synchronous = NORMAL`): survives
    /// `kill -9` of the daemon, and reaches the disk with the next `Disk` commit or
    /// checkpoint; a power loss before then may take it back (never half of it).
    /// For observations on the hot path: the fsync, with its journal commit and
    /// interrupts on the daemon's cores, cost a FastAGI session more than the rest of
    /// its row did, and pushed back the sessions being served meanwhile.
    Kernel,
}

/// A cloneable handle to the store thread.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Most grouped jobs one commit takes (`Store::open_with_group`).
pub const DEFAULT_GROUP_MAX: usize = 512;

impl Store {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// starts the store thread. The thread ends when the last handle is dropped.
    ///
    /// # Errors
    /// The directory cannot be made, the file cannot be opened, or a migration fails.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_group(path, DEFAULT_GROUP_MAX)
    }

    /// Like [`Store::open`], committing at most `group_max` grouped jobs together.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_group(path: &Path, group_max: usize) -> Result<Store, StoreError> {
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
            .spawn(move || run_jobs(&mut conn, &rx, group_max.max(1)))
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
            .send(Job::Solo(Box::new(move |conn| {
                let _entered = span.enter();
                let _ = tx.send(f(conn));
            })))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` in a transaction shared with the other grouped writes queued at the
    /// same time, committed `Durability::Disk` once for all of them: many acknowledged
    /// writes, one fsync. `f` runs alone on the store thread, after every job queued
    /// before it, so what it reads is what the earlier jobs wrote: a check and the write
    /// it allows are as serial as in their own transaction. `f` runs in a savepoint: an
    /// `Err` undoes only its own writes. The answer is sent only after the commit; if the
    /// commit fails, every job of the group gets [`StoreError::GroupCommit`].
    ///
    /// Cancel-safety: as [`Store::call`].
    ///
    /// # Errors
    /// Whatever `f` returns, the shared commit's failure, or [`StoreError::Closed`].
    pub async fn grouped<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let span = tracing::Span::current();
        self.jobs
            .send(Job::Grouped(Box::new(move |conn| {
                let out = match conn {
                    Ok(conn) => {
                        let _entered = span.enter();
                        in_savepoint(conn, f)
                    }
                    Err(e) => Err(StoreError::GroupCommit(e.to_string())),
                };
                Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => out,
                        Err(e) => Err(StoreError::GroupCommit(e)),
                    });
                })
            })))
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
        self.transaction_with(Durability::Disk, f).await
    }

    /// Like [`Store::transaction`], committed as `durability` says.
    ///
    /// # Errors
    /// Whatever `f` returns (the transaction is rolled back), or a commit failure.
    pub async fn transaction_with<R, F>(
        &self,
        durability: Durability,
        f: F,
    ) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<R, StoreError> + Send + 'static,
    {
        self.call(move |conn| {
            let run = |conn: &mut Connection| {
                let tx = conn.transaction()?;
                let out = f(&tx)?;
                tx.commit()?;
                Ok(out)
            };
            match durability {
                Durability::Disk => run(conn),
                Durability::Kernel => {
                    // The connection's setting is FULL between jobs, whatever happens here:
                    // the next job may be an acknowledged write.
                    conn.pragma_update(None, "synchronous", "NORMAL")?;
                    let out = run(conn);
                    conn.pragma_update(None, "synchronous", "FULL")?;
                    out
                }
            }
        })
        .await
    }
}

/// The store thread: jobs in order until every [`Store`] handle is gone. A grouped job
/// takes the grouped jobs queued behind it (up to `group_max`) into its transaction; a
/// solo job found while gathering runs right after that group's commit, so the order
/// of jobs is kept.
fn run_jobs(conn: &mut Connection, rx: &mpsc::Receiver<Job>, group_max: usize) {
    let mut next = rx.recv().ok();
    while let Some(job) = next.take() {
        match job {
            Job::Solo(f) => f(conn),
            Job::Grouped(first) => {
                let mut group = vec![first];
                while group.len() < group_max {
                    match rx.try_recv() {
                        Ok(Job::Grouped(g)) => group.push(g),
                        Ok(solo) => {
                            next = Some(solo);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(conn, group);
            }
        }
        if next.is_none() {
            next = rx.recv().ok();
        }
    }
}

/// One transaction for `group`, committed once; then each job hears the outcome.
fn run_group(conn: &mut Connection, group: Vec<GroupedJob>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = e.to_string();
        tracing::error!(error = %e, "cannot begin a group transaction");
        for job in group {
            // Told why instead of run: outside a transaction its writes would not be one.
            job(Err(&e))(Err(e.clone()));
        }
        return;
    }
    let finishes: Vec<Finish> = group.into_iter().map(|job| job(Ok(conn))).collect();
    let committed = conn.execute_batch("COMMIT").map_err(|e| {
        let text = e.to_string();
        let _ = conn.execute_batch("ROLLBACK");
        text
    });
    if let Err(e) = &committed {
        tracing::error!(error = %e, jobs = finishes.len(), "a group commit failed");
    }
    for finish in finishes {
        finish(committed.clone());
    }
}

/// `f` in a savepoint: released on `Ok`, rolled back on `Err`.
fn in_savepoint<R>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    // Prepared once: a savepoint per job of a busy group is worth not parsing each time.
    conn.prepare_cached("SAVEPOINT medcall_job")?.execute([])?;
    let out = f(conn);
    if out.is_err() {
        conn.prepare_cached("ROLLBACK TO medcall_job")?
            .execute([])?;
    }
    conn.prepare_cached("RELEASE medcall_job")?.execute([])?;
    out
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
    // A grouped job's savepoint keeps a statement journal of the pages it changes; in a
    // file that was a pwrite per page per reservation, a tenth of the store thread's time
    // under booking load. In memory it is a copy. (medcall makes no temporary tables; a
    // large sort spills to memory instead of a temporary file.)
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection's `PRAGMA name`, read on the store thread.
    async fn pragma<T: rusqlite::types::FromSql + Send + 'static>(store: &Store, name: &str) -> T {
        let sql = format!("PRAGMA {name}");
        store
            .call(move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn open_creates_the_directory_and_sets_the_connection_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data/medcall.db");
        let store = Store::open(&path).unwrap();
        let mode: String = pragma(&store, "journal_mode").await;
        assert_eq!(mode, "wal");
        assert!(path.exists());
        let page_size: i64 = pragma(&store, "page_size").await;
        assert_eq!(page_size, 16_384);
        // Negative: a size in KiB (64 MiB), not a count of 16 KiB pages (1 GiB).
        let cache_size: i64 = pragma(&store, "cache_size").await;
        assert_eq!(cache_size, -65_536);
        let foreign_keys: i64 = pragma(&store, "foreign_keys").await;
        assert_eq!(foreign_keys, 1);
        let temp_store: i64 = pragma(&store, "temp_store").await;
        assert_eq!(temp_store, 2, "MEMORY");
    }

    #[tokio::test]
    async fn a_kernel_durability_commit_leaves_the_connection_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        let sync = || pragma::<i64>(&store, "synchronous");
        const FULL: i64 = 2;
        assert_eq!(sync().await, FULL);
        let seen = store
            .transaction_with(Durability::Kernel, |tx| {
                tx.execute_batch("CREATE TABLE t (x)")?;
                Ok(tx.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
            })
            .await
            .unwrap();
        assert_eq!(seen, 1, "NORMAL inside the transaction");
        assert_eq!(sync().await, FULL);
        // A failing transaction is rolled back and leaves FULL too.
        let failed = store
            .transaction_with(Durability::Kernel, |tx| {
                tx.execute("INSERT INTO t VALUES (1)", [])?;
                tx.execute("INSERT INTO nowhere VALUES (1)", [])?;
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(sync().await, FULL);
        let rows: i64 = store
            .call(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 0, "nothing of the failed transaction");
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
        let page_size: i64 = pragma(&store, "page_size").await;
        assert_eq!(page_size, 4_096);
    }

    /// `f`, polled once (so its job is queued now, in call order), to be awaited later.
    fn queued<F: std::future::Future>(f: F) -> std::pin::Pin<Box<F>> {
        let mut f = Box::pin(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(f.as_mut().poll(&mut cx).is_pending());
        f
    }

    /// A solo job holding the store thread until `release` is dropped, so the jobs queued
    /// meanwhile are gathered into one group.
    fn hold_thread(store: &Store) -> std::sync::mpsc::Sender<()> {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let held = store.call(move |_| {
            let _ = wait.recv();
            Ok(())
        });
        std::mem::drop(queued(held));
        release
    }

    async fn table(store: &Store, sql: &'static str) {
        store
            .call(move |c| Ok(c.execute_batch(sql)?))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn grouped_jobs_run_in_order_each_in_its_savepoint_and_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        table(&store, "CREATE TABLE t (x INTEGER)").await;
        let release = hold_thread(&store);
        let insert = |x: i64, fail: bool| {
            store.grouped(move |c| {
                assert!(!c.is_autocommit(), "inside the group's transaction");
                c.execute("INSERT INTO t VALUES (?1)", [x])?;
                if fail {
                    return Err(StoreError::Closed);
                }
                Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))?)
            })
        };
        let first = queued(insert(1, false));
        let failing = queued(insert(2, true));
        let third = queued(insert(3, false));
        drop(release);
        assert_eq!(first.await.unwrap(), 1);
        assert!(matches!(failing.await, Err(StoreError::Closed)));
        assert_eq!(third.await.unwrap(), 2, "the failed job's row was undone");
        let rows: Vec<i64> = store
            .call(|c| {
                let mut st = c.prepare("SELECT x FROM t ORDER BY x")?;
                let rows = st.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(rows, vec![1, 3]);
    }

    #[tokio::test]
    async fn a_failed_group_commit_fails_every_job_of_the_group_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        // A deferred foreign key is checked at COMMIT: a job can pass its savepoint and
        // still make the shared commit fail.
        table(
            &store,
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE t (x INTEGER)",
        )
        .await;
        let release = hold_thread(&store);
        let good = queued(store.grouped(|c| Ok(c.execute("INSERT INTO t VALUES (1)", [])?)));
        let orphan = queued(store.grouped(|c| Ok(c.execute("INSERT INTO c VALUES (99)", [])?)));
        drop(release);
        assert!(matches!(good.await, Err(StoreError::GroupCommit(_))));
        assert!(matches!(orphan.await, Err(StoreError::GroupCommit(_))));
        // The next group commits: the failed one left no transaction open.
        let later = store
            .grouped(|c| Ok(c.execute("INSERT INTO t VALUES (2)", [])?))
            .await;
        assert_eq!(later.unwrap(), 1);
        let rows: i64 = store
            .call(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(rows, 1, "only the later job's row");
    }

    #[tokio::test]
    async fn a_solo_job_between_grouped_ones_runs_after_the_first_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_group(&dir.path().join("m.db"), 2).unwrap();
        table(
            &store,
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TABLE t (x INTEGER)",
        )
        .await;
        let release = hold_thread(&store);
        let count = |c: &Connection| -> Result<i64, StoreError> {
            Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
        };
        let insert = |x: i64| {
            store.grouped(move |c| {
                c.execute("INSERT INTO t VALUES (?1)", [x])?;
                count(c)
            })
        };
        let g1 = queued(insert(1));
        let solo = queued(store.call(move |c| Ok((c.is_autocommit(), count(c)?))));
        let g2 = queued(insert(2));
        // Fails the commit of its group: g2 and g3 are one group of two, g4 the next.
        let g3 = queued(store.grouped(|c| Ok(c.execute("INSERT INTO c VALUES (9)", [])? as i64)));
        let g4 = queued(insert(4));
        drop(release);
        assert_eq!(g1.await.unwrap(), 1);
        assert_eq!(
            solo.await.unwrap(),
            (true, 1),
            "after g1's commit, outside any transaction"
        );
        assert!(matches!(g2.await, Err(StoreError::GroupCommit(_))));
        assert!(matches!(g3.await, Err(StoreError::GroupCommit(_))));
        assert_eq!(
            g4.await.unwrap(),
            2,
            "in a group of its own, after g2 was undone"
        );
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

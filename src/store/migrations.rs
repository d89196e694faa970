//! Embedded schema migrations, applied in order at open; `PRAGMA user_version` records
//! the last one applied. A migration is never edited once released: add a new one.

use rusqlite::Connection;

use super::StoreError;

/// (version, name, SQL). Versions are 1, 2, 3… with no gaps.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "api_keys", include_str!("migrations/0001_api_keys.sql")),
    (2, "calls", include_str!("migrations/0002_calls.sql")),
    (3, "crm", include_str!("migrations/0003_crm.sql")),
    (4, "timeline", include_str!("migrations/0004_timeline.sql")),
    (
        5,
        "agi_sessions",
        include_str!("migrations/0005_agi_sessions.sql"),
    ),
    (
        6,
        "directory",
        include_str!("migrations/0006_directory.sql"),
    ),
    (
        7,
        "conference",
        include_str!("migrations/0007_conference.sql"),
    ),
    (8, "media", include_str!("migrations/0008_media.sql")),
    (9, "booking", include_str!("migrations/0009_booking.sql")),
    (
        10,
        "consultations",
        include_str!("migrations/0010_consultations.sql"),
    ),
    (11, "outbox", include_str!("migrations/0011_outbox.sql")),
];

/// Applies every migration newer than the database's `user_version`, each in its own
/// transaction together with the version bump.
pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::TooNew {
            found: current,
            known,
        });
    }
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .map_err(|source| StoreError::Migration {
                version,
                name,
                source,
            })?;
        tx.commit()?;
        tracing::info!(version, name, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i64 + 1, "migration {} out of order", m.1);
        }
    }

    #[test]
    fn every_migration_applies_to_an_empty_database_and_a_second_run_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let schema = |c: &Connection| -> Vec<String> {
            let mut s = c
                .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let before = schema(&conn);
        apply(&mut conn).unwrap();
        assert_eq!(schema(&conn), before);
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
    }

    #[test]
    fn a_database_from_a_newer_medcall_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 10_000).unwrap();
        assert!(matches!(apply(&mut conn), Err(StoreError::TooNew { .. })));
    }
}

//! Persistence for the directory (SPEC §8): teams, users, doctors and inbound routes.
//!
//! The import follows the CRM's pattern in one transaction on the store thread: load
//! what the store holds of the document's entries ([`StoredDirectory`]), let
//! [`ValidDirectory::plan`] decide (refused, or what to insert and update), write the
//! plan. This module decides nothing itself; it only reads and writes what the plan names.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::column::read;
use super::time::StoredTime;
use super::{Store, StoreError};
use crate::directory::document::{DirectoryPlan, StoredDirectory, ValidDirectory};
use crate::directory::{
    DirectoryCounts, DirectoryDoctor, DirectoryDocument, DirectoryTeam, DirectoryUser, DoctorGuid,
    DoctorId, InboundNumber, InboundRoute, TeamId, ThreadId, UserId,
};

/// Why a directory import wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryImportError {
    /// The document was refused: every problem, each naming its entry. Nothing was
    /// written.
    #[error("the directory document has invalid entries:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// The document is well-formed but its entries conflict: with what is stored (a user
    /// naming a team neither in it nor stored, a GUID held by another stored doctor) or
    /// with each other (one key given twice): every
    /// problem, each naming its entry. Nothing was written.
    #[error("the directory document conflicts with the stored directory:\n  {}", .0.join("\n  "))]
    Conflict(Vec<String>),
    /// The store failed; the transaction was rolled back, so nothing was written either.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How far an import's writes have come: `written` of `total` rows (entries found
/// unchanged are not written, so not counted in either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryProgress {
    pub written: usize,
    pub total: usize,
}

/// Progress is reported after this many rows, and after the last.
const PROGRESS_EVERY: usize = 256;

const TEAM_COLUMNS: &str = "team_id, name";
const USER_COLUMNS: &str = "user_id, team_id, name, endpoint";
const DOCTOR_COLUMNS: &str = "id, guid, full_name, role, speciality, endpoint";
const INBOUND_COLUMNS: &str = "number, team_id, thread_id";

fn team_row(r: &Row<'_>) -> rusqlite::Result<DirectoryTeam> {
    Ok(DirectoryTeam {
        team: read(r, 0)?,
        name: r.get(1)?,
    })
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<DirectoryUser> {
    Ok(DirectoryUser {
        user: read(r, 0)?,
        team: read(r, 1)?,
        name: r.get(2)?,
        endpoint: read(r, 3)?,
    })
}

fn doctor_row(r: &Row<'_>) -> rusqlite::Result<DirectoryDoctor> {
    Ok(DirectoryDoctor {
        id: read(r, 0)?,
        guid: read(r, 1)?,
        full_name: r.get(2)?,
        role: r.get(3)?,
        speciality: r.get(4)?,
        endpoint: read(r, 5)?,
    })
}

fn inbound_row(r: &Row<'_>) -> rusqlite::Result<InboundRoute> {
    Ok(InboundRoute {
        number: read(r, 0)?,
        team: read(r, 1)?,
        thread: read(r, 2)?,
    })
}

fn team_by_id(conn: &Connection, team: &TeamId) -> rusqlite::Result<Option<DirectoryTeam>> {
    conn.prepare_cached(&format!(
        "SELECT {TEAM_COLUMNS} FROM directory_teams WHERE team_id = ?1"
    ))?
    .query_row([team], team_row)
    .optional()
}

fn user_by_id(conn: &Connection, user: &UserId) -> rusqlite::Result<Option<DirectoryUser>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM directory_users WHERE user_id = ?1"
    ))?
    .query_row([user], user_row)
    .optional()
}

fn doctor_by_id(conn: &Connection, id: DoctorId) -> rusqlite::Result<Option<DirectoryDoctor>> {
    conn.prepare_cached(&format!(
        "SELECT {DOCTOR_COLUMNS} FROM directory_doctors WHERE id = ?1"
    ))?
    .query_row([id], doctor_row)
    .optional()
}

fn doctor_by_guid(
    conn: &Connection,
    guid: &DoctorGuid,
) -> rusqlite::Result<Option<DirectoryDoctor>> {
    conn.prepare_cached(&format!(
        "SELECT {DOCTOR_COLUMNS} FROM directory_doctors WHERE guid = ?1"
    ))?
    .query_row([guid], doctor_row)
    .optional()
}

fn inbound_by_number(
    conn: &Connection,
    number: &InboundNumber,
) -> rusqlite::Result<Option<InboundRoute>> {
    conn.prepare_cached(&format!(
        "SELECT {INBOUND_COLUMNS} FROM directory_inbound WHERE number = ?1"
    ))?
    .query_row([number], inbound_row)
    .optional()
}

/// What the store holds of the document's entries: the facts [`ValidDirectory::plan`]
/// decides on.
fn load_facts(tx: &Transaction<'_>, doc: &ValidDirectory) -> rusqlite::Result<StoredDirectory> {
    let mut stored = StoredDirectory::default();
    for team in doc.teams_named() {
        if let Some(row) = team_by_id(tx, &team)? {
            stored.teams.insert(team, row);
        }
    }
    for u in &doc.users {
        if let Some(row) = user_by_id(tx, &u.user)? {
            stored.users.insert(u.user.clone(), row);
        }
    }
    for d in &doc.doctors {
        if let Some(row) = doctor_by_id(tx, d.id)? {
            stored.doctors.insert(d.id, row);
        }
        let holder: Option<DoctorId> = tx
            .prepare_cached("SELECT id FROM directory_doctors WHERE guid = ?1")?
            .query_row([&d.guid], |r| read(r, 0))
            .optional()?;
        if let Some(holder) = holder {
            stored.guid_holders.insert(d.guid.clone(), holder);
        }
    }
    for r in &doc.inbound {
        if let Some(row) = inbound_by_number(tx, &r.number)? {
            stored.inbound.insert(r.number.clone(), row);
        }
    }
    Ok(stored)
}

/// Writes the plan's rows, teams first (users and routes reference them), reporting
/// progress as it goes.
fn write_plan(
    tx: &Transaction<'_>,
    plan: &DirectoryPlan,
    progress: &dyn Fn(DirectoryProgress),
) -> rusqlite::Result<()> {
    let now = StoredTime::now();
    let total = plan.writes();
    let mut written = 0;
    let mut wrote = || {
        written += 1;
        if written % PROGRESS_EVERY == 0 || written == total {
            progress(DirectoryProgress { written, total });
        }
    };
    let mut up = tx.prepare_cached(
        "INSERT INTO directory_teams (team_id, name, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (team_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
    )?;
    for t in &plan.teams {
        up.execute(params![t.team, t.name, now])?;
        wrote();
    }
    let mut up = tx.prepare_cached(
        "INSERT INTO directory_users (user_id, team_id, name, endpoint, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id) DO UPDATE SET team_id = excluded.team_id, name = excluded.name,
             endpoint = excluded.endpoint, updated_at = excluded.updated_at",
    )?;
    for u in &plan.users {
        up.execute(params![u.user, u.team, u.name, u.endpoint, now])?;
        wrote();
    }
    // A GUID that changes hands within the document is released first, so the UNIQUE
    // index never sees it twice mid-transaction; every doctor released is rewritten below.
    let mut release =
        tx.prepare_cached("UPDATE directory_doctors SET guid = 'released:' || id WHERE id = ?1")?;
    for id in &plan.doctors_moving_guid {
        release.execute([id])?;
    }
    let mut up = tx.prepare_cached(
        "INSERT INTO directory_doctors (id, guid, full_name, role, speciality, endpoint, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET guid = excluded.guid, full_name = excluded.full_name,
             role = excluded.role, speciality = excluded.speciality,
             endpoint = excluded.endpoint, updated_at = excluded.updated_at",
    )?;
    for d in &plan.doctors {
        up.execute(params![
            d.id,
            d.guid,
            d.full_name,
            d.role,
            d.speciality,
            d.endpoint,
            now
        ])?;
        wrote();
    }
    let mut up = tx.prepare_cached(
        "INSERT INTO directory_inbound (number, team_id, thread_id, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (number) DO UPDATE SET team_id = excluded.team_id,
             thread_id = excluded.thread_id, updated_at = excluded.updated_at",
    )?;
    for r in &plan.inbound {
        up.execute(params![r.number, r.team, r.thread, now])?;
        wrote();
    }
    Ok(())
}

impl Store {
    /// Validates the directory document whole and upserts it in one transaction:
    /// entries that are new are inserted, those that differ updated, equal ones left
    /// alone (and counted so: a second import of the same document writes nothing).
    ///
    /// # Errors
    /// [`DirectoryImportError::Invalid`] with every problem when the document is refused
    /// (also for a user or route naming a team neither in it nor stored), or
    /// [`DirectoryImportError::Store`]; either way nothing is written.
    pub async fn import_directory(
        &self,
        doc: DirectoryDocument,
    ) -> Result<DirectoryCounts, DirectoryImportError> {
        self.import_directory_with_progress(doc, |_| {}).await
    }

    /// [`Store::import_directory`], calling `progress` on the store thread as rows are
    /// written (every few hundred, and after the last).
    ///
    /// # Errors
    /// As [`Store::import_directory`].
    pub async fn import_directory_with_progress(
        &self,
        doc: DirectoryDocument,
        progress: impl Fn(DirectoryProgress) + Send + 'static,
    ) -> Result<DirectoryCounts, DirectoryImportError> {
        let valid = doc
            .validate_classified()
            .map_err(|(problems, only_duplicates)| {
                if only_duplicates {
                    DirectoryImportError::Conflict(problems)
                } else {
                    DirectoryImportError::Invalid(problems)
                }
            })?;
        let decided = self
            .transaction(move |tx| {
                let stored = load_facts(tx, &valid)?;
                match valid.plan(&stored) {
                    Ok(plan) => {
                        write_plan(tx, &plan, &progress)?;
                        Ok(Ok(plan.counts))
                    }
                    // Nothing was written: committing the reads changes nothing.
                    Err(problems) => Ok(Err(problems)),
                }
            })
            .await?;
        decided.map_err(DirectoryImportError::Conflict)
    }

    /// The user, if the directory has them.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read ([`StoreError::BadValue`]).
    pub async fn directory_user(&self, user: UserId) -> Result<Option<DirectoryUser>, StoreError> {
        self.call(move |conn| Ok(user_by_id(conn, &user)?)).await
    }

    /// The team, if the directory has it.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read.
    pub async fn directory_team(&self, team: TeamId) -> Result<Option<DirectoryTeam>, StoreError> {
        self.call(move |conn| Ok(team_by_id(conn, &team)?)).await
    }

    /// Whether the directory has the team.
    ///
    /// # Errors
    /// SQLite failures.
    pub async fn team_exists(&self, team: TeamId) -> Result<bool, StoreError> {
        self.call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM directory_teams WHERE team_id = ?1")?
                .exists([team])?)
        })
        .await
    }

    /// The team and thread an inbound call to `number` (the dialled number as the
    /// dialplan hands it over) joins; `None` when no route names the number, including
    /// a text that cannot be a dialled number at all.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read.
    pub async fn inbound_route(
        &self,
        number: String,
    ) -> Result<Option<(TeamId, ThreadId)>, StoreError> {
        let Ok(number) = number.parse::<InboundNumber>() else {
            return Ok(None);
        };
        self.call(move |conn| Ok(inbound_by_number(conn, &number)?.map(|r| (r.team, r.thread))))
            .await
    }

    /// The doctor whose `doctorId` is `id`, if the directory has them.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read.
    pub async fn directory_doctor(
        &self,
        id: DoctorId,
    ) -> Result<Option<DirectoryDoctor>, StoreError> {
        self.call(move |conn| Ok(doctor_by_id(conn, id)?)).await
    }

    /// The doctors of `ids` the directory has, by id, in one store call.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read.
    pub async fn directory_doctors(
        &self,
        ids: Vec<DoctorId>,
    ) -> Result<std::collections::HashMap<DoctorId, DirectoryDoctor>, StoreError> {
        self.call(move |conn| {
            let mut found = std::collections::HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(d) = doctor_by_id(conn, id)? {
                    found.insert(id, d);
                }
            }
            Ok(found)
        })
        .await
    }

    /// The doctor whose GUID (`docGuid`) is `guid`, if the directory has them.
    ///
    /// # Errors
    /// SQLite failures; a stored value that does not read.
    pub async fn directory_doctor_by_guid(
        &self,
        guid: DoctorGuid,
    ) -> Result<Option<DirectoryDoctor>, StoreError> {
        self.call(move |conn| Ok(doctor_by_guid(conn, &guid)?))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::UpsertCounts;

    const TEAM: &str = "333ccc134c0319001573485e";
    const OTHER_TEAM: &str = "444ddd134c0319001573485e";
    const USER: &str = "5b4458eb1b2b33001bf213bf";
    const OTHER_USER: &str = "5b4458eb1b2b33001bf21300";
    const THREAD: &str = "5b0525134c0319001573485e";
    const GUID: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";
    const OTHER_GUID: &str = "c3c977af-c3b4-4517-9d57-50a6844ec660";

    fn fresh_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db")).unwrap();
        (dir, store)
    }

    fn doc(json: &str) -> DirectoryDocument {
        DirectoryDocument::from_json(json.as_bytes()).unwrap()
    }

    /// Every kind of entry, every optional field given.
    fn full() -> DirectoryDocument {
        doc(&format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"Reception"}}],
                "users":[{{"userId":"{USER}","teamId":"{TEAM}","name":"Anna","endpoint":"PJSIP/1001"}},
                         {{"userId":"{OTHER_USER}","teamId":"{TEAM}","name":"Boris"}}],
                "doctors":[{{"id":17,"guid":"{GUID}","fullName":"Петрова Мария","role":"врач","speciality":"терапия","endpoint":"PJSIP/2001"}}],
                "inbound":[{{"number":"+74951234567","teamId":"{TEAM}","threadId":"{THREAD}"}}]}}"#
        ))
    }

    /// Row counts of the four tables.
    async fn rows(store: &Store) -> [i64; 4] {
        store
            .call(|c| {
                let mut n = [0; 4];
                for (slot, table) in n.iter_mut().zip([
                    "directory_teams",
                    "directory_users",
                    "directory_doctors",
                    "directory_inbound",
                ]) {
                    *slot =
                        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
                }
                Ok(n)
            })
            .await
            .unwrap()
    }

    fn counts(inserted: usize, updated: usize, unchanged: usize) -> UpsertCounts {
        UpsertCounts {
            inserted,
            updated,
            unchanged,
        }
    }

    #[tokio::test]
    async fn every_field_reads_back_as_imported() {
        let (_dir, store) = fresh_store();
        store.import_directory(full()).await.unwrap();
        let team: TeamId = TEAM.parse().unwrap();
        assert_eq!(
            store.directory_user(USER.parse().unwrap()).await.unwrap(),
            Some(DirectoryUser {
                user: USER.parse().unwrap(),
                team: team.clone(),
                name: "Anna".into(),
                endpoint: Some("PJSIP/1001".parse().unwrap()),
            })
        );
        let boris = store
            .directory_user(OTHER_USER.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((boris.name.as_str(), boris.endpoint), ("Boris", None));
        assert_eq!(
            store.directory_team(team.clone()).await.unwrap(),
            Some(DirectoryTeam {
                team: team.clone(),
                name: "Reception".into()
            })
        );
        assert!(store.team_exists(team.clone()).await.unwrap());
        assert!(
            !store
                .team_exists(OTHER_TEAM.parse().unwrap())
                .await
                .unwrap()
        );
        let doctor = DirectoryDoctor {
            id: DoctorId::new(17).unwrap(),
            guid: GUID.parse().unwrap(),
            full_name: "Петрова Мария".into(),
            role: "врач".into(),
            speciality: "терапия".into(),
            endpoint: Some("PJSIP/2001".parse().unwrap()),
        };
        assert_eq!(
            store.directory_doctor(doctor.id).await.unwrap().as_ref(),
            Some(&doctor)
        );
        assert_eq!(
            store
                .directory_doctor_by_guid(GUID.to_uppercase().parse().unwrap())
                .await
                .unwrap(),
            Some(doctor)
        );
        assert_eq!(
            store
                .directory_doctor(DoctorId::new(18).unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.inbound_route("+74951234567".into()).await.unwrap(),
            Some((team, THREAD.parse().unwrap()))
        );
        for other in ["74951234567", "", "+7 495", "s"] {
            assert_eq!(
                store.inbound_route(other.into()).await.unwrap(),
                None,
                "{other:?}"
            );
        }
    }

    #[tokio::test]
    async fn importing_the_same_document_twice_changes_nothing_the_second_time() {
        let (_dir, store) = fresh_store();
        let first = store.import_directory(full()).await.unwrap();
        assert_eq!(
            first,
            DirectoryCounts {
                teams: counts(1, 0, 0),
                users: counts(2, 0, 0),
                doctors: counts(1, 0, 0),
                inbound: counts(1, 0, 0),
            }
        );
        let stamps = || {
            store.call(|c| {
                Ok(c.query_row(
                    "SELECT group_concat(updated_at) FROM (SELECT updated_at FROM directory_teams
                     UNION ALL SELECT updated_at FROM directory_users
                     UNION ALL SELECT updated_at FROM directory_doctors
                     UNION ALL SELECT updated_at FROM directory_inbound)",
                    [],
                    |r| r.get::<_, String>(0),
                )?)
            })
        };
        let before = stamps().await.unwrap();
        let second = store.import_directory(full()).await.unwrap();
        assert_eq!(
            second,
            DirectoryCounts {
                teams: counts(0, 0, 1),
                users: counts(0, 0, 2),
                doctors: counts(0, 0, 1),
                inbound: counts(0, 0, 1),
            }
        );
        assert_eq!(stamps().await.unwrap(), before, "no row was rewritten");
        assert_eq!(rows(&store).await, [1, 2, 1, 1]);
    }

    #[tokio::test]
    async fn a_changed_entry_is_updated_and_counted_so() {
        let (_dir, store) = fresh_store();
        store.import_directory(full()).await.unwrap();
        let changed = store
            .import_directory(doc(&format!(
                r#"{{"teams":[{{"teamId":"{OTHER_TEAM}","name":"Sales"}}],
                    "users":[{{"userId":"{USER}","teamId":"{OTHER_TEAM}","name":"Anna K."}}],
                    "inbound":[{{"number":"+74951234567","teamId":"{OTHER_TEAM}","threadId":"{THREAD}"}}]}}"#
            )))
            .await
            .unwrap();
        assert_eq!(changed.teams, counts(1, 0, 0));
        assert_eq!(changed.users, counts(0, 1, 0));
        assert_eq!(changed.inbound, counts(0, 1, 0));
        assert_eq!(changed.doctors, counts(0, 0, 0));
        let anna = store
            .directory_user(USER.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(anna.team.as_str(), OTHER_TEAM);
        assert_eq!(anna.name, "Anna K.");
        assert_eq!(
            anna.endpoint, None,
            "an absent endpoint clears the stored one"
        );
        assert_eq!(rows(&store).await, [2, 2, 1, 1]);
    }

    #[tokio::test]
    async fn a_user_naming_an_unknown_team_is_refused_and_nothing_is_written() {
        let (_dir, store) = fresh_store();
        let refused = store
            .import_directory(doc(&format!(
                r#"{{"teams":[{{"teamId":"{TEAM}","name":"Reception"}}],
                    "users":[{{"userId":"{USER}","teamId":"{OTHER_TEAM}","name":"Anna"}}]}}"#
            )))
            .await
            .unwrap_err();
        match refused {
            DirectoryImportError::Conflict(problems) => assert_eq!(
                problems,
                [format!(
                    r#"users[0] "{USER}": teamId "{OTHER_TEAM}" is neither in the document nor stored"#
                )]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(rows(&store).await, [0, 0, 0, 0], "not even the valid team");

        // Once the team is stored, a later document may name it without defining it.
        store
            .import_directory(doc(&format!(
                r#"{{"teams":[{{"teamId":"{OTHER_TEAM}","name":"Sales"}}]}}"#
            )))
            .await
            .unwrap();
        let n = store
            .import_directory(doc(&format!(
                r#"{{"users":[{{"userId":"{USER}","teamId":"{OTHER_TEAM}","name":"Anna"}}]}}"#
            )))
            .await
            .unwrap();
        assert_eq!(n.users, counts(1, 0, 0));
    }

    #[tokio::test]
    async fn an_invalid_document_is_refused_before_the_store_is_touched() {
        let (_dir, store) = fresh_store();
        let e = store
            .import_directory(doc(r#"{"teams":[{"teamId":"x","name":"R"}]}"#))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DirectoryImportError::Invalid(p) if p.len() == 1),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("the directory document has invalid entries:\n  teams[0]")
        );
        assert_eq!(rows(&store).await, [0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn two_doctors_may_swap_guids_but_not_take_a_kept_one() {
        let (_dir, store) = fresh_store();
        let two = |a: &str, b: &str| {
            doc(&format!(
                r#"{{"doctors":[{{"id":1,"guid":"{a}","fullName":"A"}},{{"id":2,"guid":"{b}","fullName":"B"}}]}}"#
            ))
        };
        store.import_directory(two(GUID, OTHER_GUID)).await.unwrap();
        let swapped = store.import_directory(two(OTHER_GUID, GUID)).await.unwrap();
        assert_eq!(swapped.doctors, counts(0, 2, 0));
        let one = store
            .directory_doctor(DoctorId::new(1).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one.guid.as_str(), OTHER_GUID);
        let by_guid = store
            .directory_doctor_by_guid(GUID.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_guid.id.get(), 2);

        let taken = store
            .import_directory(doc(&format!(
                r#"{{"doctors":[{{"id":3,"guid":"{GUID}","fullName":"C"}}]}}"#
            )))
            .await
            .unwrap_err();
        assert!(
            matches!(&taken, DirectoryImportError::Conflict(p) if p == &[format!(r#"doctors[0] 3: guid "{GUID}" is stored doctor 2's"#)]),
            "{taken:?}"
        );
        assert_eq!(rows(&store).await, [0, 0, 2, 0]);
    }

    #[tokio::test]
    async fn progress_counts_the_rows_written_up_to_the_last() {
        let (_dir, store) = fresh_store();
        let users: Vec<String> = (0..600)
            .map(|i| format!(r#"{{"userId":"{i:024x}","teamId":"{TEAM}","name":"U{i}"}}"#))
            .collect();
        let json = format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"R"}}],"users":[{}]}}"#,
            users.join(",")
        );
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        store
            .import_directory_with_progress(doc(&json), move |p| sink.lock().unwrap().push(p))
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        let written: Vec<usize> = seen.iter().map(|p| p.written).collect();
        assert_eq!(written, [256, 512, 601]);
        assert!(seen.iter().all(|p| p.total == 601));
        // Nothing to write the second time: no progress at all.
        let again = std::sync::Arc::new(std::sync::Mutex::new(0));
        let sink = again.clone();
        store
            .import_directory_with_progress(doc(&json), move |_| *sink.lock().unwrap() += 1)
            .await
            .unwrap();
        assert_eq!(*again.lock().unwrap(), 0);
    }

    #[tokio::test]
    async fn a_stored_value_that_is_not_the_directorys_spelling_is_an_error_naming_its_column() {
        #[derive(Debug, Clone, Copy)]
        enum Read {
            Anna,
            Doctors,
            Route,
        }
        let cases = [
            (
                "UPDATE directory_users SET team_id = upper(team_id)",
                Read::Anna,
                "team_id",
            ),
            (
                "UPDATE directory_users SET endpoint = 'PJSIP 1001'",
                Read::Anna,
                "endpoint",
            ),
            ("UPDATE directory_doctors SET id = -17", Read::Doctors, "id"),
            (
                "UPDATE directory_doctors SET guid = upper(guid)",
                Read::Doctors,
                "guid",
            ),
            (
                "UPDATE directory_doctors SET endpoint = '2001'",
                Read::Doctors,
                "endpoint",
            ),
            (
                "UPDATE directory_inbound SET thread_id = 'x'",
                Read::Route,
                "thread_id",
            ),
            (
                "UPDATE directory_inbound SET team_id = team_id || ' '",
                Read::Route,
                "team_id",
            ),
        ];
        for (sql, what, column) in cases {
            let (_dir, store) = fresh_store();
            store.import_directory(full()).await.unwrap();
            store
                .call(move |c| {
                    // The corruption breaks the references on purpose.
                    c.execute_batch(&format!(
                        "PRAGMA foreign_keys = OFF; {sql}; PRAGMA foreign_keys = ON"
                    ))?;
                    Ok(())
                })
                .await
                .unwrap();
            let read = match what {
                Read::Anna => store
                    .directory_user(USER.parse().unwrap())
                    .await
                    .map(|_| ()),
                Read::Doctors => {
                    store
                        .call(|c| {
                            let mut all = c.prepare(&format!(
                                "SELECT {DOCTOR_COLUMNS} FROM directory_doctors"
                            ))?;
                            let doctors = all.query_map([], doctor_row)?;
                            for d in doctors {
                                d?;
                            }
                            Ok(())
                        })
                        .await
                }
                Read::Route => store.inbound_route("+74951234567".into()).await.map(|_| ()),
            };
            match read {
                Err(StoreError::BadValue(bad)) => assert_eq!(bad.column, column, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}

//! The directory document (`medcall import directory FILE`, `PUT /admin/directory`):
//! teams, users, doctors and inbound routes, parsed, then validated whole before anything
//! is written, every problem named by its entry.
//!
//! Two steps, both pure. [`DirectoryDocument::validate`] checks what the document alone
//! can tell (each value's form, ids unique within the document). [`ValidDirectory::plan`]
//! then takes what the store holds of the same entries ([`StoredDirectory`], loaded by the
//! store in the write transaction) and decides: refused (a user naming a team that is
//! neither in the document nor stored, a doctor's GUID held by another stored doctor), or
//! which entries to insert, which to update and which are unchanged.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Deserialize;

use super::{
    DirectoryDoctor, DirectoryTeam, DirectoryUser, DoctorGuid, DoctorId, Endpoint, InboundNumber,
    InboundRoute, TeamId, ThreadId, UserId,
};

/// The longest name, role or speciality, in characters.
pub const MAX_TEXT: usize = 256;
/// At most this many problems are listed; a count of the others follows them.
pub const MAX_PROBLEMS: usize = 50;

/// The document as JSON. Every list is optional: a missing one has nothing to upsert.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectoryDocument {
    #[serde(default)]
    pub teams: Vec<TeamIn>,
    #[serde(default)]
    pub users: Vec<UserIn>,
    #[serde(default)]
    pub doctors: Vec<DoctorIn>,
    #[serde(default)]
    pub inbound: Vec<InboundIn>,
}

/// A team.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamIn {
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "333ccc134c0319001573485e")]
    pub team_id: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Reception"
    )]
    pub name: String,
}

/// A user: the team must be in the document or already stored.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserIn {
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "5b4458eb1b2b33001bf213bf")]
    pub user_id: String,
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "333ccc134c0319001573485e")]
    pub team_id: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Anna"
    )]
    pub name: String,
    /// The dial string (`TECH/resource`); absent, the configured dial template is used.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[!-.0-~]+/[!-~]+$",
        example = "PJSIP/1001"
    )]
    pub endpoint: Option<String>,
}

/// A doctor: `id` is the consultation APIs' `doctorId`, `guid` the booking API's `docGuid`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DoctorIn {
    #[serde(deserialize_with = "crate::json::whole_number")]
    #[schema(minimum = 1, example = 17)]
    pub id: i64,
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        example = "f05d7650-a2a0-49dc-99f1-bb57829bc46a"
    )]
    pub guid: String,
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "Петрова Мария Ивановна"
    )]
    pub full_name: String,
    /// May be empty (seed 004 answers it so).
    #[serde(default)]
    #[schema(
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "врач-терапевт"
    )]
    pub role: String,
    /// May be empty.
    #[serde(default)]
    #[schema(
        max_length = 256,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
        example = "терапия"
    )]
    pub speciality: String,
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[!-.0-~]+/[!-~]+$",
        example = "PJSIP/2001"
    )]
    pub endpoint: Option<String>,
}

/// A dialled number and the team's thread an inbound caller joins.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundIn {
    #[schema(
        pattern = "^\\+?[0-9]{1,31}$",
        max_length = 32,
        example = "74951234567"
    )]
    pub number: String,
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "333ccc134c0319001573485e")]
    pub team_id: String,
    #[schema(pattern = "^[0-9a-fA-F]{24}$", example = "5b0525134c0319001573485e")]
    pub thread_id: String,
}

/// The document, every value validated and every id unique within it, in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ValidDirectory {
    pub teams: Vec<DirectoryTeam>,
    pub users: Vec<DirectoryUser>,
    pub doctors: Vec<DirectoryDoctor>,
    pub inbound: Vec<InboundRoute>,
}

/// What the store holds of the document's entries, keyed as the document names them.
#[derive(Debug, Default, Clone)]
pub struct StoredDirectory {
    /// Each stored team the document defines or a user or route names.
    pub teams: HashMap<TeamId, DirectoryTeam>,
    pub users: HashMap<UserId, DirectoryUser>,
    pub doctors: HashMap<DoctorId, DirectoryDoctor>,
    /// For each GUID of the document's doctors, the stored doctor holding it.
    pub guid_holders: HashMap<DoctorGuid, DoctorId>,
    pub inbound: HashMap<InboundNumber, InboundRoute>,
}

/// How many entries of one kind an import inserted, changed, and found as they were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl UpsertCounts {
    /// Every entry of the kind the document held.
    pub fn total(self) -> usize {
        self.inserted + self.updated + self.unchanged
    }
}

/// An import's counts, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryCounts {
    pub teams: UpsertCounts,
    pub users: UpsertCounts,
    pub doctors: UpsertCounts,
    pub inbound: UpsertCounts,
}

/// What to write: only entries that are new or differ from the stored ones, in the order
/// they must be written (teams before the users and routes that name them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirectoryPlan {
    pub teams: Vec<DirectoryTeam>,
    pub users: Vec<DirectoryUser>,
    /// Stored doctors whose GUID changes: their old GUID is released before any doctor
    /// is written, so two doctors may swap GUIDs in one document.
    pub doctors_moving_guid: Vec<DoctorId>,
    pub doctors: Vec<DirectoryDoctor>,
    pub inbound: Vec<InboundRoute>,
    pub counts: DirectoryCounts,
}

impl DirectoryPlan {
    /// How many rows the plan writes (GUID releases not counted).
    pub fn writes(&self) -> usize {
        self.teams.len() + self.users.len() + self.doctors.len() + self.inbound.len()
    }
}

/// `kind[index] key`: how a problem names its entry. The key is quoted as Rust escapes it
/// (a CR in an id shows as `\r`) and cut at 40 characters.
fn entry(kind: &str, index: usize, key: &str) -> String {
    let mut shown: String = key.chars().take(40).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    format!("{kind}[{index}] {shown:?}")
}

/// `doctors[index] id`: a doctor is named by its integer id, unquoted.
fn doctor_entry(index: usize, id: i64) -> String {
    format!("doctors[{index}] {id}")
}

/// A name-like text: at most [`MAX_TEXT`] characters, no control characters, and when
/// `required`, not blank.
fn text_problem(field: &str, value: &str, required: bool) -> Option<String> {
    if required && value.trim().is_empty() {
        Some(format!("{field} must not be empty"))
    } else if value.chars().count() > MAX_TEXT {
        Some(format!("{field} must be at most {MAX_TEXT} characters"))
    } else if value.chars().any(char::is_control) {
        Some(format!("{field} must not contain control characters"))
    } else {
        None
    }
}

/// Collects problems, each prefixed by its entry's name.
#[derive(Default)]
struct Problems(Vec<String>, usize);

impl Problems {
    /// A problem between entries (the same key twice), not of one entry alone.
    fn push_duplicate(&mut self, what: &str, problem: impl std::fmt::Display) {
        self.push(what, problem);
        self.1 += 1;
    }

    /// Every problem recorded is a duplicate: the entries are each well formed.
    fn only_duplicates(&self) -> bool {
        !self.0.is_empty() && self.1 == self.0.len()
    }

    fn push(&mut self, what: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{what}: {problem}"));
    }

    /// Parses `value` as `T`, or records why not as `field`'s problem.
    fn parse<T: std::str::FromStr>(&mut self, what: &str, field: &str, value: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        value
            .parse()
            .map_err(|e| self.push(what, format!("{field} {e}")))
            .ok()
    }

    fn text(&mut self, what: &str, field: &str, value: &str, required: bool) {
        if let Some(p) = text_problem(field, value, required) {
            self.push(what, p);
        }
    }

    fn endpoint(&mut self, what: &str, value: Option<&str>) -> Option<Endpoint> {
        value.and_then(|v| self.parse(what, "endpoint", v))
    }

    /// `Ok(value)` when nothing was recorded, else every problem (at most
    /// [`MAX_PROBLEMS`], then a count of the rest).
    fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        let mut problems = self.0;
        if problems.is_empty() {
            return Ok(value);
        }
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(format!("… and {more} more problems"));
        }
        Err(problems)
    }
}

/// The first entry seen with each key; a later one with the same key is a problem
/// naming both.
struct FirstSeen<K>(HashMap<K, String>);

impl<K: std::hash::Hash + Eq> FirstSeen<K> {
    fn new() -> FirstSeen<K> {
        FirstSeen(HashMap::new())
    }

    fn check(&mut self, problems: &mut Problems, what: &str, field: &str, key: Option<K>) {
        let Some(key) = key else { return };
        match self.0.get(&key) {
            Some(first) => {
                problems.push_duplicate(what, format!("{field} is also that of {first}"));
            }
            None => {
                self.0.insert(key, what.to_string());
            }
        }
    }
}

impl DirectoryDocument {
    /// Parses the document from JSON; a malformed one is refused naming the place
    /// (`doctors[0].id: invalid type …`).
    ///
    /// # Errors
    /// The JSON is not a directory document.
    pub fn from_json(bytes: &[u8]) -> Result<DirectoryDocument, String> {
        // serde reads a struct from an array too (`[[…teams]]`); a document is an object.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the document must be a JSON object".to_string());
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path == "?" {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            }
        })
    }

    /// How many entries the document holds, of every kind.
    pub fn len(&self) -> usize {
        self.teams.len() + self.users.len() + self.doctors.len() + self.inbound.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Validates every entry and the uniqueness of ids within the document.
    ///
    /// # Errors
    /// Every problem found (at most [`MAX_PROBLEMS`]), each naming its entry.
    pub fn validate(self) -> Result<ValidDirectory, Vec<String>> {
        self.validate_classified().map_err(|(problems, _)| problems)
    }

    /// [`DirectoryDocument::validate`], saying with the problems whether they are only
    /// duplicates (each entry well formed, some key given twice): a conflict between
    /// entries, which no JSON Schema can spell, rather than a malformed document.
    ///
    /// # Errors
    /// As [`DirectoryDocument::validate`].
    pub fn validate_classified(self) -> Result<ValidDirectory, (Vec<String>, bool)> {
        let mut problems = Problems::default();
        let mut out = ValidDirectory::default();

        let mut seen_teams = FirstSeen::new();
        for (i, t) in self.teams.into_iter().enumerate() {
            let what = entry("teams", i, &t.team_id);
            let team: Option<TeamId> = problems.parse(&what, "teamId", &t.team_id);
            problems.text(&what, "name", &t.name, true);
            seen_teams.check(&mut problems, &what, "teamId", team.clone());
            if let Some(team) = team {
                out.teams.push(DirectoryTeam { team, name: t.name });
            }
        }

        let mut seen_users = FirstSeen::new();
        for (i, u) in self.users.into_iter().enumerate() {
            let what = entry("users", i, &u.user_id);
            let user: Option<UserId> = problems.parse(&what, "userId", &u.user_id);
            let team: Option<TeamId> = problems.parse(&what, "teamId", &u.team_id);
            problems.text(&what, "name", &u.name, true);
            let endpoint = problems.endpoint(&what, u.endpoint.as_deref());
            seen_users.check(&mut problems, &what, "userId", user.clone());
            if let (Some(user), Some(team)) = (user, team) {
                out.users.push(DirectoryUser {
                    user,
                    team,
                    name: u.name,
                    endpoint,
                });
            }
        }

        let mut seen_ids = FirstSeen::new();
        let mut seen_guids = FirstSeen::new();
        for (i, d) in self.doctors.into_iter().enumerate() {
            let what = doctor_entry(i, d.id);
            let id = DoctorId::new(d.id)
                .map_err(|e| problems.push(&what, format!("id {e}")))
                .ok();
            let guid: Option<DoctorGuid> = problems.parse(&what, "guid", &d.guid);
            problems.text(&what, "fullName", &d.full_name, true);
            problems.text(&what, "role", &d.role, false);
            problems.text(&what, "speciality", &d.speciality, false);
            let endpoint = problems.endpoint(&what, d.endpoint.as_deref());
            seen_ids.check(&mut problems, &what, "id", id);
            seen_guids.check(&mut problems, &what, "guid", guid.clone());
            if let (Some(id), Some(guid)) = (id, guid) {
                out.doctors.push(DirectoryDoctor {
                    id,
                    guid,
                    full_name: d.full_name,
                    role: d.role,
                    speciality: d.speciality,
                    endpoint,
                });
            }
        }

        let mut seen_numbers = FirstSeen::new();
        for (i, r) in self.inbound.into_iter().enumerate() {
            let what = entry("inbound", i, &r.number);
            let number: Option<InboundNumber> = problems.parse(&what, "number", &r.number);
            let team: Option<TeamId> = problems.parse(&what, "teamId", &r.team_id);
            let thread: Option<ThreadId> = problems.parse(&what, "threadId", &r.thread_id);
            seen_numbers.check(&mut problems, &what, "number", number.clone());
            if let (Some(number), Some(team), Some(thread)) = (number, team, thread) {
                out.inbound.push(InboundRoute {
                    number,
                    team,
                    thread,
                });
            }
        }
        let only_duplicates = problems.only_duplicates();
        problems.finish(out).map_err(|p| (p, only_duplicates))
    }
}

/// Whether a document's entry is new, differs from the stored one, or equals it.
fn compare<T: PartialEq>(new: &T, stored: Option<&T>, counts: &mut UpsertCounts) -> bool {
    match stored {
        None => {
            counts.inserted += 1;
            true
        }
        Some(old) if old == new => {
            counts.unchanged += 1;
            false
        }
        Some(_) => {
            counts.updated += 1;
            true
        }
    }
}

impl ValidDirectory {
    /// Every team the document's users and routes name, and every team it defines: the
    /// store loads what it holds of these into [`StoredDirectory::teams`].
    pub fn teams_named(&self) -> BTreeSet<TeamId> {
        self.teams
            .iter()
            .map(|t| &t.team)
            .chain(self.users.iter().map(|u| &u.team))
            .chain(self.inbound.iter().map(|r| &r.team))
            .cloned()
            .collect()
    }

    /// Decides the import against what the store holds.
    ///
    /// # Errors
    /// Every problem (at most [`MAX_PROBLEMS`]), each naming its entry: a user or route
    /// whose team is neither in the document nor stored, a doctor whose GUID is held by a
    /// stored doctor the document does not give another GUID.
    pub fn plan(self, stored: &StoredDirectory) -> Result<DirectoryPlan, Vec<String>> {
        let mut problems = Problems::default();
        let mut plan = DirectoryPlan::default();
        let defined: HashSet<&TeamId> = self.teams.iter().map(|t| &t.team).collect();
        let team_known = |team: &TeamId| defined.contains(team) || stored.teams.contains_key(team);
        let unknown_team = |team: &TeamId| {
            format!(
                "teamId {:?} is neither in the document nor stored",
                team.as_str()
            )
        };

        for (i, u) in self.users.iter().enumerate() {
            if !team_known(&u.team) {
                problems.push(&entry("users", i, u.user.as_str()), unknown_team(&u.team));
            }
        }
        for (i, r) in self.inbound.iter().enumerate() {
            if !team_known(&r.team) {
                problems.push(
                    &entry("inbound", i, r.number.as_str()),
                    unknown_team(&r.team),
                );
            }
        }
        let in_document: HashSet<DoctorId> = self.doctors.iter().map(|d| d.id).collect();
        for (i, d) in self.doctors.iter().enumerate() {
            match stored.guid_holders.get(&d.guid) {
                // The holder keeps its GUID unless the document gives it another one (the
                // document's GUIDs are unique, so a holder in it gets another one).
                Some(holder) if *holder != d.id && !in_document.contains(holder) => {
                    problems.push(
                        &doctor_entry(i, d.id.get()),
                        format!("guid {:?} is stored doctor {holder}'s", d.guid.as_str()),
                    );
                }
                _ => {}
            }
        }

        for t in self.teams {
            if compare(&t, stored.teams.get(&t.team), &mut plan.counts.teams) {
                plan.teams.push(t);
            }
        }
        for u in self.users {
            if compare(&u, stored.users.get(&u.user), &mut plan.counts.users) {
                plan.users.push(u);
            }
        }
        for d in self.doctors {
            let old = stored.doctors.get(&d.id);
            if old.is_some_and(|old| old.guid != d.guid) {
                plan.doctors_moving_guid.push(d.id);
            }
            if compare(&d, old, &mut plan.counts.doctors) {
                plan.doctors.push(d);
            }
        }
        for r in self.inbound {
            if compare(&r, stored.inbound.get(&r.number), &mut plan.counts.inbound) {
                plan.inbound.push(r);
            }
        }
        problems.finish(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAM: &str = "333ccc134c0319001573485e";
    const OTHER_TEAM: &str = "444ddd134c0319001573485e";
    const USER: &str = "5b4458eb1b2b33001bf213bf";
    const THREAD: &str = "5b0525134c0319001573485e";
    const GUID: &str = "f05d7650-a2a0-49dc-99f1-bb57829bc46a";
    const OTHER_GUID: &str = "c3c977af-c3b4-4517-9d57-50a6844ec660";

    fn parse(json: &str) -> DirectoryDocument {
        DirectoryDocument::from_json(json.as_bytes()).unwrap()
    }

    fn valid() -> ValidDirectory {
        parse(&format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"Reception"}}],
                "users":[{{"userId":"{USER}","teamId":"{TEAM}","name":"Anna","endpoint":"PJSIP/1001"}}],
                "doctors":[{{"id":17,"guid":"{GUID}","fullName":"Петрова М. И.","role":"терапевт","speciality":"терапия","endpoint":"PJSIP/2001"}}],
                "inbound":[{{"number":"74951234567","teamId":"{TEAM}","threadId":"{THREAD}"}}]}}"#
        ))
        .validate()
        .unwrap()
    }

    #[test]
    fn a_whole_document_validates_into_its_entries() {
        let v = valid();
        let team: TeamId = TEAM.parse().unwrap();
        assert_eq!(
            v.teams,
            [DirectoryTeam {
                team: team.clone(),
                name: "Reception".into()
            }]
        );
        assert_eq!(
            v.users,
            [DirectoryUser {
                user: USER.parse().unwrap(),
                team: team.clone(),
                name: "Anna".into(),
                endpoint: Some("PJSIP/1001".parse().unwrap()),
            }]
        );
        assert_eq!(
            v.doctors,
            [DirectoryDoctor {
                id: DoctorId::new(17).unwrap(),
                guid: GUID.parse().unwrap(),
                full_name: "Петрова М. И.".into(),
                role: "терапевт".into(),
                speciality: "терапия".into(),
                endpoint: Some("PJSIP/2001".parse().unwrap()),
            }]
        );
        assert_eq!(
            v.inbound,
            [InboundRoute {
                number: "74951234567".parse().unwrap(),
                team,
                thread: THREAD.parse().unwrap(),
            }]
        );
    }

    #[test]
    fn every_list_and_the_optional_fields_may_be_missing() {
        let v = parse("{}").validate().unwrap();
        assert_eq!(v, ValidDirectory::default());
        let v = parse(&format!(
            r#"{{"users":[{{"userId":"{USER}","teamId":"{TEAM}","name":"Anna","endpoint":null}}],
                "doctors":[{{"id":1,"guid":"{GUID}","fullName":"Петрова"}}]}}"#
        ))
        .validate()
        .unwrap();
        assert_eq!(v.users[0].endpoint, None);
        assert_eq!(
            (
                v.doctors[0].role.as_str(),
                v.doctors[0].speciality.as_str(),
                &v.doctors[0].endpoint
            ),
            ("", "", &None)
        );
    }

    #[test]
    fn ids_are_kept_in_lowercase() {
        let v = parse(&format!(
            r#"{{"teams":[{{"teamId":"{}","name":"R"}}],"doctors":[{{"id":1,"guid":"{}","fullName":"P"}}]}}"#,
            TEAM.to_uppercase(),
            GUID.to_uppercase()
        ))
        .validate()
        .unwrap();
        assert_eq!(v.teams[0].team.as_str(), TEAM);
        assert_eq!(v.doctors[0].guid.as_str(), GUID);
    }

    /// Each document holds one bad value among good ones; the refusal is exactly `message`.
    #[test]
    fn every_refusal_names_its_entry_and_the_reason() {
        let long = "я".repeat(MAX_TEXT + 1);
        let longest = "я".repeat(MAX_TEXT);
        let team = |id: &str, name: &str| format!(r#"{{"teamId":"{id}","name":"{name}"}}"#);
        let user = |id: &str, team: &str, endpoint: &str| {
            format!(
                r#"{{"userId":"{id}","teamId":"{team}","name":"Anna","endpoint":"{endpoint}"}}"#
            )
        };
        let doctor = |id: i64, guid: &str, name: &str, role: &str| {
            format!(r#"{{"id":{id},"guid":"{guid}","fullName":"{name}","role":"{role}"}}"#)
        };
        let route = |number: &str, team: &str, thread: &str| {
            format!(r#"{{"number":"{number}","teamId":"{team}","threadId":"{thread}"}}"#)
        };
        let good_team = team(TEAM, "Reception");
        let cases: Vec<(String, String)> = vec![
            (
                format!(r#"{{"teams":[{good_team},{}]}}"#, team("abc", "Sales")),
                r#"teams[1] "abc": teamId must be 24 hexadecimal digits, got 3 characters"#.into(),
            ),
            (
                format!(r#"{{"teams":[{}]}}"#, team(TEAM, "  ")),
                format!(r#"teams[0] "{TEAM}": name must not be empty"#),
            ),
            (
                format!(r#"{{"teams":[{}]}}"#, team(TEAM, &long)),
                format!(r#"teams[0] "{TEAM}": name must be at most 256 characters"#),
            ),
            (
                format!(r#"{{"teams":[{}]}}"#, team(TEAM, "Re\\u0007ception")),
                format!(r#"teams[0] "{TEAM}": name must not contain control characters"#),
            ),
            (
                format!(r#"{{"teams":[{good_team},{}]}}"#, team(&TEAM.to_uppercase(), "Again")),
                format!(
                    r#"teams[1] "{}": teamId is also that of teams[0] "{TEAM}""#,
                    TEAM.to_uppercase()
                ),
            ),
            (
                format!(r#"{{"users":[{}]}}"#, user("5b4458eb1b2b33001bf213b\\r", TEAM, "PJSIP/1")),
                r#"users[0] "5b4458eb1b2b33001bf213b\r": userId must be 24 hexadecimal digits, found '\r'"#
                    .into(),
            ),
            (
                format!(r#"{{"users":[{}]}}"#, user(USER, "nope", "PJSIP/1")),
                format!(
                    r#"users[0] "{USER}": teamId must be 24 hexadecimal digits, found 'n'"#
                ),
            ),
            (
                format!(r#"{{"users":[{}]}}"#, user(USER, TEAM, "1001")),
                format!(r#"users[0] "{USER}": endpoint must be TECH/resource, e.g. PJSIP/1001"#),
            ),
            (
                format!(r#"{{"users":[{}]}}"#, user(USER, TEAM, "PJSIP/10\\n01")),
                format!(
                    r#"users[0] "{USER}": endpoint must not contain control characters or spaces"#
                ),
            ),
            (
                format!(
                    r#"{{"teams":[{good_team}],"users":[{},{}]}}"#,
                    user(USER, TEAM, "PJSIP/1"),
                    user(USER, TEAM, "PJSIP/2")
                ),
                format!(r#"users[1] "{USER}": userId is also that of users[0] "{USER}""#),
            ),
            (
                format!(r#"{{"users":[{{"userId":"{USER}","teamId":"{TEAM}","name":""}}]}}"#),
                format!(r#"users[0] "{USER}": name must not be empty"#),
            ),
            (
                format!(r#"{{"doctors":[{}]}}"#, doctor(0, GUID, "P", "")),
                r#"doctors[0] 0: id must be a positive integer, got 0"#.into(),
            ),
            (
                format!(r#"{{"doctors":[{}]}}"#, doctor(5, "not-a-guid", "P", "")),
                r#"doctors[0] 5: guid must be a GUID (8-4-4-4-12 hexadecimal digits)"#.into(),
            ),
            (
                format!(
                    r#"{{"doctors":[{}]}}"#,
                    doctor(5, "00000000-0000-0000-0000-000000000000", "P", "")
                ),
                r#"doctors[0] 5: guid must not be the nil GUID, which names no doctor"#.into(),
            ),
            (
                format!(r#"{{"doctors":[{}]}}"#, doctor(5, GUID, "", "")),
                r#"doctors[0] 5: fullName must not be empty"#.into(),
            ),
            (
                format!(r#"{{"doctors":[{}]}}"#, doctor(5, GUID, "P", &long)),
                r#"doctors[0] 5: role must be at most 256 characters"#.into(),
            ),
            (
                format!(
                    r#"{{"doctors":[{{"id":5,"guid":"{GUID}","fullName":"P","speciality":"a\tb"}}]}}"#
                ),
                r#"doctors[0] 5: speciality must not contain control characters"#.into(),
            ),
            (
                format!(
                    r#"{{"doctors":[{{"id":5,"guid":"{GUID}","fullName":"P","endpoint":"PJSIP/"}}]}}"#
                ),
                r#"doctors[0] 5: endpoint must be TECH/resource, e.g. PJSIP/1001"#.into(),
            ),
            (
                format!(
                    r#"{{"doctors":[{},{}]}}"#,
                    doctor(5, GUID, "P", ""),
                    doctor(5, OTHER_GUID, "Q", "")
                ),
                r#"doctors[1] 5: id is also that of doctors[0] 5"#.into(),
            ),
            (
                format!(
                    r#"{{"doctors":[{},{}]}}"#,
                    doctor(5, GUID, "P", ""),
                    doctor(6, &GUID.to_uppercase(), "Q", "")
                ),
                r#"doctors[1] 6: guid is also that of doctors[0] 5"#.into(),
            ),
            (
                format!(r#"{{"inbound":[{}]}}"#, route("7495 123", TEAM, THREAD)),
                r#"inbound[0] "7495 123": number must be digits with an optional leading +"#
                    .into(),
            ),
            (
                format!(r#"{{"inbound":[{}]}}"#, route(&"7".repeat(33), TEAM, THREAD)),
                format!(
                    r#"inbound[0] "{}": number must be 1–32 characters: digits with an optional leading +"#,
                    "7".repeat(33)
                ),
            ),
            (
                format!(r#"{{"inbound":[{}]}}"#, route("74951234567", TEAM, "abcde")),
                r#"inbound[0] "74951234567": threadId must be 24 hexadecimal digits, got 5 characters"#
                    .into(),
            ),
            (
                format!(
                    r#"{{"teams":[{good_team}],"inbound":[{},{}]}}"#,
                    route("74951234567", TEAM, THREAD),
                    route("74951234567", TEAM, THREAD)
                ),
                r#"inbound[1] "74951234567": number is also that of inbound[0] "74951234567""#
                    .into(),
            ),
        ];
        for (doc, message) in cases {
            let problems = parse(&doc).validate().unwrap_err();
            assert_eq!(problems, [message], "{doc}");
        }
        // The limits themselves are accepted.
        parse(&format!(r#"{{"teams":[{}]}}"#, team(TEAM, &longest)))
            .validate()
            .unwrap();
    }

    #[test]
    fn every_problem_of_a_document_is_listed_not_only_the_first() {
        let problems = parse(&format!(
            r#"{{"teams":[{{"teamId":"x","name":""}}],
                "users":[{{"userId":"{USER}","teamId":"ab","name":"Anna"}}]}}"#
        ))
        .validate()
        .unwrap_err();
        assert_eq!(
            problems,
            [
                r#"teams[0] "x": teamId must be 24 hexadecimal digits, found 'x'"#,
                r#"teams[0] "x": name must not be empty"#,
                &format!(
                    r#"users[0] "{USER}": teamId must be 24 hexadecimal digits, got 2 characters"#
                ),
            ]
        );
    }

    #[test]
    fn at_most_fifty_problems_are_listed_then_a_count_of_the_rest() {
        let teams: Vec<String> = (0..60)
            .map(|i| format!(r#"{{"teamId":"t{i}","name":"T"}}"#))
            .collect();
        let problems = parse(&format!(r#"{{"teams":[{}]}}"#, teams.join(",")))
            .validate()
            .unwrap_err();
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(problems.last().unwrap(), "… and 10 more problems");
    }

    #[test]
    fn a_malformed_document_is_refused_naming_the_place() {
        let cases = [
            (r#"{"teamz":[]}"#, "teamz: unknown field `teamz`"),
            (
                r#"{"doctors":[{"id":"17","guid":"x","fullName":"P"}]}"#,
                "doctors[0].id: invalid type: string \"17\"",
            ),
            (
                r#"{"users":[{"userId":"a","teamId":"b","name":"A","phone":"1"}]}"#,
                "users[0].phone: unknown field `phone`",
            ),
            (
                r#"{"teams":[{"teamId":"a"}]}"#,
                "teams[0]: missing field `name`",
            ),
            ("[]", "the document must be a JSON object"),
            (" \n[{}]", "the document must be a JSON object"),
            ("{", "EOF while parsing"),
        ];
        for (json, start) in cases {
            let e = DirectoryDocument::from_json(json.as_bytes()).unwrap_err();
            assert!(e.starts_with(start), "{json}: {e}");
        }
    }

    #[test]
    fn a_user_or_route_whose_team_is_neither_in_the_document_nor_stored_is_refused() {
        let doc = parse(&format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"R"}}],
                "users":[{{"userId":"{USER}","teamId":"{OTHER_TEAM}","name":"Anna"}}],
                "inbound":[{{"number":"+1","teamId":"{OTHER_TEAM}","threadId":"{THREAD}"}}]}}"#
        ))
        .validate()
        .unwrap();
        let named: Vec<String> = doc.teams_named().iter().map(|t| t.to_string()).collect();
        assert_eq!(named, [TEAM, OTHER_TEAM]);
        let problems = doc.clone().plan(&StoredDirectory::default()).unwrap_err();
        assert_eq!(
            problems,
            [
                format!(
                    r#"users[0] "{USER}": teamId "{OTHER_TEAM}" is neither in the document nor stored"#
                ),
                format!(
                    r#"inbound[0] "+1": teamId "{OTHER_TEAM}" is neither in the document nor stored"#
                ),
            ]
        );
        // Stored, the team is enough.
        let other: TeamId = OTHER_TEAM.parse().unwrap();
        let mut stored = StoredDirectory::default();
        stored.teams.insert(
            other.clone(),
            DirectoryTeam {
                team: other,
                name: "Sales".into(),
            },
        );
        let plan = doc.plan(&stored).unwrap();
        assert_eq!(plan.counts.users.inserted, 1);
        assert_eq!(plan.counts.inbound.inserted, 1);
    }

    /// What the store would hold after writing `plan` over `stored`.
    fn stored_after(v: &ValidDirectory) -> StoredDirectory {
        let mut s = StoredDirectory::default();
        for t in &v.teams {
            s.teams.insert(t.team.clone(), t.clone());
        }
        for u in &v.users {
            s.users.insert(u.user.clone(), u.clone());
        }
        for d in &v.doctors {
            s.doctors.insert(d.id, d.clone());
            s.guid_holders.insert(d.guid.clone(), d.id);
        }
        for r in &v.inbound {
            s.inbound.insert(r.number.clone(), r.clone());
        }
        s
    }

    #[test]
    fn a_new_entry_is_inserted_an_equal_one_unchanged_and_a_different_one_updated() {
        let first = valid().plan(&StoredDirectory::default()).unwrap();
        let one_new = UpsertCounts {
            inserted: 1,
            ..UpsertCounts::default()
        };
        assert_eq!(
            first.counts,
            DirectoryCounts {
                teams: one_new,
                users: one_new,
                doctors: one_new,
                inbound: one_new
            }
        );
        assert_eq!(first.writes(), 4);

        let stored = stored_after(&valid());
        let again = valid().plan(&stored).unwrap();
        assert_eq!(again.writes(), 0);
        assert_eq!(again.counts.users.unchanged, 1);
        assert_eq!(again.counts.doctors.total(), 1);

        let mut changed = valid();
        changed.users[0].endpoint = None;
        changed.doctors[0].speciality = "кардиология".into();
        let plan = changed.clone().plan(&stored).unwrap();
        assert_eq!(plan.users, changed.users);
        assert_eq!(plan.doctors, changed.doctors);
        assert_eq!(plan.counts.users.updated, 1);
        assert_eq!(plan.counts.doctors.updated, 1);
        assert_eq!(plan.counts.teams.unchanged, 1);
        assert!(plan.teams.is_empty() && plan.inbound.is_empty());
        assert!(plan.doctors_moving_guid.is_empty(), "the GUID stayed");
    }

    #[test]
    fn a_guid_held_by_another_stored_doctor_is_refused_unless_that_doctor_moves_too() {
        let stored = stored_after(&valid()); // doctor 17 holds GUID
        let doc = |json: &str| parse(json).validate().unwrap();
        let taken = doc(&format!(
            r#"{{"doctors":[{{"id":18,"guid":"{GUID}","fullName":"Q"}}]}}"#
        ));
        assert_eq!(
            taken.plan(&stored).unwrap_err(),
            [format!(
                r#"doctors[0] 18: guid "{GUID}" is stored doctor 17's"#
            )]
        );
        // 17 gives its GUID to 18 in the same document: 17's is released first.
        let swap = doc(&format!(
            r#"{{"doctors":[{{"id":18,"guid":"{GUID}","fullName":"Q"}},
                            {{"id":17,"guid":"{OTHER_GUID}","fullName":"Петрова М. И.","role":"терапевт","speciality":"терапия","endpoint":"PJSIP/2001"}}]}}"#
        ));
        let plan = swap.plan(&stored).unwrap();
        assert_eq!(plan.doctors_moving_guid, [DoctorId::new(17).unwrap()]);
        assert_eq!(
            plan.counts.doctors,
            UpsertCounts {
                inserted: 1,
                updated: 1,
                unchanged: 0
            }
        );
    }

    #[test]
    fn a_document_refused_only_for_keys_given_twice_is_a_conflict_not_malformed() {
        let twice = format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"A"}},{{"teamId":"{TEAM}","name":"B"}}]}}"#
        );
        let (problems, only_duplicates) = parse(&twice).validate_classified().unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(only_duplicates);
        let also_bad = format!(
            r#"{{"teams":[{{"teamId":"{TEAM}","name":"A"}},{{"teamId":"{TEAM}","name":""}}]}}"#
        );
        let (problems, only_duplicates) = parse(&also_bad).validate_classified().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(!only_duplicates);
        assert!(parse("{}").validate_classified().is_ok());
    }
}

-- The directory (SPEC §8): teams, users, doctors, and the dialled numbers that route an
-- inbound caller to a team's thread. Ids are kept as the directory writes them: 24
-- lowercase hex digits, doctors' GUIDs in lowercase. Rows are upserted by the import,
-- never deleted by it; updated_at is when the row last changed.

CREATE TABLE directory_teams (
    team_id    TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE directory_users (
    user_id    TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES directory_teams (team_id),
    name       TEXT NOT NULL,
    endpoint   TEXT,                      -- NULL: dialled through the dial template
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX directory_users_team ON directory_users (team_id);

CREATE TABLE directory_doctors (
    id         INTEGER PRIMARY KEY,       -- the consultation APIs' doctorId
    guid       TEXT NOT NULL UNIQUE,      -- the booking API's docGuid
    full_name  TEXT NOT NULL,
    role       TEXT NOT NULL,             -- may be empty
    speciality TEXT NOT NULL,             -- may be empty
    endpoint   TEXT,
    updated_at TEXT NOT NULL
);

CREATE TABLE directory_inbound (
    number     TEXT PRIMARY KEY,          -- the dialled number, as the dialplan hands it over
    team_id    TEXT NOT NULL REFERENCES directory_teams (team_id),
    thread_id  TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

-- Conversation calls (seed 002): one row per call of a thread, one per leg, each
-- written whole in its latest state by the conference engine's records.
CREATE TABLE conference_calls (
    call_key     TEXT PRIMARY KEY,
    pbx          TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    team_id      TEXT NOT NULL,
    direction    TEXT NOT NULL,
    phase        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    result       TEXT,
    dialog_ms    INTEGER NOT NULL,
    dialog_since TEXT,
    next_leg     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX conference_calls_by_thread ON conference_calls (thread_id, started_ms);
-- At most one call of a thread is not ended: the engine decides it, the schema keeps it.
CREATE UNIQUE INDEX conference_calls_one_open ON conference_calls (thread_id) WHERE phase <> 'ended';

CREATE TABLE conference_legs (
    call_key       TEXT NOT NULL REFERENCES conference_calls (call_key),
    number         INTEGER NOT NULL,
    role           TEXT NOT NULL,
    user_id        TEXT,
    uniqueid       TEXT NOT NULL,
    other_uniqueid TEXT,
    channel        TEXT,
    dial           TEXT NOT NULL,
    state          TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    answered_at    TEXT,
    joined_at      TEXT,
    ended_at       TEXT,
    end_reason     TEXT,
    hangup_cause   INTEGER,
    PRIMARY KEY (call_key, number)
) WITHOUT ROWID;
CREATE INDEX conference_legs_by_uniqueid ON conference_legs (uniqueid);

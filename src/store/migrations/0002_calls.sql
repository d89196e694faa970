-- Calls as the PBX sees them (SPEC §9), written by the call tracker.

CREATE TABLE calls (
    id         INTEGER PRIMARY KEY,
    pbx        TEXT NOT NULL,
    linkedid   TEXT NOT NULL,
    started_at TEXT NOT NULL,           -- RFC 3339 UTC, microseconds
    ended_at   TEXT,                    -- NULL while active
    UNIQUE (pbx, linkedid)
);
CREATE INDEX calls_started ON calls (started_at DESC);
CREATE INDEX calls_active ON calls (started_at DESC) WHERE ended_at IS NULL;

CREATE TABLE legs (
    id                INTEGER PRIMARY KEY,
    call_id           INTEGER NOT NULL REFERENCES calls (id),
    pbx               TEXT NOT NULL,
    uniqueid          TEXT NOT NULL,
    channel           TEXT NOT NULL,
    caller_num        TEXT,
    caller_name       TEXT,
    connected_num     TEXT,
    connected_name    TEXT,
    state             TEXT,
    account_code      TEXT,
    context           TEXT,
    exten             TEXT,
    bridge_id         TEXT,
    conference        TEXT,
    variables         TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at        TEXT,
    answered_at       TEXT,
    ended_at          TEXT,
    hangup_cause      INTEGER,
    hangup_cause_text TEXT,
    end_reason        TEXT,                          -- hangup | pbx-gap
    originate_reason  INTEGER,
    adopted           INTEGER NOT NULL DEFAULT 0,
    UNIQUE (pbx, uniqueid)
);
CREATE INDEX legs_call ON legs (call_id);
CREATE INDEX legs_active ON legs (pbx) WHERE ended_at IS NULL;

CREATE TABLE call_events (
    id       INTEGER PRIMARY KEY,
    call_id  INTEGER REFERENCES calls (id),
    pbx      TEXT NOT NULL,
    uniqueid TEXT,
    at       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '{}'   -- JSON object
);
CREATE INDEX call_events_call ON call_events (call_id, id);

CREATE TABLE conferences (
    id         INTEGER PRIMARY KEY,
    pbx        TEXT NOT NULL,
    name       TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    end_reason TEXT
);
-- One live conference per name and PBX; ended ones are history.
CREATE UNIQUE INDEX conferences_live ON conferences (pbx, name) WHERE ended_at IS NULL;

-- Call detail records from both sources in one place: AMI `Event: Cdr` (source 'ami')
-- and the CRM's POST /api/events/callDetailRecord (source 'api', keyed by event_id).
CREATE TABLE call_detail_records (
    id               INTEGER PRIMARY KEY,
    source           TEXT NOT NULL,            -- ami | api
    event_id         INTEGER UNIQUE,           -- api: the CRM's event id (idempotency key)
    call_id          INTEGER REFERENCES calls (id),
    pbx              TEXT,
    uniqueid         TEXT,
    phone            TEXT,
    extension        TEXT,
    path             TEXT,                     -- relative to the recordings root
    call_at          TEXT,
    type             TEXT,                     -- incoming | outgoing
    duration         INTEGER,
    billable_seconds INTEGER,
    disposition      TEXT,
    received_at      TEXT NOT NULL,
    raw              TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX call_detail_records_call ON call_detail_records (call_id);

CREATE TABLE pbx_gaps (
    id              INTEGER PRIMARY KEY,
    pbx             TEXT NOT NULL,
    disconnected_at TEXT,
    reconnected_at  TEXT NOT NULL,
    legs_closed     INTEGER NOT NULL,
    legs_adopted    INTEGER NOT NULL
);

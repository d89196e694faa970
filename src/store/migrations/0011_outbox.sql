-- The webhook outbox (SPEC §4.6): one row per notification of a consultation's status
-- change, written in the same transaction as the change, delivered by the outbox worker
-- in per-consultation order. Only a consultation's oldest pending row is ever due: its
-- later rows wait for it to be delivered or given up. A re-send is a new row with the
-- same event id at the end of its consultation's order.

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL,           -- the same on every attempt and re-send
    consultation_id  INTEGER NOT NULL,
    url              TEXT NOT NULL,
    status           TEXT NOT NULL,           -- the status word it changed to
    changed_at       TEXT NOT NULL,
    created_at       TEXT NOT NULL,           -- the give-up window starts here
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'gave_up')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,                    -- pending only
    last_error       TEXT,
    finished_at      TEXT,
    resend_of        INTEGER REFERENCES outbox (id)
);
-- A consultation's oldest pending notification, and the due ones, among pending rows only.
CREATE INDEX outbox_pending ON outbox (consultation_id, id) WHERE state = 'pending';
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_consultation ON outbox (consultation_id, id);

CREATE TABLE outbox_attempts (
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    n           INTEGER NOT NULL,
    at          TEXT NOT NULL,
    http_status INTEGER,                      -- the answer's status, or NULL
    error       TEXT,                         -- why there was no answer
    elapsed_ms  INTEGER NOT NULL,
    PRIMARY KEY (outbox_id, n)
) WITHOUT ROWID;

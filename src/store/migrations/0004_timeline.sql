-- A call's timeline as the tracker writes it: one row per call per ingest batch, holding
-- that batch's entries in order as a JSON array of {"at", "uniqueid", "kind", "detail"}.
-- A busy PBX sends a dozen events per call within milliseconds; one row each would make
-- the B-tree insert, not the event, the unit of cost.
CREATE TABLE call_timeline (
    id       INTEGER PRIMARY KEY,
    call_id  INTEGER NOT NULL REFERENCES calls (id),
    pbx      TEXT NOT NULL,
    first_at TEXT NOT NULL,
    last_at  TEXT NOT NULL,
    entries  TEXT NOT NULL              -- JSON array
);
CREATE INDEX call_timeline_call ON call_timeline (call_id, id);
CREATE INDEX call_timeline_pbx_last ON call_timeline (pbx, last_at);

-- call_events keeps what is not (yet) tied to a call: AGI session entries, resolved
-- through their leg when read, and events of channels the tracker never saw.
CREATE INDEX call_events_unlinked ON call_events (uniqueid) WHERE call_id IS NULL;

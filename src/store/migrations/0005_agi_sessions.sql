-- FastAGI sessions in the call timeline: one row per session holding both its start and
-- its end (shown as `AgiSessionStart` / `AgiSessionEnd` entries), found through the leg
-- whose uniqueid it names when the call is read, so a session written before AMI
-- reported its leg is not lost. Two `call_events` rows per session (each with two index
-- entries and a lookup of the leg) were most of what a session cost medcall.
-- A long session's row is written at its start and its `ended_at` set when it ends; a
-- session cut by its deadline or by shutdown keeps `ended_at` NULL. `started_at` is
-- NULL only when the start entry was dropped (the session log's queue was full).
-- Older sessions stay in `call_events` and are still read from there.
CREATE TABLE agi_sessions (
    id         INTEGER PRIMARY KEY,
    pbx        TEXT NOT NULL,
    uniqueid   TEXT NOT NULL,
    started_at TEXT,
    ended_at   TEXT,
    detail     TEXT NOT NULL DEFAULT '{}'   -- JSON object: route, path, channel
);
CREATE INDEX agi_sessions_uniqueid ON agi_sessions (uniqueid);

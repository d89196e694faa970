-- Sound in a thread's call (seed 002, part 2).
-- A helper leg's medium: a player's file (content sha256), a stream's AudioSocket uuid.
ALTER TABLE conference_legs ADD COLUMN media TEXT;

-- Conference recordings: the engine writes the columns up to `error`, whole, in their
-- latest state; the finaliser writes the file's facts once Asterisk's WAV is final.
CREATE TABLE conference_recordings (
    call_key     TEXT NOT NULL REFERENCES conference_calls (call_key),
    number       INTEGER NOT NULL,
    token        TEXT NOT NULL UNIQUE,
    state        TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    stopped_at   TEXT,
    error        TEXT,
    -- the finaliser's: set together once the file is final
    final_at     TEXT,
    size         INTEGER,
    sha256       TEXT,
    duration_ms  INTEGER,
    final_error  TEXT,
    PRIMARY KEY (call_key, number)
) WITHOUT ROWID;
-- Stopped recordings the finaliser has not described yet (after a restart too).
CREATE INDEX conference_recordings_unfinished ON conference_recordings (state)
    WHERE final_at IS NULL AND final_error IS NULL;

-- Files fetched for `call.audio/play`, by content: what the timeline shows of a play.
CREATE TABLE media_files (
    sha256       TEXT PRIMARY KEY,
    source_url   TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    created_at   TEXT NOT NULL
) WITHOUT ROWID;

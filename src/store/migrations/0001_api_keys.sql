-- API keys made by the daemon itself (the first-start admin key). Keys from the config
-- file are not stored here. Only the SHA-256 of a key is ever kept.
CREATE TABLE api_keys (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,
    scopes     TEXT NOT NULL,  -- JSON array of scope names
    teams      TEXT NOT NULL,  -- JSON array of team ids; empty = all
    origin     TEXT NOT NULL,  -- 'first-start', …
    created_at TEXT NOT NULL   -- RFC 3339 UTC
);

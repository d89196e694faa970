-- The CRM's data (seed 003): clients with ordered phones, contracts with ordered phones,
-- requests (заявки), inbound calls given a medcall call id, and the events the CRM reads.

CREATE TABLE clients (
    id         INTEGER PRIMARY KEY,       -- the CRM's client id
    full_name  TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE client_phones (
    client_id INTEGER NOT NULL REFERENCES clients (id),
    position  INTEGER NOT NULL,           -- 0-based order
    phone     TEXT NOT NULL,              -- normalised 7XXXXXXXXXX
    PRIMARY KEY (client_id, position)
) WITHOUT ROWID;
CREATE INDEX client_phones_phone ON client_phones (phone);

CREATE TABLE contracts (
    id        INTEGER PRIMARY KEY,        -- the contract number
    client_id INTEGER REFERENCES clients (id)
);

CREATE TABLE contract_phones (
    contract_id INTEGER NOT NULL REFERENCES contracts (id),
    position    INTEGER NOT NULL,
    phone       TEXT NOT NULL,
    PRIMARY KEY (contract_id, position)
) WITHOUT ROWID;

CREATE TABLE requests (
    id         INTEGER PRIMARY KEY,
    source     TEXT NOT NULL,             -- text | call
    source_id  INTEGER NOT NULL,          -- the CRM's text lead id, or medcall's call id
    client_id  INTEGER REFERENCES clients (id),
    status     TEXT NOT NULL DEFAULT 'open',  -- open | closed
    created_at TEXT NOT NULL,
    arrived_at TEXT,
    UNIQUE (source, source_id)
);
CREATE INDEX requests_open_by_client ON requests (client_id) WHERE status = 'open';

-- An inbound call as the `inbound` FastAGI route saw it. Its id is the call's id
-- (calls.id), the medcall call id the dialplan gets as MEDCALL_CALL_ID.
CREATE TABLE inbound_calls (
    call_id     INTEGER PRIMARY KEY REFERENCES calls (id),
    uniqueid    TEXT NOT NULL,
    caller      TEXT NOT NULL,            -- as the PBX gave it
    caller_phone TEXT,                    -- normalised, when it is a Russian number
    dialed      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- What happened for the CRM: an incoming call processed by call_asterisk.
CREATE TABLE crm_events (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,             -- incoming-call
    call_id    INTEGER NOT NULL REFERENCES calls (id),
    client_id  INTEGER REFERENCES clients (id),
    request_id INTEGER REFERENCES requests (id),
    created_at TEXT NOT NULL,
    UNIQUE (kind, call_id)
);

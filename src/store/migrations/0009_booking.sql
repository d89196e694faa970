-- Booking a doctor's timetable cell (seed 004; SPEC §7, §8).
-- The schedule (LPUs, cells, patients) is upserted by the schedule import, never deleted
-- by it. Tickets and their history are medcall's own: the import never touches them, and
-- `booked_count` (medcall's appointments of a cell) and `booking_cell_holds` (its tickets
-- stored as held) are kept apart from the document's `used_count` (places taken outside
-- medcall) so a re-import cannot undo a booking. The live holds of a cell are its
-- stored holds less those whose time is up and the sweeper has not written down yet (an
-- index range over the lapsed holds only): the capacity check never counts a cell's
-- every hold.
--
-- Every table a reservation writes grows at its end, so a group commit of many
-- reservations dirties few pages: ticket GUIDs are time-ordered (UUID version 7), history
-- rows follow their ticket, replays are keyed by their time first, and the per-cell hold
-- counts live in a narrow table of their own rather than in the wide cell rows.

CREATE TABLE booking_lpus (
    guid                   TEXT PRIMARY KEY,   -- lowercase GUID
    is_children_polyclinic INTEGER NOT NULL,   -- 0/1: no ADULT bookings (4005)
    utc_offset_minutes     INTEGER NOT NULL,   -- the LPU's local time: answers, `num` days
    document               TEXT NOT NULL,      -- the seed's `lpu` object (JSON), as answered
    updated_at             TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE booking_cells (
    guid                TEXT PRIMARY KEY,      -- lowercase GUID
    lpu_guid            TEXT NOT NULL REFERENCES booking_lpus (guid),
    doc_guid            TEXT NOT NULL REFERENCES directory_doctors (guid),
    begin_time          TEXT NOT NULL,         -- RFC 3339 with the document's offset
    end_time            TEXT NOT NULL,
    begin_utc           TEXT NOT NULL,         -- StoredTime of begin_time: "in the past" (4009)
    plan_count          INTEGER NOT NULL,
    used_count          INTEGER NOT NULL,      -- the document's: taken outside medcall
    booked_count        INTEGER NOT NULL DEFAULT 0, -- medcall's appointments (confirm +1, cancel -1)
    room                TEXT NOT NULL,
    flat                INTEGER NOT NULL,
    busy_type           TEXT NOT NULL,         -- JSON {name, type, code}
    uchastok_num        TEXT NOT NULL,
    age_categories      INTEGER NOT NULL,      -- bit mask: 1 CHILD, 2 TEEN, 4 ADULT (4029)
    dispensary_required INTEGER NOT NULL,      -- 0/1: only patients on the register (4007)
    updated_at          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX booking_cells_lpu ON booking_cells (lpu_guid);

CREATE TABLE booking_patients (
    policy_number          TEXT PRIMARY KEY,
    birth_date             TEXT NOT NULL,      -- YYYY-MM-DD
    full_name              TEXT NOT NULL,
    self_booking_forbidden INTEGER NOT NULL,   -- 0/1 (4007)
    dispensary             TEXT NOT NULL,      -- JSON array of specialities registered for
    updated_at             TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE booking_tickets (
    guid          TEXT PRIMARY KEY,
    lpu_guid      TEXT NOT NULL REFERENCES booking_lpus (guid),
    cell_guid     TEXT NOT NULL REFERENCES booking_cells (guid),
    client_id     TEXT NOT NULL,
    num           TEXT NOT NULL,
    state         TEXT NOT NULL,               -- held | appointment | cancelled | expired
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,               -- when the hold lapses (read-time check)
    policy_number TEXT,                        -- the patient, once confirmed
    patient_name  TEXT,
    birth_date    TEXT
) WITHOUT ROWID;
-- The sweeper, and the capacity check's lapsed holds: holds by when they lapse.
CREATE INDEX booking_tickets_holds ON booking_tickets (expires_at) WHERE state = 'held';

-- A cell's tickets in state 'held' (lapsed or not); its appointments are `booked_count`.
CREATE TABLE booking_cell_holds (
    cell_guid TEXT PRIMARY KEY REFERENCES booking_cells (guid),
    held      INTEGER NOT NULL
) WITHOUT ROWID;
-- 4008: a patient's appointments.
CREATE INDEX booking_tickets_patient ON booking_tickets (policy_number)
    WHERE state = 'appointment';

CREATE TABLE booking_history (
    ticket_guid TEXT NOT NULL REFERENCES booking_tickets (guid),
    seq         INTEGER NOT NULL,
    element     TEXT NOT NULL,
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL,
    editor      TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (ticket_guid, seq)
) WITHOUT ROWID;

-- `num`: the per-LPU, per-day sequence (the day of the appointment, LPU local time).
CREATE TABLE booking_numbers (
    lpu_guid TEXT NOT NULL,
    day      TEXT NOT NULL,                    -- YYYY-MM-DD
    last     INTEGER NOT NULL,
    PRIMARY KEY (lpu_guid, day)
) WITHOUT ROWID;

-- Signed requests already answered: the same request again gets the same answer.
-- `keep_until` follows from the request's signed timestamp (past its window the request
-- is refused as stale anyway), so a replay has the same key, and new rows go to the end.
CREATE TABLE booking_replays (
    keep_until TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    signature  TEXT NOT NULL,
    status     INTEGER NOT NULL,
    body       BLOB NOT NULL,
    PRIMARY KEY (keep_until, client_id, signature)
) WITHOUT ROWID;

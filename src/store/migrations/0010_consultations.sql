-- Telemedicine consultations (seeds 000 and 001; SPEC §4) and the durable scheduler.
--
-- Both kinds share one table. `status` is the status's rank in lifecycle order
-- (consultation::model::Status::rank): `order=Status` sorts by it, and it is narrow in
-- the indexes. Every documented get-all filter and order is answered from an index:
-- (kind, created) for no filter, (kind, status, created) for statuses (one range per
-- status, merged), and the same two with `video` for voip's videoSupport. `totalCount`
-- is read from `consultation_counts`, kept by triggers in the same transaction as every
-- insert and status change, so counting a million rows is a sum of at most 20 rows.

CREATE TABLE consultations (
    id                 INTEGER PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('voip', 'callback')),
    doctor_id          INTEGER NOT NULL,
    patient_full_name  TEXT NOT NULL,
    video              INTEGER NOT NULL,  -- voip: videoSupport 0/1; callback: 0
    phone_code         TEXT,              -- callback only
    phone_number       TEXT,
    status             INTEGER NOT NULL,  -- Status::rank
    created            TEXT NOT NULL,
    updated            TEXT NOT NULL,
    begin_at           TEXT NOT NULL,
    duration_min       INTEGER NOT NULL,
    doctor_deadline    TEXT,              -- set when the doctor is called
    started_at         TEXT,              -- InProgress
    ended_at           TEXT,              -- terminal
    join_code          TEXT,              -- voip only; unique among the open ones
    attachment         TEXT,              -- JSON {fileName, contentType, size, sha256}
    notify_url         TEXT,
    end_reason         TEXT,
    terminate_reason   TEXT,              -- voip terminate's `reason`
    patient_attempts   INTEGER NOT NULL DEFAULT 0, -- callback: patient dials made
    doctor_leg         TEXT,              -- uniqueid of the doctor's leg while it is live
    patient_leg        TEXT,              -- uniqueid of the patient's leg while it is live
    pbx                TEXT NOT NULL      -- the PBX the consultation runs on
);

CREATE INDEX consultations_created ON consultations (kind, created, id);
CREATE INDEX consultations_status ON consultations (kind, status, created, id);
CREATE INDEX consultations_video_created ON consultations (kind, video, created, id);
CREATE INDEX consultations_video_status ON consultations (kind, video, status, created, id);
-- The join-code check of a dialling patient, among the consultations not ended.
CREATE UNIQUE INDEX consultations_open_codes ON consultations (join_code)
    WHERE join_code IS NOT NULL AND ended_at IS NULL;
-- A code dialled after its consultation ended is told so.
CREATE INDEX consultations_codes ON consultations (join_code) WHERE join_code IS NOT NULL;
-- The runner's restore after a restart: the consultations started and not ended.
CREATE INDEX consultations_running ON consultations (status)
    WHERE status BETWEEN 1 AND 4;

CREATE TABLE consultation_history (
    consultation_id  INTEGER NOT NULL REFERENCES consultations (id),
    seq              INTEGER NOT NULL,
    status           INTEGER NOT NULL,
    at               TEXT NOT NULL,
    PRIMARY KEY (consultation_id, seq)
) WITHOUT ROWID;

CREATE TABLE consultation_counts (
    kind    TEXT NOT NULL,
    video   INTEGER NOT NULL,
    status  INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (kind, video, status)
) WITHOUT ROWID;

CREATE TRIGGER consultations_count_insert AFTER INSERT ON consultations BEGIN
    INSERT INTO consultation_counts (kind, video, status, n)
    VALUES (NEW.kind, NEW.video, NEW.status, 1)
    ON CONFLICT (kind, video, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER consultations_count_status AFTER UPDATE OF status ON consultations
WHEN OLD.status != NEW.status BEGIN
    UPDATE consultation_counts SET n = n - 1
    WHERE kind = OLD.kind AND video = OLD.video AND status = OLD.status;
    INSERT INTO consultation_counts (kind, video, status, n)
    VALUES (NEW.kind, NEW.video, NEW.status, 1)
    ON CONFLICT (kind, video, status) DO UPDATE SET n = n + 1;
END;

-- The durable scheduler: one row per pending job, fired by one task in due order. A job
-- is deleted in the same transaction as the effects of firing it, so after a restart a
-- job fires once: either its effects are stored and the row is gone, or neither.
-- (kind, subject) is unique: scheduling a job again moves it.
CREATE TABLE scheduled_jobs (
    id       INTEGER PRIMARY KEY,
    due_at   TEXT NOT NULL,
    kind     TEXT NOT NULL,
    subject  INTEGER NOT NULL,
    UNIQUE (subject, kind)
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at, id);

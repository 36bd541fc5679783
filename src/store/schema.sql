-- Tsunagi cache index (SQLite). One row per study, series and instance held in the disk cache.
-- Text is UTF-8, decoded from each instance's Specific Character Set; DICOM padding trimmed.
-- Multi-valued attributes keep DICOM's backslash separator. Dates are DA (YYYYMMDD), times TM.
-- `meta_json` columns hold DICOM JSON (PS3.18 F.2) objects; bulk values there carry a
-- "BulkDataURI" that is relative to the DICOMweb root (e.g. "studies/1.2/series/3.4/instances/5.6/bulk/7FE00010")
-- and is made absolute when served.

PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;

CREATE TABLE IF NOT EXISTS study (
    study_uid                 TEXT PRIMARY KEY,
    patient_id                TEXT NOT NULL DEFAULT '',
    issuer_of_patient_id      TEXT NOT NULL DEFAULT '',
    patient_name              TEXT NOT NULL DEFAULT '',   -- full PN, groups joined by '=' ("Yamada^Tarou=山田^太郎=やまだ^たろう")
    patient_birth_date        TEXT NOT NULL DEFAULT '',
    patient_sex               TEXT NOT NULL DEFAULT '',
    study_date                TEXT NOT NULL DEFAULT '',
    study_time                TEXT NOT NULL DEFAULT '',
    accession_number          TEXT NOT NULL DEFAULT '',
    study_id                  TEXT NOT NULL DEFAULT '',
    study_description         TEXT NOT NULL DEFAULT '',
    referring_physician_name  TEXT NOT NULL DEFAULT '',
    modalities_in_study       TEXT NOT NULL DEFAULT '',   -- computed: sorted distinct series modalities, '\'-joined
    num_series                INTEGER NOT NULL DEFAULT 0, -- computed
    num_instances             INTEGER NOT NULL DEFAULT 0, -- computed
    meta_json                 TEXT NOT NULL,              -- patient + study level attributes (DICOM JSON object)
    updated_at                INTEGER NOT NULL            -- unix seconds of the last instance received
);
CREATE INDEX IF NOT EXISTS study_patient_id ON study(patient_id);
CREATE INDEX IF NOT EXISTS study_date_idx ON study(study_date);
-- QIDO's study order: a page of the study list walks this and stops at its LIMIT.
CREATE INDEX IF NOT EXISTS study_list_order ON study(study_date DESC, study_time DESC, study_uid);
CREATE INDEX IF NOT EXISTS study_accession ON study(accession_number);

CREATE TABLE IF NOT EXISTS series (
    series_uid                TEXT PRIMARY KEY,
    study_uid                 TEXT NOT NULL REFERENCES study(study_uid) ON DELETE CASCADE,
    modality                  TEXT NOT NULL DEFAULT '',
    series_number             INTEGER,
    series_description        TEXT NOT NULL DEFAULT '',
    series_date               TEXT NOT NULL DEFAULT '',
    series_time               TEXT NOT NULL DEFAULT '',
    body_part_examined        TEXT NOT NULL DEFAULT '',
    performed_procedure_step_start_date TEXT NOT NULL DEFAULT '',
    performed_procedure_step_start_time TEXT NOT NULL DEFAULT '',
    num_instances             INTEGER NOT NULL DEFAULT 0, -- computed
    meta_json                 TEXT NOT NULL,              -- series level attributes (DICOM JSON object)
    updated_at                INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);

CREATE TABLE IF NOT EXISTS instance (
    sop_instance_uid          TEXT PRIMARY KEY,
    series_uid                TEXT NOT NULL REFERENCES series(series_uid) ON DELETE CASCADE,
    study_uid                 TEXT NOT NULL,
    sop_class_uid             TEXT NOT NULL DEFAULT '',
    instance_number           INTEGER,
    transfer_syntax_uid       TEXT NOT NULL,
    rows                      INTEGER,
    columns                   INTEGER,
    bits_allocated            INTEGER,
    samples_per_pixel         INTEGER,
    number_of_frames          INTEGER,
    file_path                 TEXT NOT NULL,              -- relative to store.path
    file_size                 INTEGER NOT NULL,
    sha256                    TEXT NOT NULL,              -- of the whole file; used for ETags
    meta_json                 TEXT NOT NULL,              -- the whole top-level data set (DICOM JSON object, bulk as relative BulkDataURI)
    received_at               INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_series ON instance(series_uid);
CREATE INDEX IF NOT EXISTS instance_study ON instance(study_uid);
-- Covers the cache size (sum of file_size) and per-study sizes without reading meta_json pages.
CREATE INDEX IF NOT EXISTS instance_study_size ON instance(study_uid, file_size);

-- Outcome of the last retrieve from a PACS per target ("study", "study/series" or
-- "study/series/sop"), so data that arrived only in part is retrieved again when asked for.
CREATE TABLE IF NOT EXISTS retrieval (
    target                    TEXT PRIMARY KEY,
    study_uid                 TEXT NOT NULL,
    upstream                  TEXT NOT NULL DEFAULT '',
    complete                  INTEGER NOT NULL,           -- 1 when every sub-operation succeeded
    arrived                   INTEGER NOT NULL DEFAULT 0,
    message                   TEXT NOT NULL DEFAULT '',
    finished_at               INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retrieval_study ON retrieval(study_uid);

-- Cache management (store/evict.rs). Last read or write of each study, in unix milliseconds
-- (recorded in batches); eviction removes the least recently used unpinned studies first.
CREATE TABLE IF NOT EXISTS study_access (
    study_uid                 TEXT PRIMARY KEY,
    last_access               INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS study_access_time ON study_access(last_access);

-- A study kept out of eviction by a holder (e.g. "job:12") until a time (unix seconds;
-- NULL: until the holder releases it).
CREATE TABLE IF NOT EXISTS pin (
    study_uid                 TEXT NOT NULL,
    holder                    TEXT NOT NULL,
    until                     INTEGER,
    PRIMARY KEY (study_uid, holder)
);
CREATE INDEX IF NOT EXISTS pin_holder ON pin(holder);

-- Prefetch jobs (src/jobs/). `spec_json` is the request as accepted (jobs::JobSpec);
-- state: resolving | queued | done | failed | cancelled.
CREATE TABLE IF NOT EXISTS job (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    spec_json                 TEXT NOT NULL,
    due                       INTEGER,                    -- unix seconds
    priority                  INTEGER NOT NULL DEFAULT 0, -- higher first among equal due times
    state                     TEXT NOT NULL,
    message                   TEXT NOT NULL DEFAULT '',
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL,
    finished_at               INTEGER
);
CREATE INDEX IF NOT EXISTS job_state ON job(state);

-- The studies a job found, one row each; state: queued | running | done | failed | cancelled.
CREATE TABLE IF NOT EXISTS job_study (
    job_id                    INTEGER NOT NULL REFERENCES job(id) ON DELETE CASCADE,
    study_uid                 TEXT NOT NULL,
    upstream                  TEXT NOT NULL,
    state                     TEXT NOT NULL,
    instances_total           INTEGER,                    -- from C-FIND, when the PACS says
    instances_done            INTEGER NOT NULL DEFAULT 0, -- arrived by this job's retrieves
    bytes_done                INTEGER NOT NULL DEFAULT 0,
    attempts                  INTEGER NOT NULL DEFAULT 0,
    next_try_at               INTEGER NOT NULL DEFAULT 0, -- unix seconds
    error                     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, study_uid)
);
CREATE INDEX IF NOT EXISTS job_study_state ON job_study(state);

-- Referrals (auth/referral.rs): a facility with `referred_only` sees a study only when its
-- patient is referred to it here. Issuer and upstream '' match any; `until` is unix seconds
-- (NULL: until deleted). `source` is "job:ID" (a prefetch job naming `referred_to`) or "admin".
CREATE TABLE IF NOT EXISTS referral (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    facility                  TEXT NOT NULL,
    patient_id                TEXT NOT NULL,
    issuer                    TEXT NOT NULL DEFAULT '',
    upstream                  TEXT NOT NULL DEFAULT '',
    until                     INTEGER,
    source                    TEXT NOT NULL,
    created_at                INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS referral_facility ON referral(facility, patient_id);

-- Online garbage collection. A blob being deleted is marked first, so an
-- upload of the same bytes waits until they are gone instead of racing the
-- delete; candidates are the blobs whose references may have dropped, so a
-- run costs what changed; the lease lets one node at a time collect.
ALTER TABLE blobs ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0;

CREATE TABLE gc_candidates (
    digest     TEXT PRIMARY KEY,
    queued_at  INTEGER NOT NULL
) WITHOUT ROWID;
-- Every blob stored before this migration is examined once.
INSERT INTO gc_candidates (digest, queued_at) SELECT digest, created_at FROM blobs;

CREATE TABLE gc_lease (
    id          INTEGER PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE gc_runs (
    id                INTEGER PRIMARY KEY,
    holder            TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    state             TEXT NOT NULL,
    examined          INTEGER NOT NULL DEFAULT 0,
    blobs_deleted     INTEGER NOT NULL DEFAULT 0,
    bytes_reclaimed   INTEGER NOT NULL DEFAULT 0,
    uploads_purged    INTEGER NOT NULL DEFAULT 0,
    storage_requests  INTEGER NOT NULL DEFAULT 0,
    error             TEXT
);
CREATE INDEX gc_runs_started ON gc_runs(started_at);

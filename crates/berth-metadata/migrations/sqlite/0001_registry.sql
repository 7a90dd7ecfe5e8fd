-- Repositories, content and tags. Blobs are global (content-addressed);
-- repositories see them only through links, as in Docker Distribution.
CREATE TABLE repositories (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE blobs (
    digest          TEXT PRIMARY KEY,
    size            INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    -- Last time a repository linked it: the GC grace period counts from here.
    last_linked_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE repository_blobs (
    repository_id  INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
    linked_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

CREATE TABLE manifests (
    repository_id   INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest          TEXT NOT NULL,
    media_type      TEXT NOT NULL,
    artifact_type   TEXT,
    subject_digest  TEXT,
    annotations     TEXT,
    size            INTEGER NOT NULL,
    content         BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE INDEX manifests_subject ON manifests(repository_id, subject_digest)
    WHERE subject_digest IS NOT NULL;

-- Blobs (config, layers) a manifest references: what keeps a blob alive.
CREATE TABLE manifest_blobs (
    repository_id    INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    blob_digest      TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, blob_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_blobs_blob ON manifest_blobs(blob_digest);

-- Manifests an index references.
CREATE TABLE manifest_children (
    repository_id    INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    child_digest     TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest_digest, child_digest),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE tags (
    repository_id    INTEGER NOT NULL,
    name             TEXT NOT NULL,
    manifest_digest  TEXT NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name),
    FOREIGN KEY (repository_id, manifest_digest)
        REFERENCES manifests(repository_id, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_manifest ON tags(repository_id, manifest_digest);

-- Upload sessions; their bytes live in blob storage under the same id.
CREATE TABLE uploads (
    id          TEXT PRIMARY KEY,
    repository  TEXT NOT NULL,
    length      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

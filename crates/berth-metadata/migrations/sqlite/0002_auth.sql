-- Identities, credentials, scope maps, roles, signing keys, runtime
-- settings and the activity log.

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE identities (
    id               TEXT PRIMARY KEY,   -- UUID; a service principal's app id
    kind             TEXT NOT NULL,      -- owner | admin | sp | token
    login            TEXT NOT NULL UNIQUE,
    display_name     TEXT NOT NULL,
    enabled          INTEGER NOT NULL DEFAULT 1,
    trusted_service  INTEGER NOT NULL DEFAULT 0,
    scope_map        TEXT,               -- tokens only
    created_at       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE credentials (
    identity_id  TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,          -- password | password2 | secret
    hash         TEXT NOT NULL,          -- argon2id PHC string, never the secret
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    PRIMARY KEY (identity_id, name)
) WITHOUT ROWID;

CREATE TABLE scope_maps (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    rules        TEXT NOT NULL,          -- JSON [{repository, actions}]
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE role_definitions (
    name         TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    actions      TEXT NOT NULL,          -- JSON array of action strings
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- No foreign key to identities: an assignment may outlive its principal,
-- and diagnostics must be able to report it as orphaned.
CREATE TABLE role_assignments (
    id            TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    role          TEXT NOT NULL,
    scope         TEXT NOT NULL,         -- '' = registry, 'repo', or 'prefix/*'
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX role_assignments_principal ON role_assignments(principal_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    pkcs8       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE activity_log (
    id         INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    operation  TEXT NOT NULL,
    target     TEXT NOT NULL,
    before     TEXT,
    after      TEXT
);
CREATE INDEX activity_log_time ON activity_log(time);

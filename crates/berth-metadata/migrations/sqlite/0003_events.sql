-- Audit events: who logged in (or was refused) and what happened to
-- repositories. Written in batches off the request path.
CREATE TABLE login_events (
    id                  INTEGER PRIMARY KEY,
    time                INTEGER NOT NULL,     -- unix milliseconds
    login_server        TEXT NOT NULL,
    identity            TEXT NOT NULL,
    caller_ip           TEXT NOT NULL,
    user_agent          TEXT NOT NULL,
    operation           TEXT NOT NULL,
    result_type         INTEGER NOT NULL,     -- HTTP status
    result_description  TEXT NOT NULL,
    duration_ms         INTEGER NOT NULL,
    correlation_id      TEXT NOT NULL,
    jwt_id              TEXT
);
CREATE INDEX login_events_time ON login_events(time);

CREATE TABLE repository_events (
    id                  INTEGER PRIMARY KEY,
    time                INTEGER NOT NULL,
    login_server        TEXT NOT NULL,
    operation           TEXT NOT NULL,        -- Push | Pull | Delete | Untag
    repository          TEXT NOT NULL,
    tag                 TEXT,
    digest              TEXT,
    media_type          TEXT,
    artifact_type       TEXT,
    size                INTEGER,
    identity            TEXT NOT NULL,
    caller_ip           TEXT NOT NULL,
    user_agent          TEXT NOT NULL,
    result_type         INTEGER NOT NULL,
    result_description  TEXT NOT NULL,
    duration_ms         INTEGER NOT NULL,
    correlation_id      TEXT NOT NULL
);
CREATE INDEX repository_events_time ON repository_events(time);

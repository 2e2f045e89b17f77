-- The database copy of the audit trail, for queries; the file stays the
-- tamper-evident record. `seq` orders events for pagination.
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id       TEXT NOT NULL UNIQUE,
    timestamp      TEXT NOT NULL,           -- RFC 3339, UTC, fixed width
    event_type     TEXT NOT NULL,
    action         TEXT NOT NULL,
    status         TEXT NOT NULL,
    severity       TEXT NOT NULL,
    severity_rank  INTEGER NOT NULL,        -- 0 info … 4 critical
    user_id        TEXT,
    api_key_id     TEXT,
    client_ip      TEXT,
    method         TEXT,
    path           TEXT,
    http_status    INTEGER,
    request_id     TEXT,
    description    TEXT NOT NULL,
    client_cert_subject TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
);
CREATE INDEX audit_events_timestamp ON audit_events (timestamp);
CREATE INDEX audit_events_user ON audit_events (user_id, seq);
CREATE INDEX audit_events_severity ON audit_events (severity_rank, seq);

-- Settings that operators change at run time and every instance follows
-- (emergency mode, log level): one JSON value per key.
CREATE TABLE runtime_settings (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

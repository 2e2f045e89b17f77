-- Users, custom roles, entries with their full-text index, and API keys.
-- Timestamps are fixed-width RFC 3339 text in UTC (see src/storage/time_format.rs).

CREATE TABLE users (
    id                 TEXT PRIMARY KEY NOT NULL,
    username           TEXT NOT NULL,
    password_hash      TEXT NOT NULL,
    roles              TEXT NOT NULL,          -- JSON array of role names
    disabled           INTEGER NOT NULL DEFAULT 0,
    failed_logins      INTEGER NOT NULL DEFAULT 0,
    locked_until       TEXT,
    mfa_enabled        INTEGER NOT NULL DEFAULT 0,
    tokens_valid_after TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (username);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT,
    permissions TEXT NOT NULL,                 -- JSON array
    inherits    TEXT NOT NULL,                 -- JSON array of role names
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE entries (
    id          TEXT PRIMARY KEY NOT NULL,
    category    TEXT NOT NULL,
    name        TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    status      TEXT NOT NULL,
    version     TEXT,
    tags        TEXT NOT NULL,                 -- JSON array, also indexed by entry_tags
    metadata    TEXT NOT NULL,                 -- JSON object
    sensitive   BLOB,                          -- ciphertext, never plaintext
    owner_id    TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX entries_category_name ON entries (category, name);
CREATE INDEX entries_created ON entries (created_at, id);
CREATE INDEX entries_owner ON entries (owner_id);
CREATE INDEX entries_status ON entries (status);

CREATE TABLE entry_tags (
    entry_id TEXT NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    tag      TEXT NOT NULL,
    PRIMARY KEY (tag, entry_id)
);
CREATE INDEX entry_tags_entry ON entry_tags (entry_id);

-- External-content FTS5 index over the searchable columns, kept in step by
-- triggers so that every write path (API, import, CLI) updates it.
CREATE VIRTUAL TABLE entries_fts USING fts5 (
    name, title, description, tags,
    content = 'entries', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries BEGIN
    INSERT INTO entries_fts (rowid, name, title, description, tags)
    VALUES (new.rowid, new.name, new.title, new.description, new.tags);
END;

CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, name, title, description, tags)
    VALUES ('delete', old.rowid, old.name, old.title, old.description, old.tags);
END;

CREATE TRIGGER entries_fts_update AFTER UPDATE ON entries BEGIN
    INSERT INTO entries_fts (entries_fts, rowid, name, title, description, tags)
    VALUES ('delete', old.rowid, old.name, old.title, old.description, old.tags);
    INSERT INTO entries_fts (rowid, name, title, description, tags)
    VALUES (new.rowid, new.name, new.title, new.description, new.tags);
END;

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY NOT NULL,
    user_id               TEXT NOT NULL REFERENCES users (id),
    name                  TEXT NOT NULL,
    secret_hash           BLOB NOT NULL,
    permissions           TEXT NOT NULL,       -- JSON array
    rate_limit_per_minute INTEGER,
    created_at            TEXT NOT NULL,
    expires_at            TEXT NOT NULL,
    revoked_at            TEXT,
    last_used_at          TEXT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

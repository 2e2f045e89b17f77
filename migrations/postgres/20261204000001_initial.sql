-- Users, custom roles, entries with their full-text index, and API keys: the
-- PostgreSQL counterpart of migrations/sqlite/20261204000001_initial.sql.
--
-- Timestamps are TIMESTAMPTZ, which keeps microseconds like the SQLite text
-- form, so (created_at, id) sorts the same on both backends. Ids are UUID,
-- whose byte order equals the order of their lowercase text. Text columns that
-- queries sort by use the "C" collation, the byte-wise order SQLite uses.

CREATE TABLE users (
    id                 UUID PRIMARY KEY,
    username           TEXT NOT NULL,
    password_hash      TEXT NOT NULL,
    roles              JSONB NOT NULL,         -- array of role names
    disabled           BOOLEAN NOT NULL DEFAULT FALSE,
    failed_logins      BIGINT NOT NULL DEFAULT 0,
    locked_until       TIMESTAMPTZ,
    mfa_enabled        BOOLEAN NOT NULL DEFAULT FALSE,
    tokens_valid_after TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_username ON users (username);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE roles (
    name        TEXT COLLATE "C" PRIMARY KEY,
    description TEXT,
    permissions JSONB NOT NULL,                -- array of permission names
    inherits    JSONB NOT NULL,                -- array of role names
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Replaces ASCII punctuation with spaces before text reaches the parser. The
-- default parser would otherwise keep "zope.interface" as one host name and
-- "<html>" as a markup tag, while the search-term splitter (and SQLite's
-- unicode61 tokenizer) break text at every character that is not a letter or
-- a digit. The range escapes are code points, so no locale changes them.
CREATE FUNCTION registry_search_words(input TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT regexp_replace(input, '[\x21-\x2F\x3A-\x40\x5B-\x60\x7B-\x7E]+', ' ', 'g') $$;

CREATE TABLE entries (
    id            UUID PRIMARY KEY,
    category      TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    version       TEXT,
    tags          JSONB NOT NULL,              -- array, also indexed by entry_tags
    metadata      JSONB NOT NULL,              -- object
    sensitive     BYTEA,                       -- ciphertext, never plaintext
    owner_id      UUID NOT NULL,
    revision      BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    -- The 'simple' configuration lowercases words without stemming, so
    -- package names such as "httpx" stay as they are.
    search_vector TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', registry_search_words(name)), 'A')
        || setweight(to_tsvector('simple', registry_search_words(title)), 'B')
        || setweight(to_tsvector('simple', registry_search_words(tags::text)), 'B')
        || setweight(to_tsvector('simple', registry_search_words(description)), 'C')
    ) STORED
);
CREATE UNIQUE INDEX entries_category_name ON entries (category, name);
CREATE INDEX entries_created ON entries (created_at, id);
CREATE INDEX entries_owner ON entries (owner_id);
CREATE INDEX entries_status ON entries (status);
CREATE INDEX entries_search ON entries USING GIN (search_vector);

CREATE TABLE entry_tags (
    entry_id UUID NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    tag      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tag, entry_id)
);
CREATE INDEX entry_tags_entry ON entry_tags (entry_id);

CREATE TABLE api_keys (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    user_id               UUID NOT NULL REFERENCES users (id),
    name                  TEXT NOT NULL,
    secret_hash           BYTEA NOT NULL,
    permissions           JSONB NOT NULL,      -- array of permission names
    rate_limit_per_minute BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ NOT NULL,
    revoked_at            TIMESTAMPTZ,
    last_used_at          TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id);

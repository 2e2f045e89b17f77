-- Refresh-token families, revoked access tokens and MFA state.

-- One row per refresh token ever issued. Only a SHA-256 of the token is kept.
-- A family is one sign-in; each refresh spends one token and adds the next
-- generation, so a spent token presented again reveals theft.
CREATE TABLE refresh_tokens (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    family_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    generation  INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    spent_at    TEXT,
    revoked_at  TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Access tokens revoked before their expiry (logout), by `jti`.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at TEXT NOT NULL
);

-- TOTP secrets and recovery codes; secrets are ciphertext.
CREATE TABLE user_mfa (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    secret         BLOB,
    pending_secret BLOB,
    recovery_codes TEXT NOT NULL,   -- JSON array of hex HMACs of unused codes
    last_step      INTEGER NOT NULL -- newest TOTP time step accepted, for replay protection
);

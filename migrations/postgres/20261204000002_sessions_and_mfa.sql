-- Refresh-token families, revoked access tokens and MFA state: the PostgreSQL
-- counterpart of migrations/sqlite/20261204000002_sessions_and_mfa.sql.

-- One row per refresh token ever issued. Only a SHA-256 of the token is kept.
-- A family is one sign-in; each refresh spends one token and adds the next
-- generation, so a spent token presented again reveals theft.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    family_id   TEXT NOT NULL,
    user_id     UUID NOT NULL REFERENCES users (id),
    generation  BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    spent_at    TIMESTAMPTZ,
    revoked_at  TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Access tokens revoked before their expiry (logout), by `jti`.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);

-- TOTP secrets and recovery codes; secrets are ciphertext.
CREATE TABLE user_mfa (
    user_id        UUID PRIMARY KEY REFERENCES users (id),
    secret         BYTEA,
    pending_secret BYTEA,
    recovery_codes JSONB NOT NULL,   -- array of hex HMACs of unused codes
    last_step      BIGINT NOT NULL   -- newest TOTP time step accepted, for replay protection
);

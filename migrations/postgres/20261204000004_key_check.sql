-- The key check: a fixed marker encrypted under the encryption key, so that
-- a start with another ENCRYPTION_KEY is rejected at once instead of failing
-- on every read of an encrypted value. At most one row.
CREATE TABLE encryption_key_check (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    ciphertext BYTEA NOT NULL,               -- key id, nonce, ciphertext and tag
    updated_at TIMESTAMPTZ NOT NULL
);

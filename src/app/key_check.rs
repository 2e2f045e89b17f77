//! The encryption key check: a fixed marker encrypted under the encryption
//! key and kept in the database. Start-up decrypts it, so a wrong
//! `ENCRYPTION_KEY` stops the process with a clear message instead of
//! failing later on every read of an encrypted value.
//!
//! The check stays under the oldest key still in use until
//! `hyper-registry encryption rewrap` has moved every value to the current
//! key, so dropping an old key from `ENCRYPTION_KEY_PREVIOUS` too early is
//! refused at start-up as well.

use chrono::{DateTime, Utc};

use crate::config::ConfigError;
use crate::crypto::{ciphertext_key_id, Cipher, CryptoError};
use crate::storage::{EncryptedField, SharedStore, StorageError};

/// The plaintext of the key check. It is not secret: the check proves only
/// that the key decrypts what this database holds.
const MARKER: &[u8] = b"hyper-registry encryption key check v1";
/// The associated data of the key check, which no other value uses.
const CONTEXT: &[u8] = b"hyper-registry:key-check";

/// Failures of the key check at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(transparent)]
    WrongKey(#[from] ConfigError),
    #[error("could not read or write the encryption key check")]
    Storage(#[from] StorageError),
}

/// Encrypts the marker under the current key.
pub(crate) fn seal(cipher: &dyn Cipher) -> Vec<u8> {
    cipher.encrypt(MARKER, CONTEXT)
}

/// Checks the stored key check against `cipher`, writing it on first start.
///
/// # Errors
/// [`KeyCheckError::WrongKey`] when neither `ENCRYPTION_KEY` nor a key in
/// `ENCRYPTION_KEY_PREVIOUS` decrypts the stored check (or, on a first
/// start over existing data, an existing encrypted value).
pub async fn verify_or_create(
    store: &SharedStore,
    cipher: &dyn Cipher,
    now: DateTime<Utc>,
) -> Result<(), KeyCheckError> {
    if let Some(stored) = store.find_key_check().await? {
        return Ok(verify(cipher, &stored, "the stored key check")?);
    }

    // A database from before the key check may hold encrypted values
    // already: check one of each kind before vouching for this key.
    for field in EncryptedField::ALL {
        if let Some(value) = store.list_encrypted_values(field, None, 1).await?.first() {
            let aad = super::rewrap::associated_data(field, value.row_id);
            if let Err(error) = cipher.decrypt(&value.ciphertext, &aad) {
                return Err(wrong_key(cipher, &value.ciphertext, &error, field.name()).into());
            }
        }
    }

    if store.insert_key_check(&seal(cipher), now).await? {
        tracing::info!(key_id = %cipher.current_key_id(), "stored the encryption key check");
        return Ok(());
    }
    // Another instance stored one first: verify that one instead.
    match store.find_key_check().await? {
        Some(stored) => Ok(verify(cipher, &stored, "the stored key check")?),
        None => Err(StorageError::Corrupt("the key check vanished while it was being written".into()).into()),
    }
}

fn verify(cipher: &dyn Cipher, stored: &[u8], what: &str) -> Result<(), ConfigError> {
    match cipher.decrypt(stored, CONTEXT) {
        Ok(plaintext) if plaintext == MARKER => Ok(()),
        Ok(_) => Err(damaged()),
        Err(error) => Err(wrong_key(cipher, stored, &error, what)),
    }
}

fn damaged() -> ConfigError {
    ConfigError {
        variable: "ENCRYPTION_KEY",
        problem: "the stored key check decrypts to an unexpected value, so the database was altered".into(),
        fix: "restore the database from a backup".into(),
    }
}

/// Builds the start-up error for a key that cannot decrypt `stored`. Key ids
/// are truncated HMACs of the keys and reveal nothing of them.
fn wrong_key(cipher: &dyn Cipher, stored: &[u8], error: &CryptoError, what: &str) -> ConfigError {
    let stored_id = ciphertext_key_id(stored).unwrap_or_else(|| "none".into());
    let problem = match error {
        CryptoError::UnknownKey(_) => format!(
            "does not match the key that encrypted this database: {what} was made with key id {stored_id}, \
             but ENCRYPTION_KEY has key id {} and no key in ENCRYPTION_KEY_PREVIOUS has id {stored_id}",
            cipher.current_key_id()
        ),
        CryptoError::Decrypt | CryptoError::Malformed => {
            format!("{what} (key id {stored_id}) failed to decrypt: the value was altered or the key id collides")
        }
    };
    ConfigError {
        variable: "ENCRYPTION_KEY",
        problem,
        fix: "set ENCRYPTION_KEY to the key this database was encrypted with (without it set, the key generated in \
              DATA_DIR/encryption.key); during a rotation keep the old key in ENCRYPTION_KEY_PREVIOUS until \
              `hyper-registry encryption rewrap` has finished"
            .into(),
    }
}

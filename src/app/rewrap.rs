//! Re-encryption of every stored ciphertext under the current key, after
//! `ENCRYPTION_KEY` changed and the old key moved to `ENCRYPTION_KEY_PREVIOUS`.
//!
//! The rewrap walks each encrypted column in batches and is safe while
//! servers run: each value is replaced only if it still equals what was read,
//! so a concurrent write wins and is never overwritten with older data.
//! Values already under the current key are skipped, so an interrupted
//! rewrap resumes by running it again. The key check moves to the current
//! key last, once no value under an older key remains.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::crypto::Cipher;
use crate::storage::{EncryptedField, SharedStore, StorageResult};

/// Values read and replaced per batch.
pub const REWRAP_BATCH_SIZE: u32 = 500;
/// Full passes over the columns before giving up on values that keep being
/// written under an old key (by a server that still runs with it as current).
const MAX_PASSES: u32 = 5;

/// Returns the associated data that binds a value of `field` to its row,
/// as the code that writes the field uses it.
pub(crate) fn associated_data(field: EncryptedField, row_id: Uuid) -> Vec<u8> {
    match field {
        EncryptedField::EntrySensitive => crate::registry::sensitive_context(row_id),
        EncryptedField::TotpSecret | EncryptedField::TotpPendingSecret => crate::auth::sessions::totp_context(row_id),
    }
}

/// Counts of one encrypted column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldCounts {
    /// Values re-encrypted under the current key.
    pub rewrapped: u64,
    /// Values already under the current key when the rewrap started.
    pub already_current: u64,
    /// Values changed or deleted by a concurrent write between read and
    /// replace; another pass looks at them again.
    pub changed_concurrently: u64,
    /// Values that no configured key decrypts, as of the last pass; they
    /// stay as they are.
    pub failed: u64,
}

/// The outcome of a rewrap.
#[derive(Debug, Clone, Default)]
pub struct RewrapReport {
    pub fields: Vec<(EncryptedField, FieldCounts)>,
    /// Whether the key check now uses the current key, which happens only
    /// when no value under an older key remains.
    pub key_check_updated: bool,
}

impl RewrapReport {
    /// Returns the number of values that could not be decrypted.
    pub fn failed(&self) -> u64 {
        self.fields.iter().map(|(_, counts)| counts.failed).sum()
    }
}

/// Re-encrypts every value under the current key, then the key check.
///
/// # Errors
/// Fails when the database fails; work done so far stays done.
pub async fn rewrap_all(store: &SharedStore, cipher: &dyn Cipher, now: DateTime<Utc>) -> StorageResult<RewrapReport> {
    let mut totals: Vec<(EncryptedField, FieldCounts)> = EncryptedField::ALL
        .iter()
        .map(|field| (*field, FieldCounts::default()))
        .collect();

    // Another pass runs only when a write raced with this one, since that
    // write may come from a server still running with the old key.
    let mut clean = false;
    for pass_number in 0..MAX_PASSES {
        let mut raced = false;
        let mut failed = false;
        for (field, total) in &mut totals {
            let pass = rewrap_field(store, cipher, *field).await?;
            raced |= pass.changed_concurrently > 0;
            failed |= pass.failed > 0;
            total.rewrapped += pass.rewrapped;
            total.changed_concurrently += pass.changed_concurrently;
            total.failed = pass.failed;
            if pass_number == 0 {
                total.already_current = pass.already_current;
            }
        }
        if !raced {
            clean = !failed;
            break;
        }
    }

    let key_check_updated = clean && rewrap_key_check(store, cipher, now).await?;
    Ok(RewrapReport {
        fields: totals,
        key_check_updated,
    })
}

async fn rewrap_field(store: &SharedStore, cipher: &dyn Cipher, field: EncryptedField) -> StorageResult<FieldCounts> {
    let mut counts = FieldCounts::default();
    let mut after = None;
    loop {
        let batch = store.list_encrypted_values(field, after, REWRAP_BATCH_SIZE).await?;
        let Some(last) = batch.last() else {
            return Ok(counts);
        };
        after = Some(last.row_id);

        for value in &batch {
            if cipher.uses_current_key(&value.ciphertext) {
                counts.already_current += 1;
                continue;
            }
            let aad = associated_data(field, value.row_id);
            let plaintext = match cipher.decrypt(&value.ciphertext, &aad) {
                Ok(plaintext) => plaintext,
                Err(error) => {
                    tracing::error!(field = field.name(), row_id = %value.row_id, error = %error, "could not decrypt a value to rewrap");
                    counts.failed += 1;
                    continue;
                }
            };
            let sealed = cipher.encrypt(&plaintext, &aad);
            if store
                .replace_encrypted_value(field, value.row_id, &value.ciphertext, &sealed)
                .await?
            {
                counts.rewrapped += 1;
            } else {
                counts.changed_concurrently += 1;
            }
        }
    }
}

/// Moves the key check to the current key; returns whether it is there now.
async fn rewrap_key_check(store: &SharedStore, cipher: &dyn Cipher, now: DateTime<Utc>) -> StorageResult<bool> {
    let sealed = super::key_check::seal(cipher);
    match store.find_key_check().await? {
        Some(stored) if cipher.uses_current_key(&stored) => Ok(true),
        Some(stored) => store.replace_key_check(&stored, &sealed, now).await,
        None => store.insert_key_check(&sealed, now).await,
    }
}

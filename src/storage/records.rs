//! Plain records exchanged with a [`super::Store`]. They carry already
//! validated values; `sensitive` is ciphertext by the time it gets here.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A user account as stored.
#[derive(Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    /// Argon2id hash in PHC string format.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub failed_logins: u32,
    pub locked_until: Option<DateTime<Utc>>,
    pub mfa_enabled: bool,
    /// Tokens issued before this instant are rejected (set on disable and on
    /// password change).
    pub tokens_valid_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("User")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

/// Keyset position in the user list (ordered by creation time, then id).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// An entry as stored: `sensitive` is the encrypted form, if any.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub id: Uuid,
    pub category: String,
    pub name: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Value,
    pub sensitive: Option<Vec<u8>>,
    pub owner_id: Uuid,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// List and search filters, already validated.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub category: Option<String>,
    pub status: Option<String>,
    /// Every tag listed must be present.
    pub tags: Vec<String>,
    pub owner_id: Option<Uuid>,
}

impl EntryFilter {
    /// True when the filter selects every entry.
    pub fn is_empty(&self) -> bool {
        self.category.is_none() && self.status.is_none() && self.tags.is_empty() && self.owner_id.is_none()
    }
}

/// Matches that a search ranks at most. Scoring costs time per match, so a
/// word found in most of a large catalog ("python" in a million packages)
/// would otherwise cost a second per query. Both backends rank the first
/// this many matches that pass the filters, in index order, and page
/// through those.
pub const SEARCH_CANDIDATES: u32 = 10_000;

/// Keyset position in the entry list (ordered by creation time, then id).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EntryCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Counts for `GET /api/v1/registry/analytics`.
#[derive(Debug, Clone, Default)]
pub struct EntryAnalytics {
    pub total: i64,
    pub by_category: Vec<(String, i64)>,
    pub by_status: Vec<(String, i64)>,
    pub top_tags: Vec<(String, i64)>,
    /// `(YYYY-MM-DD, count)` for the requested number of recent days.
    pub created_per_day: Vec<(String, i64)>,
}

/// What an import does with an entry whose `(category, name)` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPolicy {
    Skip,
    /// Replace the existing entry's fields, keeping its id and owner, when the
    /// importer owns it or `may_update_any` is set.
    Update {
        importer: Uuid,
        may_update_any: bool,
    },
}

/// The result of importing one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    Created,
    Updated,
    /// `(category, name)` exists already (or earlier in the same import).
    SkippedExisting,
    /// The existing entry belongs to someone else and the importer may not change it.
    SkippedNotOwner,
}

/// An API key as stored: only a keyed hash of its secret.
#[derive(Clone)]
pub struct ApiKeyRecord {
    /// The public key id embedded in the key (`hrk_<id>_…`).
    pub id: String,
    pub user_id: Uuid,
    pub name: String,
    /// HMAC-SHA-256 of the secret under the server's pepper.
    pub secret_hash: Vec<u8>,
    pub permissions: Vec<String>,
    pub rate_limit_per_minute: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ApiKeyRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// One refresh token of a sign-in family; the token itself is never stored.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    pub family_id: String,
    pub user_id: Uuid,
    pub generation: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub spent_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A user's TOTP state. Secrets are ciphertext; recovery codes are keyed hashes.
#[derive(Clone)]
pub struct MfaRecord {
    pub user_id: Uuid,
    pub secret: Option<Vec<u8>>,
    pub pending_secret: Option<Vec<u8>>,
    pub recovery_codes: Vec<String>,
    /// The newest TOTP time step accepted; older or equal steps are replays.
    pub last_step: i64,
}

impl std::fmt::Debug for MfaRecord {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MfaRecord")
            .field("user_id", &self.user_id)
            .field("enrolled", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// A stored column that contains ciphertext made by the [`crate::crypto::Cipher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptedField {
    /// `entries.sensitive`, keyed by entry id.
    EntrySensitive,
    /// `user_mfa.secret`, keyed by user id.
    TotpSecret,
    /// `user_mfa.pending_secret` (an enrolment not yet confirmed), keyed by user id.
    TotpPendingSecret,
}

impl EncryptedField {
    /// Every encrypted column; a rewrap walks all of them.
    pub const ALL: [EncryptedField; 3] = [
        EncryptedField::EntrySensitive,
        EncryptedField::TotpSecret,
        EncryptedField::TotpPendingSecret,
    ];

    /// Returns the table, key column and value column, the same on every backend.
    pub(crate) fn columns(self) -> (&'static str, &'static str, &'static str) {
        match self {
            EncryptedField::EntrySensitive => ("entries", "id", "sensitive"),
            EncryptedField::TotpSecret => ("user_mfa", "user_id", "secret"),
            EncryptedField::TotpPendingSecret => ("user_mfa", "user_id", "pending_secret"),
        }
    }

    /// Returns a name for messages and counts.
    pub fn name(self) -> &'static str {
        match self {
            EncryptedField::EntrySensitive => "entry sensitive values",
            EncryptedField::TotpSecret => "TOTP secrets",
            EncryptedField::TotpPendingSecret => "pending TOTP secrets",
        }
    }
}

/// One ciphertext and the id of its row.
#[derive(Clone)]
pub struct EncryptedValue {
    pub row_id: Uuid,
    pub ciphertext: Vec<u8>,
}

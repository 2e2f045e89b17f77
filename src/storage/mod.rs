//! Persistence behind one trait, [`Store`], so that request handlers and CLI
//! commands never see SQL. Each backend (`sqlite` and `postgres`)
//! owns its migrations and its dialect; validation, permissions and
//! encryption happen in higher layers before a record reaches a store.

pub mod audit;
mod bulk_import;
pub mod postgres;
mod postgres_audit;
mod records;
pub mod sqlite;
mod sqlite_audit;
mod time_format;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use records::*;

/// Storage failures, named for what the caller must do about them.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A uniqueness constraint rejected the write (e.g. `(category, name)`).
    #[error("conflict on {constraint}")]
    Conflict { constraint: &'static str },
    /// The row changed since it was read (optimistic concurrency).
    #[error("the record was changed concurrently")]
    StaleRevision,
    /// The database cannot be reached or failed with an I/O error.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else the database reported.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A stored value could not be decoded (corruption or a bad migration).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

/// The result of [`Store::insert_api_key_within_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedKeyInsert {
    Inserted,
    /// The owner already has the maximum number of live keys. Nothing changed.
    LimitReached,
    /// The key to replace is missing, belongs to another user, or is already
    /// revoked or expired. Nothing changed.
    ReplacedKeyNotLive,
}

/// The shared handle that the application passes around.
pub type SharedStore = Arc<dyn Store>;

/// Everything the registry persists. Implementations keep each method atomic.
#[async_trait]
pub trait Store: audit::AuditStore + Send + Sync + 'static {
    /// Checks that the database responds.
    async fn ping(&self) -> StorageResult<()>;

    async fn count_users(&self) -> StorageResult<i64>;
    async fn insert_user(&self, user: &User) -> StorageResult<()>;
    async fn find_user(&self, id: Uuid) -> StorageResult<Option<User>>;
    async fn find_user_by_username(&self, username: &str) -> StorageResult<Option<User>>;
    /// Checks whether a user exists whose username equals `username` when both
    /// are lowercased with the database's `lower()`. New usernames are ASCII,
    /// where both backends agree.
    async fn username_taken_ignoring_case(&self, username: &str) -> StorageResult<bool>;
    async fn list_users(&self, after: Option<&UserCursor>, limit: u32) -> StorageResult<Vec<User>>;
    /// Counts one failed login atomically; once the count reaches
    /// `max_attempts` it is reset and the account locked until `lock_until`.
    /// Returns the lockout end when this failure (or an earlier one) locked it.
    /// Touches no other field, so it never undoes a concurrent admin change.
    async fn record_failed_login(
        &self,
        user_id: Uuid,
        max_attempts: u32,
        lock_until: chrono::DateTime<chrono::Utc>,
    ) -> StorageResult<Option<chrono::DateTime<chrono::Utc>>>;
    /// Sets a new password hash and session cut-off, touching nothing else.
    async fn set_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        tokens_valid_after: chrono::DateTime<chrono::Utc>,
    ) -> StorageResult<()>;
    /// Sets whether MFA is enabled, touching nothing else.
    async fn set_mfa_enabled(&self, user_id: Uuid, enabled: bool) -> StorageResult<()>;
    /// Clears the failure count and any lockout after a successful login.
    async fn clear_failed_logins(&self, user_id: Uuid) -> StorageResult<()>;
    /// Replaces the mutable fields of a user (roles, flags, lockout state).
    async fn update_user(&self, user: &User) -> StorageResult<()>;

    /// Custom roles; the built-in ones live in code.
    async fn list_roles(&self) -> StorageResult<Vec<crate::rbac::Role>>;
    /// Stores a new custom role; [`StorageError::Conflict`] if the name exists.
    async fn insert_role(&self, role: &crate::rbac::Role, now: chrono::DateTime<chrono::Utc>) -> StorageResult<()>;
    /// Replaces a custom role's description, permissions and inherits; returns whether it exists.
    async fn update_role(&self, role: &crate::rbac::Role, now: chrono::DateTime<chrono::Utc>) -> StorageResult<bool>;
    /// Deletes a custom role; returns whether it existed.
    async fn delete_role(&self, name: &str) -> StorageResult<bool>;

    async fn insert_entry(&self, entry: &StoredEntry) -> StorageResult<()>;
    async fn find_entry(&self, id: Uuid) -> StorageResult<Option<StoredEntry>>;
    /// Writes `entry` if the stored revision is still `entry.revision - 1`.
    async fn update_entry(&self, entry: &StoredEntry) -> StorageResult<()>;
    /// Deletes an entry; returns whether it existed.
    async fn delete_entry(&self, id: Uuid) -> StorageResult<bool>;
    async fn list_entries(
        &self,
        filter: &EntryFilter,
        after: Option<&EntryCursor>,
        limit: u32,
    ) -> StorageResult<Vec<StoredEntry>>;
    /// Ranked full-text search; `terms` are plain words, never query syntax.
    async fn search_entries(
        &self,
        terms: &[String],
        filter: &EntryFilter,
        offset: u32,
        limit: u32,
    ) -> StorageResult<Vec<(StoredEntry, f64)>>;
    async fn entry_analytics(&self, days: u32) -> StorageResult<EntryAnalytics>;
    /// Writes a batch of imported entries in one transaction, one outcome per entry.
    async fn import_entries(&self, batch: &[StoredEntry], policy: ImportPolicy) -> StorageResult<Vec<ImportOutcome>>;
    /// Refreshes the query planner's statistics of the entry tables. A bulk
    /// import changes them so much that plans chosen from the old figures
    /// can be slower by orders of magnitude until the next automatic run.
    async fn refresh_entry_statistics(&self) -> StorageResult<()>;

    async fn insert_refresh_token(&self, token: &RefreshTokenRecord) -> StorageResult<()>;
    async fn find_refresh_token(&self, token_hash: &[u8]) -> StorageResult<Option<RefreshTokenRecord>>;
    /// Marks a token spent unless it is already spent or revoked. Returns
    /// whether this call spent it, so that of two concurrent refreshes exactly
    /// one wins.
    async fn spend_refresh_token(&self, token_hash: &[u8], at: chrono::DateTime<chrono::Utc>) -> StorageResult<bool>;
    async fn revoke_refresh_family(&self, family_id: &str, at: chrono::DateTime<chrono::Utc>) -> StorageResult<()>;
    /// Revokes every refresh token of a user except those of `keep_family`.
    async fn revoke_user_refresh_tokens(
        &self,
        user_id: Uuid,
        keep_family: Option<&str>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StorageResult<()>;
    /// Records a revoked access token until its expiry.
    async fn insert_revoked_token(&self, jti: &str, expires_at: chrono::DateTime<chrono::Utc>) -> StorageResult<()>;
    /// Revoked access tokens that have not expired by `now`.
    async fn list_revoked_tokens(&self, now: chrono::DateTime<chrono::Utc>) -> StorageResult<Vec<String>>;

    async fn find_mfa(&self, user_id: Uuid) -> StorageResult<Option<MfaRecord>>;
    /// Inserts or replaces a user's MFA state.
    async fn save_mfa(&self, record: &MfaRecord) -> StorageResult<()>;
    async fn delete_mfa(&self, user_id: Uuid) -> StorageResult<()>;
    /// Writes `next`'s recovery codes and last TOTP step only if the stored
    /// ones still equal `previous`'s. Returns whether it wrote them, so that
    /// a code sent by two racing requests is accepted once.
    async fn consume_mfa(&self, previous: &MfaRecord, next: &MfaRecord) -> StorageResult<bool>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StorageResult<()>;
    /// Inserts `key` unless its owner already has `max_live` live keys, in
    /// one transaction that serialises concurrent inserts for the same owner.
    /// A key is live at `now` when it is neither revoked nor expired, so a
    /// rotated key still in its grace period counts. `replaces` names a key
    /// of the same owner to revoke at the given time first, in the same
    /// transaction (a rotation): with a grace period it still counts, without
    /// one it makes room for its replacement.
    async fn insert_api_key_within_limit(
        &self,
        key: &ApiKeyRecord,
        replaces: Option<(&str, chrono::DateTime<chrono::Utc>)>,
        max_live: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StorageResult<LimitedKeyInsert>;
    async fn find_api_key(&self, id: &str) -> StorageResult<Option<ApiKeyRecord>>;
    async fn list_api_keys(&self, user_id: Option<Uuid>) -> StorageResult<Vec<ApiKeyRecord>>;
    /// Sets `revoked_at` unless it is already earlier; returns whether the key exists.
    async fn revoke_api_key(&self, id: &str, at: chrono::DateTime<chrono::Utc>) -> StorageResult<bool>;
    /// Writes coalesced `last_used_at` values in one transaction.
    async fn record_api_key_use(&self, uses: &[(String, chrono::DateTime<chrono::Utc>)]) -> StorageResult<()>;

    /// Returns up to `limit` non-null values of `field` in row-id order,
    /// starting after `after`, for a rewrap in batches.
    async fn list_encrypted_values(
        &self,
        field: EncryptedField,
        after: Option<Uuid>,
        limit: u32,
    ) -> StorageResult<Vec<EncryptedValue>>;
    /// Replaces one value of `field` with `next` only if it still equals
    /// `previous`; returns whether it did. A write that raced in wins.
    async fn replace_encrypted_value(
        &self,
        field: EncryptedField,
        row_id: Uuid,
        previous: &[u8],
        next: &[u8],
    ) -> StorageResult<bool>;
    /// Returns the stored key-check ciphertext, if one was written.
    async fn find_key_check(&self) -> StorageResult<Option<Vec<u8>>>;
    /// Stores the key check unless one exists; returns whether it stored it,
    /// so that of two instances starting at once one writes and one verifies.
    async fn insert_key_check(&self, ciphertext: &[u8], now: chrono::DateTime<chrono::Utc>) -> StorageResult<bool>;
    /// Replaces the key check only if it still equals `previous`.
    async fn replace_key_check(
        &self,
        previous: &[u8],
        next: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> StorageResult<bool>;
}

/// Opens the store named by `database_url` and applies its migrations.
///
/// # Errors
/// Fails when the database cannot be opened or migrated.
pub async fn connect(database_url: &str) -> StorageResult<SharedStore> {
    connect_with_pool(database_url, DEFAULT_POOL_SIZE).await
}

/// Connections per process by default (`DATABASE_POOL_SIZE`). Every instance
/// opens its own pool, so N instances open up to N times this many.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// As [`connect`], with at most `pool_size` PostgreSQL connections.
///
/// # Errors
/// Fails when the database cannot be opened or migrated.
pub async fn connect_with_pool(database_url: &str, pool_size: u32) -> StorageResult<SharedStore> {
    if database_url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::connect(database_url).await?;
        return Ok(Arc::new(store));
    }
    if let Some(postgres_url) = postgres::normalize_url(database_url) {
        let store = postgres::PostgresStore::connect(&postgres_url, pool_size).await?;
        return Ok(Arc::new(store));
    }
    Err(StorageError::Database(sqlx::Error::Configuration(
        "DATABASE_URL must start with sqlite:, postgres://, postgresql:// or postgresql+asyncpg://".into(),
    )))
}

/// Maps a sqlx error to the storage error a caller can act on.
pub(crate) fn classify(error: sqlx::Error) -> StorageError {
    match &error {
        // A connection cut mid-conversation surfaces as a protocol error.
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StorageError::Unavailable(error),
        sqlx::Error::Database(db) if db.is_unique_violation() => StorageError::Conflict {
            constraint: constraint_name(db.message()),
        },
        _ => StorageError::Database(error),
    }
}

/// Names a uniqueness violation after the columns involved, the same way on
/// every backend, so that callers can turn it into a precise 409.
fn constraint_name(message: &str) -> &'static str {
    if message.contains("category") || message.contains("entries_category_name") {
        "entries_category_name"
    } else if message.contains("username") {
        "users_username"
    } else if message.contains("roles") {
        "roles_name"
    } else {
        "unique"
    }
}

//! The API key lifecycle: create, list, rotate, revoke. Shared by the HTTP
//! API and the CLI, so the escalation rules are written once.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{api_key, Authenticator};
use crate::rbac::{Permission, PermissionSet};
use crate::storage::{ApiKeyRecord, LimitedKeyInsert, StorageError, User};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("API key not found")]
    NotFound,
    /// The owner already has `API_KEY_MAX_PER_USER` live keys.
    #[error(
        "the key owner already has {0} live API keys, the maximum set by API_KEY_MAX_PER_USER; \
         revoke a key that is no longer used, then try again"
    )]
    LimitReached(u32),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The settings a caller requests for a new key.
pub struct KeyRequest {
    pub name: String,
    pub permissions: Option<Vec<String>>,
    pub expires_in_days: Option<u32>,
    pub rate_limit_per_minute: Option<u32>,
}

/// Lifetime limits from the configuration.
#[derive(Clone, Copy)]
pub struct KeyLimits {
    pub default_days: u32,
    pub max_days: u32,
}

/// A created key: the record and the full key, shown once.
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

/// Creates a key for `owner`. Its permissions default to the owner's and may
/// not exceed them.
///
/// # Errors
/// [`KeyError::Invalid`] for a bad name, unknown permission, lifetime or
/// rate; [`KeyError::Forbidden`] for permissions the owner lacks;
/// [`KeyError::LimitReached`] when the owner already has
/// `API_KEY_MAX_PER_USER` live keys.
pub async fn create_key(
    auth: &Authenticator,
    owner: &User,
    request: KeyRequest,
    limits: KeyLimits,
    pepper: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<CreatedKey, KeyError> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "`name` must be 1 to 128 characters without control characters".into(),
        ));
    }
    let owner_permissions = auth.permissions_of(&owner.roles);
    let permissions = match request.permissions {
        None => owner_permissions.effective(),
        Some(names) => {
            let mut parsed = Vec::with_capacity(names.len());
            for name in &names {
                parsed.push(Permission::parse(name).map_err(|error| KeyError::Invalid(error.to_string()))?);
            }
            if !owner_permissions.covers(&PermissionSet::new(parsed.clone())) {
                return Err(KeyError::Forbidden(
                    "a key's permissions must be a subset of its owner's".into(),
                ));
            }
            parsed.iter().map(|p| p.to_string()).collect()
        }
    };
    let days = request.expires_in_days.unwrap_or(limits.default_days);
    if days == 0 || days > limits.max_days {
        return Err(KeyError::Invalid(format!(
            "`expires_in_days` must be from 1 to {}",
            limits.max_days
        )));
    }
    if let Some(rate) = request.rate_limit_per_minute {
        if rate == 0 || rate > 1_000_000 {
            return Err(KeyError::Invalid(
                "`rate_limit_per_minute` must be from 1 to 1000000".into(),
            ));
        }
    }

    let (key, parsed) = api_key::generate();
    let record = ApiKeyRecord {
        id: parsed.id.clone(),
        user_id: owner.id,
        name,
        secret_hash: parsed.secret_hash(pepper),
        permissions,
        rate_limit_per_minute: request.rate_limit_per_minute,
        created_at: now,
        expires_at: now + Duration::days(i64::from(days)),
        revoked_at: None,
        last_used_at: None,
    };
    insert_within_limit(auth, &record, None, now).await?;
    Ok(CreatedKey { record, key })
}

/// Stores a new key unless its owner is at `API_KEY_MAX_PER_USER`; the
/// store counts and inserts in one transaction, so the limit is exact under
/// concurrent requests and across instances sharing a database.
async fn insert_within_limit(
    auth: &Authenticator,
    record: &ApiKeyRecord,
    replaces: Option<(&str, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<(), KeyError> {
    let max_live = auth.settings.max_api_keys_per_user;
    match auth
        .store()
        .insert_api_key_within_limit(record, replaces, max_live, now)
        .await?
    {
        LimitedKeyInsert::Inserted => Ok(()),
        LimitedKeyInsert::LimitReached => Err(KeyError::LimitReached(max_live)),
        LimitedKeyInsert::ReplacedKeyNotLive => Err(KeyError::Invalid(
            "a revoked, rotated or expired key cannot be rotated".into(),
        )),
    }
}

/// Issues a replacement with the same owner, name, permissions, rate and
/// lifetime; the old key keeps working for `grace_hours`, then stops.
///
/// The replacement counts toward `API_KEY_MAX_PER_USER` like a new key, and
/// so does the old key until its grace period ends. With no grace period the
/// old key stops in the same transaction, so rotating at the limit works.
///
/// # Errors
/// [`KeyError::NotFound`]; [`KeyError::Invalid`] for a revoked key or a bad
/// grace period; [`KeyError::LimitReached`] when a grace period would take
/// the owner over the limit.
pub async fn rotate_key(
    auth: &Authenticator,
    old: &ApiKeyRecord,
    grace_hours: u32,
    pepper: &[u8; 32],
    now: DateTime<Utc>,
) -> Result<CreatedKey, KeyError> {
    // A key already rotated (still in its grace period) cannot be rotated
    // again, so one key never fans out into several live replacements.
    if old.revoked_at.is_some() || old.expires_at <= now {
        return Err(KeyError::Invalid(
            "a revoked, rotated or expired key cannot be rotated".into(),
        ));
    }
    if grace_hours > 24 * 30 {
        return Err(KeyError::Invalid("`grace_period_hours` must be from 0 to 720".into()));
    }
    let lifetime = old.expires_at - old.created_at;
    let (key, parsed) = api_key::generate();
    let record = ApiKeyRecord {
        id: parsed.id.clone(),
        user_id: old.user_id,
        name: old.name.clone(),
        secret_hash: parsed.secret_hash(pepper),
        permissions: old.permissions.clone(),
        rate_limit_per_minute: old.rate_limit_per_minute,
        created_at: now,
        expires_at: now + lifetime,
        revoked_at: None,
        last_used_at: None,
    };
    // Revoking in the same transaction also means that of two concurrent
    // rotations of one key, only the first issues a replacement.
    let old_stops_at = now + Duration::hours(i64::from(grace_hours));
    insert_within_limit(auth, &record, Some((&old.id, old_stops_at)), now).await?;
    auth.key_changed(&old.id).await;
    Ok(CreatedKey { record, key })
}

/// Loads a key that `caller_id` may manage: their own, or any with `admin`.
///
/// # Errors
/// [`KeyError::NotFound`] also for other users' keys, so ids cannot be probed.
pub async fn find_manageable_key(
    auth: &Authenticator,
    id: &str,
    caller_id: Uuid,
    admin: bool,
) -> Result<ApiKeyRecord, KeyError> {
    let valid_id = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid_id {
        return Err(KeyError::NotFound);
    }
    match auth.store().find_api_key(id).await? {
        Some(record) if admin || record.user_id == caller_id => Ok(record),
        _ => Err(KeyError::NotFound),
    }
}

//! User creation, shared by the admin API, the CLI and the bootstrap step.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use crate::auth::password::{check_policy, hash_password_async, PasswordPolicyError};
use crate::config::SecretString;
use crate::storage::{SharedStore, StorageError, User};

/// A user to create, with a plaintext password that is hashed here.
pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("{USERNAME_RULE}")]
    InvalidUsername,
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    #[error("a user with this username already exists (usernames are compared without regard to case)")]
    Exists,
    #[error(transparent)]
    Storage(StorageError),
    #[error("password hashing failed")]
    Hashing(#[source] anyhow::Error),
}

/// Longest accepted username, in characters (ASCII, so also in bytes).
pub const MAX_USERNAME_CHARS: usize = 64;

/// The username rule in words, for error messages.
pub const USERNAME_RULE: &str =
    "a username must be 1 to 64 characters, each an ASCII letter, a digit or one of `.`, `_`, `-`, `@`";

/// Checks a new username against [`USERNAME_RULE`]. ASCII only, so that no
/// two usernames look alike through characters of other scripts (Cyrillic
/// `а` against Latin `a`). Accounts created before the rule keep working.
pub fn is_valid_username(username: &str) -> bool {
    (1..=MAX_USERNAME_CHARS).contains(&username.len())
        && username
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'@'))
}

/// The start of the current second: token `iat` claims are whole seconds, so
/// session cut-offs are too.
pub fn whole_second(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::seconds(1)).unwrap_or(time)
}

/// The start of the next second: a cut-off that also rejects tokens issued
/// earlier in the current second.
pub fn whole_second_after(time: DateTime<Utc>) -> DateTime<Utc> {
    whole_second(time) + TimeDelta::seconds(1)
}

/// Validates and stores a new user; `known_roles` lists the role names that exist.
///
/// # Errors
/// Invalid username, policy violation, unknown role, or a username that
/// exists already, also with a different case.
pub async fn create_user(
    store: &SharedStore,
    known_roles: &[String],
    new: NewUser,
    now: DateTime<Utc>,
) -> Result<User, CreateUserError> {
    if !is_valid_username(&new.username) {
        return Err(CreateUserError::InvalidUsername);
    }
    check_policy(new.password.expose())?;
    // NOTE: two concurrent creations that differ only in case can both pass
    // this check. The unique index on `username` only catches exact duplicates.
    if store
        .username_taken_ignoring_case(&new.username)
        .await
        .map_err(CreateUserError::Storage)?
    {
        return Err(CreateUserError::Exists);
    }
    if let Some(unknown) = new.roles.iter().find(|role| !known_roles.contains(role)) {
        return Err(CreateUserError::UnknownRole(unknown.chars().take(64).collect()));
    }
    let password_hash = hash_password_async(new.password.expose().to_string())
        .await
        .map_err(CreateUserError::Hashing)?;
    let user = User {
        id: Uuid::new_v4(),
        username: new.username,
        password_hash,
        roles: new.roles,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        mfa_enabled: false,
        tokens_valid_after: whole_second(now),
        created_at: now,
        updated_at: now,
    };
    match store.insert_user(&user).await {
        Ok(()) => Ok(user),
        Err(StorageError::Conflict { .. }) => Err(CreateUserError::Exists),
        Err(other) => Err(CreateUserError::Storage(other)),
    }
}

/// Creates the bootstrap administrator when there are no users yet. Returns
/// the generated password when none was configured, for printing once.
///
/// # Errors
/// Storage or hashing failures.
pub async fn ensure_admin(
    store: &SharedStore,
    username: &str,
    password: Option<&SecretString>,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<SecretString>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let generated = password
        .is_none()
        .then(|| SecretString::new(crate::crypto::random_token(24)));
    let password = password
        .cloned()
        .or_else(|| generated.clone())
        .unwrap_or_else(|| SecretString::new(""));
    let new = NewUser {
        username: username.to_string(),
        password,
        roles: vec!["admin".into()],
    };
    create_user(store, &["admin".to_string()], new, now).await?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_accepts_documented_characters() {
        for name in [
            "admin",
            "a",
            "ana@example.com",
            "ci_bot-2",
            "First.Last",
            &"x".repeat(64),
        ] {
            assert!(is_valid_username(name), "{name}");
        }
    }

    #[test]
    fn username_rejects_other_characters() {
        let cases = [
            "",
            "c\u{430}rol",
            "caf\u{e9}",
            "with space",
            "tab\there",
            "nul\0",
            "user+tag@example.com",
            "a/b",
            "\u{ff41}dmin",
        ];
        for name in cases {
            assert!(!is_valid_username(name), "{name:?}");
        }
        assert!(!is_valid_username(&"x".repeat(65)), "65 characters");
    }
}

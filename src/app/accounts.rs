//! Changes to user accounts (roles, disable, enable, unlock), shared by the
//! admin API and the CLI so that the escalation rules live in one place.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::users::whole_second_after;
use crate::auth::{Authenticator, Principal};
use crate::rbac::{Permission, PermissionSet};
use crate::storage::{StorageError, User, UserCursor};

/// The changes requested; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct AccountChange {
    pub roles: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub unlock: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the last active administrator cannot be disabled or demoted")]
    LastAdmin,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn is_active_admin(auth: &Authenticator, user: &User) -> bool {
    !user.disabled && auth.permissions_of(&user.roles).iter().any(|p| p.as_str() == "*")
}

/// Refuses a change that would leave no enabled administrator.
async fn check_last_admin(auth: &Authenticator, before: &User, after: &User) -> Result<(), AccountError> {
    if !is_active_admin(auth, before) || is_active_admin(auth, after) {
        return Ok(());
    }
    let mut cursor = None;
    loop {
        let page = auth.store().list_users(cursor.as_ref(), 100).await?;
        if page
            .iter()
            .any(|user| user.id != before.id && is_active_admin(auth, user))
        {
            return Ok(());
        }
        match page.last() {
            Some(last) if page.len() == 100 => {
                cursor = Some(UserCursor {
                    created_at: last.created_at,
                    id: last.id,
                })
            }
            _ => return Err(AccountError::LastAdmin),
        }
    }
}

/// Checks that `actor` has every permission that `roles` would grant, so
/// that no one can hand out more than they have.
///
/// # Errors
/// [`AccountError::Forbidden`] otherwise.
pub fn check_can_grant(auth: &Authenticator, actor: &Principal, roles: &[String]) -> Result<(), AccountError> {
    if actor.permissions.covers(&auth.permissions_of(roles)) {
        Ok(())
    } else {
        Err(AccountError::Forbidden(crate::rbac::GRANT_DENIED.into()))
    }
}

/// Applies `change` to `target` on behalf of `actor`. It enforces three rules:
/// no one grants a permission they lack, no one changes their own roles or
/// disables themselves, and the last active administrator remains. Returns the updated
/// user and a description of what changed, for the audit trail.
///
/// # Errors
/// [`AccountError`] naming the rule that refused the change.
pub async fn change_account(
    auth: &Authenticator,
    actor: &Principal,
    target: User,
    change: AccountChange,
    now: DateTime<Utc>,
) -> Result<(User, String), AccountError> {
    let mut user = target.clone();
    let mut changes = Vec::new();

    if let Some(roles) = change.roles {
        if user.id == actor.user_id {
            return Err(AccountError::Forbidden("users cannot change their own roles".into()));
        }
        let known = auth.roles();
        if let Some(unknown) = roles.iter().find(|role| !known.contains_key(*role)) {
            let unknown: String = unknown.chars().take(64).collect();
            return Err(AccountError::Invalid(format!("unknown role `{unknown}`")));
        }
        check_can_grant(auth, actor, &roles)?;
        changes.push(format!("roles {:?} -> {:?}", user.roles, roles));
        user.roles = roles;
    }
    if let Some(disabled) = change.disabled {
        if disabled && user.id == actor.user_id {
            return Err(AccountError::Forbidden("users cannot disable themselves".into()));
        }
        if disabled && !user.disabled {
            // Every token issued so far stops working, and stays invalid
            // after the account is enabled again.
            user.tokens_valid_after = whole_second_after(now);
            auth.store().revoke_user_refresh_tokens(user.id, None, now).await?;
        }
        changes.push(format!("disabled {} -> {disabled}", user.disabled));
        user.disabled = disabled;
    }
    if change.unlock {
        user.locked_until = None;
        user.failed_logins = 0;
        changes.push("unlocked".into());
    }
    check_last_admin(auth, &target, &user).await?;

    user.updated_at = now;
    auth.store().update_user(&user).await?;
    auth.user_changed(user.id).await;
    Ok((user, format!("user {}: {}", target.id, changes.join(", "))))
}

/// Builds a principal for operator commands run on the server itself, with
/// every permission, acting as `user_id` (the nil id for account changes, so that
/// no self-change rule applies).
pub fn operator_principal(user_id: Uuid, username: &str) -> Principal {
    Principal {
        user_id,
        username: username.to_string(),
        roles: vec!["admin".into()],
        permissions: PermissionSet::new(Permission::parse("*").ok()),
        api_key_id: None,
        rate_limit_per_minute: None,
        mfa_enabled: false,
        session: None,
        mfa_enrollment_required: false,
        api_key_in_grace_period: false,
    }
}

//! Custom role administration, shared by the admin API and the CLI. The
//! built-in roles cannot be changed or deleted.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::auth::Principal;
use crate::rbac::{find_cycle, resolve_permissions, Permission, PermissionSet, Role};
use crate::storage::{SharedStore, StorageError, User, UserCursor};

#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("role not found")]
    NotFound,
    #[error("a role with this name already exists")]
    Exists,
    #[error("{0}")]
    InUse(String),
    #[error(transparent)]
    Storage(StorageError),
}

impl From<StorageError> for RoleError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Conflict { .. } => RoleError::Exists,
            other => RoleError::Storage(other),
        }
    }
}

/// A role definition as a client sends it.
pub struct RoleDefinition {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub inherits: Vec<String>,
}

fn valid_role_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.is_empty()
        && name.len() <= 64
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Validates a definition against the existing roles and the caller's own
/// permissions; returns the role to store.
///
/// # Errors
/// Invalid names, unknown permissions or inherited roles, a cycle, or
/// permissions the caller does not hold.
pub fn validate_role(
    definition: RoleDefinition,
    roles: &HashMap<String, Role>,
    caller: &Principal,
) -> Result<Role, RoleError> {
    if !valid_role_name(&definition.name) {
        return Err(RoleError::Invalid(
            "`name` must be 1 to 64 characters: a lowercase letter, then lowercase letters, digits, '_' or '-'".into(),
        ));
    }
    if roles.get(&definition.name).is_some_and(|role| role.builtin) {
        return Err(RoleError::Forbidden(
            "built-in roles cannot be changed or deleted".into(),
        ));
    }
    if definition
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1024 || d.contains('\0'))
    {
        return Err(RoleError::Invalid(
            "`description` must be at most 1024 characters without NUL".into(),
        ));
    }
    let mut permissions = Vec::with_capacity(definition.permissions.len());
    for name in &definition.permissions {
        permissions.push(Permission::parse(name).map_err(|error| RoleError::Invalid(error.to_string()))?);
    }
    if let Some(unknown) = definition.inherits.iter().find(|name| !roles.contains_key(*name)) {
        return Err(RoleError::Invalid(format!(
            "inherits an unknown role `{}`",
            unknown.chars().take(64).collect::<String>()
        )));
    }
    let role = Role {
        name: definition.name,
        description: definition.description,
        permissions,
        inherits: definition.inherits,
        builtin: false,
    };
    if let Some(on_cycle) = find_cycle(&role, roles) {
        return Err(RoleError::Invalid(format!(
            "inheritance would form a cycle through `{on_cycle}`"
        )));
    }

    // The role's effective permissions, inherited ones included, must all be
    // held by the caller, so that no one grants what they lack.
    let mut with_candidate = roles.clone();
    with_candidate.insert(role.name.clone(), role.clone());
    let effective = resolve_permissions(std::slice::from_ref(&role.name), &with_candidate);
    if !caller.permissions.covers(&effective) {
        return Err(RoleError::Forbidden(crate::rbac::GRANT_DENIED.into()));
    }
    Ok(role)
}

/// Checks that nothing refers to `name` before it is deleted.
///
/// # Errors
/// [`RoleError::InUse`] naming a user or role that refers to it.
pub async fn check_role_unused(
    store: &SharedStore,
    name: &str,
    roles: &HashMap<String, Role>,
) -> Result<(), RoleError> {
    if let Some(heir) = roles
        .values()
        .find(|role| role.inherits.iter().any(|inherited| inherited == name))
    {
        return Err(RoleError::InUse(format!("role `{}` inherits it", heir.name)));
    }
    let mut cursor: Option<UserCursor> = None;
    loop {
        let page: Vec<User> = store.list_users(cursor.as_ref(), 500).await?;
        if let Some(user) = page.iter().find(|user| user.roles.iter().any(|role| role == name)) {
            return Err(RoleError::InUse(format!("user {} has it", user.id)));
        }
        match page.last() {
            Some(last) if page.len() == 500 => {
                cursor = Some(UserCursor {
                    created_at: last.created_at,
                    id: last.id,
                })
            }
            _ => return Ok(()),
        }
    }
}

/// Resolves the effective permissions of a role, for display.
pub fn effective_permissions(role: &Role, roles: &HashMap<String, Role>) -> PermissionSet {
    resolve_permissions(std::slice::from_ref(&role.name), roles)
}

/// Checks that `name` is an existing custom role, which may be changed.
///
/// # Errors
/// [`RoleError::NotFound`], or [`RoleError::Forbidden`] for a built-in role.
pub fn check_custom_role(roles: &HashMap<String, Role>, name: &str) -> Result<(), RoleError> {
    match roles.get(name) {
        None => Err(RoleError::NotFound),
        Some(role) if role.builtin => Err(RoleError::Forbidden(
            "built-in roles cannot be changed or deleted".into(),
        )),
        Some(_) => Ok(()),
    }
}

/// Deletes a custom role that no user has and no role inherits.
///
/// # Errors
/// As [`check_custom_role`] and [`check_role_unused`].
pub async fn delete_role(store: &SharedStore, name: &str, roles: &HashMap<String, Role>) -> Result<(), RoleError> {
    check_custom_role(roles, name)?;
    check_role_unused(store, name, roles).await?;
    store.delete_role(name).await?;
    Ok(())
}

/// Stores a new role.
///
/// # Errors
/// [`RoleError::Exists`] or storage failures.
pub async fn insert_role(store: &SharedStore, role: &Role, now: DateTime<Utc>) -> Result<(), RoleError> {
    store.insert_role(role, now).await.map_err(RoleError::from)
}

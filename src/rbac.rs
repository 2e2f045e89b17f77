//! Roles, permission matching and the escalation rules of role-based access
//! control. Pure logic: storage of custom roles and HTTP live elsewhere.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Every permission name the registry defines. Anything else is rejected.
pub const KNOWN_PERMISSIONS: &[&str] = &[
    "read",
    "search",
    "write",
    "delete",
    "entries:manage",
    "analytics:read",
    "keys:manage",
    "keys:admin",
    "users:admin",
    "roles:admin",
    "audit:read",
    "security:admin",
];

/// The refusal when someone tries to grant (through a role, a user's roles or
/// an API key) a permission they do not have themselves.
pub const GRANT_DENIED: &str = "cannot grant permissions that the caller does not have";

/// A validated permission name: a known permission, `*`, or `prefix:*` for a
/// prefix that some known permission has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Permission(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl Permission {
    /// Parses a permission name.
    ///
    /// # Errors
    /// Returns [`UnknownPermission`] for a name outside the vocabulary.
    pub fn parse(name: &str) -> Result<Permission, UnknownPermission> {
        if name == "*" || KNOWN_PERMISSIONS.contains(&name) {
            return Ok(Permission(name.to_string()));
        }
        if let Some(prefix) = name.strip_suffix(":*") {
            let prefix_is_known = KNOWN_PERMISSIONS
                .iter()
                .any(|known| known.split_once(':').is_some_and(|(p, _)| p == prefix));
            if prefix_is_known {
                return Ok(Permission(name.to_string()));
            }
        }
        Err(UnknownPermission(truncate_for_message(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns whether holding this permission grants `needed` (a concrete name).
    pub fn grants(&self, needed: &str) -> bool {
        if self.0 == "*" || self.0 == needed {
            return true;
        }
        match self.0.strip_suffix('*') {
            Some(prefix) if prefix.ends_with(':') => needed.starts_with(prefix),
            _ => false,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn truncate_for_message(name: &str) -> String {
    name.chars().take(64).collect()
}

/// A set of held permissions, possibly with wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    pub fn new(permissions: impl IntoIterator<Item = Permission>) -> Self {
        PermissionSet(permissions.into_iter().collect())
    }

    /// Returns whether any held permission grants `needed`.
    pub fn allows(&self, needed: &str) -> bool {
        self.0.iter().any(|held| held.grants(needed))
    }

    /// Returns whether this set grants every permission of `other`, so that a
    /// holder of this set may hand `other` to someone else.
    pub fn covers(&self, other: &PermissionSet) -> bool {
        other.0.iter().all(|wanted| self.covers_one(wanted))
    }

    fn covers_one(&self, wanted: &Permission) -> bool {
        if wanted.as_str() == "*" {
            return self.allows("*") && self.0.iter().any(|p| p.as_str() == "*");
        }
        if wanted.as_str().ends_with(":*") {
            // A wildcard is covered when every concrete permission it expands to is.
            return KNOWN_PERMISSIONS
                .iter()
                .filter(|known| wanted.grants(known))
                .all(|known| self.allows(known));
        }
        self.allows(wanted.as_str())
    }

    /// Lists the concrete permissions this set grants, wildcards expanded.
    pub fn effective(&self) -> Vec<String> {
        KNOWN_PERMISSIONS
            .iter()
            .filter(|known| self.allows(known))
            .map(|known| known.to_string())
            .collect()
    }

    /// Returns the permissions granted by both sets, wildcards expanded.
    pub fn intersect(&self, other: &PermissionSet) -> PermissionSet {
        let names = KNOWN_PERMISSIONS
            .iter()
            .filter(|known| self.allows(known) && other.allows(known))
            .filter_map(|known| Permission::parse(known).ok());
        PermissionSet::new(names)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }
}

/// A role definition: its own permissions and the roles it inherits from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub inherits: Vec<String>,
    pub builtin: bool,
}

/// Returns the built-in roles, which cannot be changed or deleted.
pub fn builtin_roles() -> Vec<Role> {
    let role = |name: &str, description: &str, permissions: &[&str]| Role {
        name: name.to_string(),
        description: Some(description.to_string()),
        permissions: permissions.iter().filter_map(|p| Permission::parse(p).ok()).collect(),
        inherits: Vec::new(),
        builtin: true,
    };
    vec![
        role("admin", "Every permission", &["*"]),
        role(
            "user",
            "Registry work on one's own entries and keys",
            &["read", "search", "write", "delete", "analytics:read", "keys:manage"],
        ),
        role("viewer", "Read-only access", &["read", "search"]),
        role(
            "api_client",
            "Machine clients that read and publish",
            &["read", "search", "write"],
        ),
    ]
}

/// Resolves role names to effective permissions, following `inherits`.
/// Unknown role names grant nothing; cycles are cut (and rejected on write by
/// [`find_cycle`]).
pub fn resolve_permissions(role_names: &[String], roles: &HashMap<String, Role>) -> PermissionSet {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<&str> = role_names.iter().map(String::as_str).collect();
    let mut permissions = Vec::new();

    while let Some(name) = pending.pop() {
        if !seen.insert(name.to_string()) {
            continue;
        }
        if let Some(role) = roles.get(name) {
            permissions.extend(role.permissions.iter().cloned());
            pending.extend(role.inherits.iter().map(String::as_str));
        }
    }
    PermissionSet::new(permissions)
}

/// Returns a role on an inheritance cycle that `candidate` would create, if any.
pub fn find_cycle(candidate: &Role, roles: &HashMap<String, Role>) -> Option<String> {
    let mut pending: Vec<String> = candidate.inherits.clone();
    let mut seen = BTreeSet::new();

    while let Some(name) = pending.pop() {
        if name == candidate.name {
            return Some(name);
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(role) = roles.get(&name) {
            pending.extend(role.inherits.iter().cloned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> PermissionSet {
        PermissionSet::new(names.iter().map(|n| Permission::parse(n).unwrap()))
    }

    fn builtin_map() -> HashMap<String, Role> {
        builtin_roles().into_iter().map(|r| (r.name.clone(), r)).collect()
    }

    #[test]
    fn unknown_permission_rejected() {
        for name in ["", "admin", "read:*", "entries:delete", "nope:*", "*:*", "READ"] {
            assert!(Permission::parse(name).is_err(), "{name:?} must be rejected");
        }
    }

    #[test]
    fn wildcard_matching() {
        let cases = [
            ("*", "users:admin", true),
            ("keys:*", "keys:admin", true),
            ("keys:*", "keys:manage", true),
            ("keys:*", "users:admin", false),
            ("entries:*", "entries:manage", true),
            ("read", "read", true),
            ("read", "search", false),
        ];
        for (held, needed, expected) in cases {
            let permission = Permission::parse(held).unwrap();
            assert_eq!(permission.grants(needed), expected, "{held} grants {needed}");
        }
    }

    #[test]
    fn builtin_user_role_permissions() {
        let permissions = resolve_permissions(&["user".into()], &builtin_map());
        assert!(permissions.allows("write"));
        assert!(permissions.allows("keys:manage"));
        assert!(!permissions.allows("entries:manage"));
        assert!(!permissions.allows("users:admin"));
    }

    #[test]
    fn inherited_permissions_resolved() {
        let mut roles = builtin_map();
        roles.insert(
            "analyst".into(),
            Role {
                name: "analyst".into(),
                description: None,
                permissions: vec![Permission::parse("analytics:read").unwrap()],
                inherits: vec!["viewer".into()],
                builtin: false,
            },
        );
        let permissions = resolve_permissions(&["analyst".into()], &roles);
        assert_eq!(permissions.effective(), vec!["read", "search", "analytics:read"]);
    }

    #[test]
    fn inheritance_cycle_detected() {
        let mut roles = builtin_map();
        let a = Role {
            name: "a".into(),
            description: None,
            permissions: vec![],
            inherits: vec!["b".into()],
            builtin: false,
        };
        roles.insert("a".into(), a);
        let b = Role {
            name: "b".into(),
            description: None,
            permissions: vec![],
            inherits: vec!["a".into()],
            builtin: false,
        };
        assert_eq!(find_cycle(&b, &roles), Some("b".into()));
    }

    #[test]
    fn covers_requires_every_expanded_permission() {
        assert!(set(&["keys:manage", "keys:admin"]).covers(&set(&["keys:*"])));
        assert!(!set(&["keys:manage"]).covers(&set(&["keys:*"])));
        assert!(!set(&["users:admin", "keys:*"]).covers(&set(&["*"])));
        assert!(set(&["*"]).covers(&set(&["*"])));
        assert!(set(&["read", "write"]).covers(&set(&["read"])));
    }

    #[test]
    fn intersection_expands_wildcards() {
        let key = set(&["read", "keys:*"]);
        let owner = set(&["read", "keys:manage"]);
        assert_eq!(key.intersect(&owner).effective(), vec!["read", "keys:manage"]);
    }
}

//! Authentication: passwords, tokens, API keys, and the [`Principal`] that a
//! successful authentication produces. Permission checks live in `rbac`.

pub mod api_key;
mod cache;
mod hashing_pool;
pub mod jwt;
pub mod keys;
pub mod mfa;
pub mod password;
pub mod service;
pub mod sessions;

use uuid::Uuid;

use crate::rbac::PermissionSet;

pub use service::{AuthError, Authenticator, LoginOutcome, SecondFactor, TokenPair};

/// The caller of a request, with the permissions in force for this request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
    /// Effective permissions: the roles' union, intersected with the key's
    /// own permissions when the request used an API key.
    pub permissions: PermissionSet,
    pub api_key_id: Option<String>,
    /// A per-key override of the default rate limit.
    pub rate_limit_per_minute: Option<u32>,
    pub mfa_enabled: bool,
    /// The access token's session, when the request used one.
    pub session: Option<Session>,
    /// Set when the user's role requires MFA and they have not enrolled: the
    /// principal may then reach only `/auth/me` and `/auth/mfa/*`.
    pub mfa_enrollment_required: bool,
    /// Set when the request used a rotated key inside its grace period.
    pub api_key_in_grace_period: bool,
}

/// The access token a request presented.
#[derive(Debug, Clone)]
pub struct Session {
    pub jti: String,
    /// The refresh-token family (sign-in) the token belongs to.
    pub family_id: Option<String>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Principal {
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.allows(permission)
    }

    /// Returns the rate-limit bucket: the key when one is used, else the user.
    pub fn rate_limit_key(&self) -> String {
        match &self.api_key_id {
            Some(key_id) => format!("key:{key_id}"),
            None => format!("user:{}", self.user_id),
        }
    }
}

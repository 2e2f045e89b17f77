//! Login and per-request authentication, shared by the HTTP API and the CLI.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::jwt::{TokenError, TokenSigner, TokenType};
use super::password::{exceeds_maximum, verify_password_async};
use super::{api_key, Principal, Session};
use crate::clock::Clock;
use crate::crypto::Cipher;
use crate::rbac::{builtin_roles, resolve_permissions, Permission, PermissionSet, Role};
use crate::storage::{ApiKeyRecord, SharedStore, StorageError, User};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the account is locked")]
    AccountLocked { retry_after_seconds: u64 },
    #[error("missing credentials")]
    MissingCredentials,
    #[error("invalid or revoked token")]
    InvalidToken,
    #[error("the token has expired")]
    TokenExpired,
    #[error("invalid API key")]
    InvalidApiKey,
    #[error("the API key has been revoked")]
    ApiKeyRevoked,
    #[error("the API key has expired")]
    ApiKeyExpired,
    #[error("this account uses multi-factor authentication: send `totp_code` or `recovery_code`")]
    MfaRequired,
    #[error("invalid username, password or MFA code")]
    InvalidMfaCode,
    #[error("this refresh token was already used; the session has been revoked")]
    RefreshReused,
    #[error("your role requires multi-factor authentication: enrol through /auth/mfa/setup first")]
    MfaEnrollmentRequired,
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database could not be reached while authenticating (the cause
    /// was logged where it happened).
    #[error("database unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Tokens returned by a successful login or refresh.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in_seconds: i64,
    pub user_id: Uuid,
}

/// The second factor a login presents, if any.
#[derive(Clone, Copy, Default)]
pub struct SecondFactor<'a> {
    pub totp_code: Option<&'a str>,
    pub recovery_code: Option<&'a str>,
}

/// The outcome of a login attempt, for the audit trail.
pub struct LoginOutcome {
    pub result: Result<TokenPair, AuthError>,
    /// The user the attempt named, when it exists.
    pub user_id: Option<Uuid>,
    /// Set when this failure locked the account.
    pub locked_now: bool,
}

/// Settings the authenticator needs from the configuration.
pub struct AuthSettings {
    pub access_token_minutes: u32,
    pub refresh_token_days: u32,
    /// Holders of these roles must enrol in MFA before doing anything else.
    pub mfa_required_roles: Vec<String>,
    pub max_failed_attempts: u32,
    pub lockout_minutes: u32,
    /// Live API keys one user may hold (`API_KEY_MAX_PER_USER`).
    pub max_api_keys_per_user: u32,
}

/// Failed-login counts for usernames that do not exist, so that lockout
/// behaves the same for them and reveals nothing.
#[derive(Default)]
struct UnknownUserFailures(Mutex<HashMap<String, FailureCount>>);

/// Failures since the last lockout, and the end of the current lockout.
type FailureCount = (u32, Option<DateTime<Utc>>);

/// Most usernames tracked in [`UnknownUserFailures`]; older ones are dropped.
const UNKNOWN_USERS_TRACKED: usize = 50_000;

/// Checks credentials and turns them into a [`Principal`].
pub struct Authenticator {
    pub(super) store: SharedStore,
    pub(super) signer: TokenSigner,
    pub(super) peppers: Vec<[u8; 32]>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) settings: AuthSettings,
    pub(super) cipher: Arc<dyn Cipher>,
    /// `jti`s of access tokens revoked before expiry, loaded at start and
    /// added to on logout, so the per-request check needs no database read.
    pub(super) revoked_tokens: RwLock<HashSet<String>>,
    /// Recently read users and keys; see [`super::cache`].
    pub(super) cache: super::cache::PrincipalCache,
    /// The channel that announces changes to other instances; unset without Redis.
    pub(super) events: std::sync::OnceLock<crate::events::EventBus>,
    roles: RwLock<Arc<HashMap<String, Role>>>,
    unknown_failures: UnknownUserFailures,
    key_usage: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Authenticator {
    /// Builds the authenticator and loads the custom roles.
    ///
    /// # Errors
    /// Fails when the roles cannot be read.
    pub async fn new(
        store: SharedStore,
        signer: TokenSigner,
        peppers: Vec<[u8; 32]>,
        clock: Arc<dyn Clock>,
        settings: AuthSettings,
        cipher: Arc<dyn Cipher>,
    ) -> Result<Self, AuthError> {
        let revoked = store.list_revoked_tokens(clock.now()).await?;
        let authenticator = Authenticator {
            store,
            signer,
            peppers,
            clock,
            settings,
            cipher,
            revoked_tokens: RwLock::new(revoked.into_iter().collect()),
            events: std::sync::OnceLock::new(),
            cache: super::cache::PrincipalCache::default(),
            roles: RwLock::new(Arc::new(HashMap::new())),
            unknown_failures: UnknownUserFailures::default(),
            key_usage: Mutex::new(HashMap::new()),
        };
        authenticator.reload_roles().await?;
        Ok(authenticator)
    }

    /// Re-reads custom roles; call after any role change.
    ///
    /// # Errors
    /// Fails when the roles cannot be read.
    pub async fn reload_roles(&self) -> Result<(), AuthError> {
        let mut roles: HashMap<String, Role> = builtin_roles().into_iter().map(|r| (r.name.clone(), r)).collect();
        for role in self.store.list_roles().await? {
            roles.entry(role.name.clone()).or_insert(role);
        }
        if let Ok(mut guard) = self.roles.write() {
            *guard = Arc::new(roles);
        }
        Ok(())
    }

    async fn cached_user(&self, id: Uuid) -> Result<Option<User>, AuthError> {
        let now = self.clock.now();
        if let Some(user) = self.cache.user(id, now) {
            return Ok(Some(user));
        }
        let user = self.store.find_user(id).await?;
        if let Some(user) = &user {
            self.cache.put_user(user.clone(), now);
        }
        Ok(user)
    }

    async fn cached_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        let now = self.clock.now();
        if let Some(key) = self.cache.key(id, now) {
            return Ok(Some(key));
        }
        let key = self.store.find_api_key(id).await?;
        if let Some(key) = &key {
            self.cache.put_key(key.clone(), now);
        }
        Ok(key)
    }

    /// Evicts a changed user here and on every other instance; call after
    /// every change to a user's roles, status, password or MFA.
    pub async fn user_changed(&self, id: Uuid) {
        self.cache.forget_user(id);
        if let Some(bus) = self.events.get() {
            bus.publish(&crate::events::ClusterEvent::UserChanged { id }).await;
        }
    }

    /// Evicts a changed API key here and on every other instance; call after
    /// a revocation or rotation.
    pub async fn key_changed(&self, id: &str) {
        self.cache.forget_key(id);
        if let Some(bus) = self.events.get() {
            bus.publish(&crate::events::ClusterEvent::KeyChanged { id: id.to_string() })
                .await;
        }
    }

    /// Connects the authenticator to the other instances.
    pub fn set_event_bus(&self, bus: crate::events::EventBus) {
        let _ = self.events.set(bus);
    }

    /// Reloads the roles after a change here and notifies the other instances.
    ///
    /// # Errors
    /// Fails when the roles cannot be read.
    pub async fn roles_changed(&self) -> Result<(), AuthError> {
        self.reload_roles().await?;
        if let Some(bus) = self.events.get() {
            bus.publish(&crate::events::ClusterEvent::RolesChanged).await;
        }
        Ok(())
    }

    /// Applies a change announced by an instance (possibly this one).
    pub async fn apply_event(&self, event: &crate::events::ClusterEvent) {
        match event {
            crate::events::ClusterEvent::TokenRevoked { jti } => {
                if let Ok(mut revoked) = self.revoked_tokens.write() {
                    revoked.insert(jti.clone());
                }
            }
            crate::events::ClusterEvent::UserChanged { id } => self.cache.forget_user(*id),
            crate::events::ClusterEvent::KeyChanged { id } => self.cache.forget_key(id),
            crate::events::ClusterEvent::RolesChanged => {
                if let Err(error) = self.reload_roles().await {
                    tracing::warn!(error = %error, "could not reload roles after a change elsewhere");
                }
            }
            // Entry evictions belong to the registry.
            crate::events::ClusterEvent::EntryChanged { .. } | crate::events::ClusterEvent::EntriesChanged => {}
        }
    }

    /// Re-reads revoked tokens and roles, for an instance that may have
    /// missed announcements while disconnected.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn reload_shared_state(&self) -> Result<(), AuthError> {
        let revoked = self.store.list_revoked_tokens(self.clock.now()).await?;
        if let Ok(mut set) = self.revoked_tokens.write() {
            set.extend(revoked);
        }
        self.reload_roles().await
    }

    /// Returns the known roles, built-in and custom.
    pub fn roles(&self) -> Arc<HashMap<String, Role>> {
        self.roles.read().map(|guard| guard.clone()).unwrap_or_default()
    }

    /// Effective permissions of a set of role names.
    pub fn permissions_of(&self, roles: &[String]) -> PermissionSet {
        resolve_permissions(roles, &self.roles())
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub fn peppers(&self) -> &[[u8; 32]] {
        &self.peppers
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Checks a username and password and issues an access token.
    ///
    /// Unknown users, wrong passwords and locked accounts take the same
    /// Argon2 verification time. The outcome records which one it was, for the audit trail.
    pub async fn login(&self, username: &str, password: &str, second_factor: SecondFactor<'_>) -> LoginOutcome {
        let now = self.clock.now();
        let fail = |result: AuthError, user_id: Option<Uuid>, locked_now: bool| LoginOutcome {
            result: Err(result),
            user_id,
            locked_now,
        };

        // Over-long passwords are rejected before hashing so that they
        // cannot be used to burn CPU. A username with NUL cannot exist and
        // would fail the PostgreSQL lookup, so it is not looked up either.
        if exceeds_maximum(password) || username.len() > 256 || username.contains('\0') {
            return fail(AuthError::InvalidCredentials, None, false);
        }

        let user = match self.store.find_user_by_username(username).await {
            Ok(user) => user,
            Err(error) => return fail(error.into(), None, false),
        };
        let verified =
            verify_password_async(password.to_string(), user.as_ref().map(|u| u.password_hash.clone())).await;

        let Some(mut user) = user else {
            let (locked, locked_now) = self.count_unknown_failure(username, now);
            let error = match locked {
                Some(retry_after_seconds) => AuthError::AccountLocked { retry_after_seconds },
                None => AuthError::InvalidCredentials,
            };
            return fail(error, None, locked_now);
        };

        if let Some(until) = user.locked_until.filter(|until| *until > now) {
            return fail(
                AuthError::AccountLocked {
                    retry_after_seconds: seconds_until(now, until),
                },
                Some(user.id),
                false,
            );
        }
        if !verified {
            let locked_now = self.count_failure(&mut user, now).await;
            let error = match user.locked_until.filter(|until| *until > now) {
                Some(until) => AuthError::AccountLocked {
                    retry_after_seconds: seconds_until(now, until),
                },
                None => AuthError::InvalidCredentials,
            };
            return fail(error, Some(user.id), locked_now);
        }
        if user.disabled {
            return fail(AuthError::AccountDisabled, Some(user.id), false);
        }

        if user.mfa_enabled {
            match self.check_second_factor(&user, second_factor, now).await {
                Ok(()) => {}
                Err(AuthError::InvalidMfaCode) => {
                    let locked_now = self.count_failure(&mut user, now).await;
                    return fail(AuthError::InvalidMfaCode, Some(user.id), locked_now);
                }
                Err(error) => return fail(error, Some(user.id), false),
            }
        }

        if user.failed_logins > 0 || user.locked_until.is_some() {
            if let Err(error) = self.store.clear_failed_logins(user.id).await {
                return fail(error.into(), Some(user.id), false);
            }
        }
        let result = self.start_session(&user, now).await;
        LoginOutcome {
            result,
            user_id: Some(user.id),
            locked_now: false,
        }
    }

    /// Counts a failed login; returns whether this failure locked the account.
    /// Only the failure count and lockout change, atomically in the store, so
    /// that a flood of wrong passwords never undoes a concurrent admin change.
    pub(super) async fn count_failure(&self, user: &mut User, now: DateTime<Utc>) -> bool {
        let lock_until = now + Duration::minutes(i64::from(self.settings.lockout_minutes));
        match self
            .store
            .record_failed_login(user.id, self.settings.max_failed_attempts, lock_until)
            .await
        {
            Ok(Some(until)) => {
                user.locked_until = Some(until);
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::error!(error = %error, user_id = %user.id, "could not record a failed login");
                false
            }
        }
    }

    /// Applies the same lockout bookkeeping to a username that does not exist.
    /// Returns the remaining lockout, if locked, and whether this failure locked it.
    fn count_unknown_failure(&self, username: &str, now: DateTime<Utc>) -> (Option<u64>, bool) {
        let Ok(mut failures) = self.unknown_failures.0.lock() else {
            return (None, false);
        };
        if failures.len() >= UNKNOWN_USERS_TRACKED {
            failures.retain(|_, (_, until)| until.is_some_and(|until| until > now));
        }
        let record = failures.entry(username.to_string()).or_insert((0, None));
        if let Some(until) = record.1.filter(|until| *until > now) {
            return (Some(seconds_until(now, until)), false);
        }
        record.0 += 1;
        if record.0 >= self.settings.max_failed_attempts {
            let until = now + Duration::minutes(i64::from(self.settings.lockout_minutes));
            *record = (0, Some(until));
            return (Some(seconds_until(now, until)), true);
        }
        (None, false)
    }

    /// Authenticates an `Authorization: Bearer` access token.
    ///
    /// # Errors
    /// [`AuthError::TokenExpired`] or [`AuthError::InvalidToken`].
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self
            .signer
            .verify(token, TokenType::Access, self.clock.now())
            .map_err(|error| match error {
                TokenError::Expired => AuthError::TokenExpired,
                TokenError::Invalid(reason) => {
                    tracing::debug!(reason, "bearer token rejected");
                    AuthError::InvalidToken
                }
            })?;
        let revoked = self
            .revoked_tokens
            .read()
            .map(|set| {
                set.contains(&claims.jti)
                    || claims
                        .family_id
                        .as_ref()
                        .is_some_and(|family| set.contains(&super::sessions::family_marker(family)))
            })
            .unwrap_or(true);
        if revoked {
            return Err(AuthError::InvalidToken);
        }
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AuthError::InvalidToken)?;
        let user = self.cached_user(user_id).await?.ok_or(AuthError::InvalidToken)?;
        if user.disabled || claims.iat < user.tokens_valid_after.timestamp() {
            return Err(AuthError::InvalidToken);
        }
        let permissions = self.permissions_of(&user.roles);
        let mut principal = principal(&user, permissions, None, None);
        principal.session = Some(Session {
            jti: claims.jti,
            family_id: claims.family_id,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(DateTime::UNIX_EPOCH),
        });
        principal.mfa_enrollment_required = !user.mfa_enabled && self.requires_mfa(&user.roles);
        Ok(principal)
    }

    /// Authenticates an `X-API-Key` header.
    ///
    /// # Errors
    /// [`AuthError::InvalidApiKey`], [`AuthError::ApiKeyRevoked`] or
    /// [`AuthError::ApiKeyExpired`].
    pub async fn authenticate_api_key(&self, presented: &str) -> Result<Principal, AuthError> {
        // A malformed key or a bad checksum is rejected without a lookup.
        let parsed = api_key::parse(presented).ok_or(AuthError::InvalidApiKey)?;
        let record = self.cached_key(&parsed.id).await?.ok_or(AuthError::InvalidApiKey)?;
        if !parsed.matches(&record.secret_hash, &self.peppers) {
            return Err(AuthError::InvalidApiKey);
        }
        let now = self.clock.now();
        if record.revoked_at.is_some_and(|at| at <= now) {
            return Err(AuthError::ApiKeyRevoked);
        }
        if record.expires_at <= now {
            return Err(AuthError::ApiKeyExpired);
        }
        let owner = self
            .cached_user(record.user_id)
            .await?
            .ok_or(AuthError::InvalidApiKey)?;
        if owner.disabled {
            return Err(AuthError::InvalidApiKey);
        }

        // A key never grants more than its owner has right now.
        let key_permissions = PermissionSet::new(record.permissions.iter().filter_map(|p| Permission::parse(p).ok()));
        let permissions = key_permissions.intersect(&self.permissions_of(&owner.roles));
        self.note_key_use(&record.id, now);
        let in_grace_period = record.revoked_at.is_some();
        let mut principal = principal(&owner, permissions, Some(record.id), record.rate_limit_per_minute);
        principal.api_key_in_grace_period = in_grace_period;
        principal.mfa_enrollment_required = !owner.mfa_enabled && self.requires_mfa(&owner.roles);
        Ok(principal)
    }

    fn note_key_use(&self, key_id: &str, at: DateTime<Utc>) {
        if let Ok(mut usage) = self.key_usage.lock() {
            usage.insert(key_id.to_string(), at);
        }
    }

    /// Writes the coalesced `last_used_at` values gathered since the last call.
    ///
    /// # Errors
    /// Fails when the store rejects the batch; the values are then kept for the next call.
    pub async fn flush_key_usage(&self) -> Result<(), StorageError> {
        let pending: Vec<(String, DateTime<Utc>)> = match self.key_usage.lock() {
            Ok(mut usage) => usage.drain().collect(),
            Err(_) => return Ok(()),
        };
        if pending.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.store.record_api_key_use(&pending).await {
            if let Ok(mut usage) = self.key_usage.lock() {
                for (id, at) in pending {
                    usage.entry(id).or_insert(at);
                }
            }
            return Err(error);
        }
        Ok(())
    }
}

fn principal(
    user: &User,
    permissions: PermissionSet,
    api_key_id: Option<String>,
    rate_limit: Option<u32>,
) -> Principal {
    Principal {
        user_id: user.id,
        username: user.username.clone(),
        roles: user.roles.clone(),
        permissions,
        api_key_id,
        rate_limit_per_minute: rate_limit,
        mfa_enabled: user.mfa_enabled,
        session: None,
        mfa_enrollment_required: false,
        api_key_in_grace_period: false,
    }
}

fn seconds_until(now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1)
}

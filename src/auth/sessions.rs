//! Sessions: refresh-token families, logout, password change and MFA
//! enrolment, as methods of [`Authenticator`].
//!
//! A sign-in starts a family. Each refresh spends the presented token and
//! issues the next generation. A spent token presented again means it was
//! copied, so the whole family (and only that family) is revoked.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::mfa::{encode_secret, hash_recovery_code, new_recovery_codes, new_secret, otpauth_uri, verify_code};
use super::password::{check_policy, exceeds_maximum, hash_password_async, verify_password_async, PasswordPolicyError};
use super::service::{AuthError, Authenticator, SecondFactor, TokenPair};
use super::Principal;
use crate::app::users::whole_second_after;
use crate::crypto::random_token;
use crate::storage::{MfaRecord, RefreshTokenRecord, StorageError, User};

/// A spent refresh token presented again within this many seconds of its
/// spending counts as a race between two requests of the same client, not as
/// theft: it fails with `invalid_token` and the family stays valid. A thief
/// who replays a token inside this window gets no tokens either, but goes
/// undetected for that attempt.
const CONCURRENT_REFRESH_SECONDS: i64 = 2;

/// The result of a refresh, with what the audit trail needs.
pub struct RefreshOutcome {
    pub result: Result<TokenPair, AuthError>,
    pub user_id: Option<Uuid>,
    pub family_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("multi-factor authentication is already enabled")]
    AlreadyEnabled,
    #[error("multi-factor authentication is not enabled")]
    NotEnabled,
    #[error("no MFA setup is pending; call /auth/mfa/setup first")]
    NoPendingSetup,
    #[error("invalid or reused code")]
    InvalidCode,
    #[error("the password is wrong")]
    WrongPassword,
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl From<StorageError> for MfaError {
    fn from(error: StorageError) -> Self {
        MfaError::Auth(AuthError::Storage(error))
    }
}

/// Returns the entry in the revoked-token set that represents a whole sign-in.
pub(super) fn family_marker(family_id: &str) -> String {
    format!("fam:{family_id}")
}

fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) fn totp_context(user_id: Uuid) -> Vec<u8> {
    format!("user:{user_id}:totp").into_bytes()
}

impl Authenticator {
    /// Returns whether any of `roles` is listed in `MFA_REQUIRED_ROLES`.
    /// Inherited roles count: a role that inherits a listed one requires MFA too.
    pub fn requires_mfa(&self, roles: &[String]) -> bool {
        if self.settings.mfa_required_roles.is_empty() {
            return false;
        }
        let known = self.roles();
        let mut pending: Vec<&String> = roles.iter().collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(role) = pending.pop() {
            if self.settings.mfa_required_roles.contains(role) {
                return true;
            }
            if seen.insert(role.clone()) {
                if let Some(definition) = known.get(role) {
                    pending.extend(definition.inherits.iter());
                }
            }
        }
        false
    }

    /// Issues the next token pair of `family_id` (generation `generation`),
    /// valid from `now`.
    async fn issue_pair(
        &self,
        user_id: Uuid,
        family_id: &str,
        generation: i64,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let refresh_token = random_token(48);
        let record = RefreshTokenRecord {
            token_hash: hash_refresh_token(&refresh_token),
            family_id: family_id.to_string(),
            user_id,
            generation,
            created_at: now,
            expires_at: now + Duration::days(i64::from(self.settings.refresh_token_days)),
            spent_at: None,
            revoked_at: None,
        };
        self.store.insert_refresh_token(&record).await?;
        let lifetime = Duration::minutes(i64::from(self.settings.access_token_minutes));
        let (access_token, _) = self
            .signer
            .issue_in_family(user_id, family_id, now, lifetime)
            .map_err(|error| AuthError::Internal(error.into()))?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in_seconds: lifetime.num_seconds(),
            user_id,
        })
    }

    /// Starts a new sign-in family for `user`.
    ///
    /// Tokens are dated no earlier than the user's `tokens_valid_after` cut-off,
    /// which lies up to one second ahead after a disable or password change,
    /// so that a session started in that second is not born revoked.
    pub(super) async fn start_session(&self, user: &User, now: DateTime<Utc>) -> Result<TokenPair, AuthError> {
        self.issue_pair(
            user.id,
            &Uuid::new_v4().to_string(),
            1,
            now.max(user.tokens_valid_after),
        )
        .await
    }

    /// Exchanges a refresh token for a new pair, spending it.
    pub async fn refresh(&self, presented: &str) -> RefreshOutcome {
        let now = self.clock.now();
        let outcome = |result, user_id, family_id| RefreshOutcome {
            result,
            user_id,
            family_id,
        };
        if presented.is_empty() || presented.len() > 256 {
            return outcome(Err(AuthError::InvalidToken), None, None);
        }
        let record = match self.store.find_refresh_token(&hash_refresh_token(presented)).await {
            Ok(Some(record)) => record,
            Ok(None) => return outcome(Err(AuthError::InvalidToken), None, None),
            Err(error) => return outcome(Err(error.into()), None, None),
        };
        let user_id = Some(record.user_id);
        let family = Some(record.family_id.clone());

        if record.revoked_at.is_some() {
            return outcome(Err(AuthError::InvalidToken), user_id, family);
        }
        if let Some(spent_at) = record.spent_at {
            // Spent a moment ago: two requests of one client raced (a retry
            // or two tabs). The other one won; this one just fails.
            if now - spent_at < Duration::seconds(CONCURRENT_REFRESH_SECONDS) {
                return outcome(Err(AuthError::InvalidToken), user_id, family);
            }
            // Spent earlier: the token was copied. Revoke its family so that
            // neither the thief nor the victim keeps it.
            if let Err(error) = self.revoke_family(&record.family_id, now).await {
                return outcome(Err(error), user_id, family);
            }
            return outcome(Err(AuthError::RefreshReused), user_id, family);
        }
        if record.expires_at <= now {
            return outcome(Err(AuthError::TokenExpired), user_id, family);
        }
        match self.store.spend_refresh_token(&record.token_hash, now).await {
            Ok(true) => {}
            // Another request spent it a moment ago: that one wins.
            Ok(false) => return outcome(Err(AuthError::InvalidToken), user_id, family),
            Err(error) => return outcome(Err(error.into()), user_id, family),
        }

        let user = match self.store.find_user(record.user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return outcome(Err(AuthError::InvalidToken), user_id, family),
            Err(error) => return outcome(Err(error.into()), user_id, family),
        };
        if user.disabled || record.created_at < user.tokens_valid_after {
            return outcome(Err(AuthError::InvalidToken), user_id, family);
        }
        let issued_at = now.max(user.tokens_valid_after);
        let result = self
            .issue_pair(user.id, &record.family_id, record.generation + 1, issued_at)
            .await;
        outcome(result, user_id, family)
    }

    /// Revokes a sign-in: its refresh tokens, and every access token issued in
    /// it (by a marker kept until the longest-lived of them has expired).
    async fn revoke_family(&self, family_id: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        self.store.revoke_refresh_family(family_id, now).await?;
        let marker = family_marker(family_id);
        let lifetime = Duration::minutes(i64::from(self.settings.access_token_minutes)) + Duration::seconds(60);
        self.store.insert_revoked_token(&marker, now + lifetime).await?;
        if let Ok(mut revoked) = self.revoked_tokens.write() {
            revoked.insert(marker.clone());
        }
        if let Some(bus) = self.events.get() {
            bus.publish(&crate::events::ClusterEvent::TokenRevoked { jti: marker })
                .await;
        }
        Ok(())
    }

    /// Revokes the presented access token (until its expiry plus the largest
    /// allowed clock leeway, 60 seconds) and its family.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        let Some(session) = &principal.session else {
            return Ok(());
        };
        let now = self.clock.now();
        self.store
            .insert_revoked_token(&session.jti, session.expires_at + Duration::seconds(60))
            .await?;
        if let Ok(mut revoked) = self.revoked_tokens.write() {
            revoked.insert(session.jti.clone());
        }
        if let Some(bus) = self.events.get() {
            bus.publish(&crate::events::ClusterEvent::TokenRevoked {
                jti: session.jti.clone(),
            })
            .await;
        }
        if let Some(family) = &session.family_id {
            self.revoke_family(family, now).await?;
        }
        Ok(())
    }

    /// Changes the caller's password, revokes every other session and returns
    /// a new pair for the caller.
    ///
    /// # Errors
    /// [`MfaError::WrongPassword`] or a policy violation.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &str,
        new: &str,
    ) -> Result<TokenPair, MfaError> {
        let mut user = self.load_user(principal.user_id).await?;
        self.require_password(&user, current).await?;
        check_policy(new)?;
        let now = self.clock.now();
        user.password_hash = hash_password_async(new.to_string())
            .await
            .map_err(|error| MfaError::Auth(AuthError::Internal(error)))?;

        // Every token issued up to now stops working; the caller's new pair is
        // issued at the cut-off so that it stays valid.
        let cutoff = whole_second_after(now);
        user.tokens_valid_after = cutoff;
        self.store.set_password(user.id, &user.password_hash, cutoff).await?;
        self.user_changed(user.id).await;
        self.store.revoke_user_refresh_tokens(user.id, None, now).await?;
        Ok(self.start_session(&user, cutoff).await?)
    }

    async fn load_user(&self, user_id: Uuid) -> Result<User, AuthError> {
        self.store.find_user(user_id).await?.ok_or(AuthError::InvalidToken)
    }

    /// Checks the caller's password again before a sensitive change. A wrong
    /// one counts towards lockout like a failed login, and a locked account
    /// is refused, so these routes cannot be used to guess the password.
    async fn require_password(&self, user: &User, password: &str) -> Result<(), MfaError> {
        let now = self.clock.now();
        if let Some(until) = user.locked_until.filter(|until| *until > now) {
            let retry_after_seconds = u64::try_from((until - now).num_seconds().max(1)).unwrap_or(1);
            return Err(MfaError::Auth(AuthError::AccountLocked { retry_after_seconds }));
        }
        if exceeds_maximum(password)
            || !verify_password_async(password.to_string(), Some(user.password_hash.clone())).await
        {
            let mut counted = user.clone();
            self.count_failure(&mut counted, now).await;
            return Err(MfaError::WrongPassword);
        }
        Ok(())
    }

    /// Checks the second factor of a login for a user with MFA enabled,
    /// consuming the TOTP step or recovery code it used.
    pub(super) async fn check_second_factor(
        &self,
        user: &User,
        factor: SecondFactor<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), AuthError> {
        let Some(stored) = self.store.find_mfa(user.id).await? else {
            return Err(AuthError::InvalidMfaCode);
        };
        let mut next = stored.clone();
        if let Some(code) = factor.totp_code {
            let secret = self.decrypt_totp(user.id, stored.secret.as_deref())?;
            next.last_step =
                verify_code(&secret, code, now.timestamp(), stored.last_step).ok_or(AuthError::InvalidMfaCode)?;
        } else if let Some(code) = factor.recovery_code {
            let hashes: Vec<String> = self
                .peppers
                .iter()
                .map(|pepper| hash_recovery_code(pepper, code))
                .collect();
            next.recovery_codes.retain(|hash| !hashes.contains(hash));
            if next.recovery_codes.len() == stored.recovery_codes.len() {
                return Err(AuthError::InvalidMfaCode);
            }
        } else {
            return Err(AuthError::MfaRequired);
        }

        // Conditional on nothing having changed since the read, so a code
        // sent by two racing requests is accepted by one of them only.
        if !self.store.consume_mfa(&stored, &next).await? {
            return Err(AuthError::InvalidMfaCode);
        }
        Ok(())
    }

    fn decrypt_totp(&self, user_id: Uuid, ciphertext: Option<&[u8]>) -> Result<Vec<u8>, AuthError> {
        let ciphertext = ciphertext.ok_or(AuthError::InvalidMfaCode)?;
        self.cipher
            .decrypt(ciphertext, &totp_context(user_id))
            .map_err(|error| AuthError::Internal(anyhow::anyhow!("TOTP secret could not be decrypted: {error}")))
    }

    /// Starts MFA enrolment: a new secret, pending until confirmed.
    /// Returns the base32 secret and the `otpauth://` URI.
    ///
    /// # Errors
    /// [`MfaError::AlreadyEnabled`].
    pub async fn mfa_setup(&self, principal: &Principal, issuer: &str) -> Result<(String, String), MfaError> {
        let user = self.load_user(principal.user_id).await?;
        if user.mfa_enabled {
            return Err(MfaError::AlreadyEnabled);
        }
        let secret = new_secret();
        let record = MfaRecord {
            user_id: user.id,
            secret: None,
            pending_secret: Some(self.cipher.encrypt(&secret, &totp_context(user.id))),
            recovery_codes: Vec::new(),
            last_step: -1,
        };
        self.store.save_mfa(&record).await?;
        Ok((encode_secret(&secret), otpauth_uri(&secret, issuer, &user.username)))
    }

    /// Confirms enrolment with a code from the new secret; enables MFA and
    /// returns ten single-use recovery codes (shown once).
    ///
    /// # Errors
    /// [`MfaError::NoPendingSetup`] or [`MfaError::InvalidCode`].
    pub async fn mfa_confirm(&self, principal: &Principal, code: &str) -> Result<Vec<String>, MfaError> {
        let mut user = self.load_user(principal.user_id).await?;
        if user.mfa_enabled {
            return Err(MfaError::AlreadyEnabled);
        }
        let mut record = self.store.find_mfa(user.id).await?.ok_or(MfaError::NoPendingSetup)?;
        let pending = record.pending_secret.clone().ok_or(MfaError::NoPendingSetup)?;
        let secret = self.decrypt_totp(user.id, Some(&pending))?;
        let now = self.clock.now();
        let step = verify_code(&secret, code, now.timestamp(), record.last_step).ok_or(MfaError::InvalidCode)?;

        let codes = new_recovery_codes();
        let pepper = self.peppers.first().copied().unwrap_or_default();
        record.secret = Some(pending);
        record.pending_secret = None;
        record.last_step = step;
        record.recovery_codes = codes.iter().map(|code| hash_recovery_code(&pepper, code)).collect();
        self.store.save_mfa(&record).await?;
        user.mfa_enabled = true;
        self.store.set_mfa_enabled(user.id, true).await?;
        self.user_changed(user.id).await;
        Ok(codes)
    }

    /// Turns MFA off; needs the password and a current code.
    ///
    /// # Errors
    /// [`MfaError::NotEnabled`], [`MfaError::WrongPassword`] or [`MfaError::InvalidCode`].
    pub async fn mfa_disable(&self, principal: &Principal, password: &str, code: &str) -> Result<(), MfaError> {
        let mut user = self.load_user(principal.user_id).await?;
        if !user.mfa_enabled {
            return Err(MfaError::NotEnabled);
        }
        self.require_password(&user, password).await?;
        let now = self.clock.now();
        let factor = SecondFactor {
            totp_code: Some(code),
            recovery_code: None,
        };
        self.check_second_factor(&user, factor, now)
            .await
            .map_err(|_| MfaError::InvalidCode)?;
        self.store.delete_mfa(user.id).await?;
        user.mfa_enabled = false;
        self.store.set_mfa_enabled(user.id, false).await?;
        self.user_changed(user.id).await;
        Ok(())
    }
}

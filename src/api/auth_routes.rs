//! `/auth/*`: sign-in, refresh, logout, password change, MFA and the
//! caller's own identity.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::{record_security_event, SharedContext};
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::auth::sessions::MfaError;
use crate::auth::{AuthError, SecondFactor, TokenPair};
use crate::config::SecretString;
use crate::crypto::sha256_hex;
use crate::ratelimit::Limit;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/auth/password", post(change_password))
        .route("/auth/mfa/setup", post(mfa_setup))
        .route("/auth/mfa/confirm", post(mfa_confirm))
        .route("/auth/mfa/disable", post(mfa_disable))
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString::new)
    }
}

impl From<MfaError> for ApiError {
    fn from(error: MfaError) -> Self {
        match error {
            MfaError::AlreadyEnabled => ApiError::Conflict("mfa_already_enabled", error.to_string()),
            MfaError::NotEnabled => ApiError::Conflict("mfa_not_enabled", error.to_string()),
            MfaError::NoPendingSetup => ApiError::Conflict("mfa_setup_missing", error.to_string()),
            MfaError::InvalidCode => ApiError::Auth(AuthError::InvalidMfaCode),
            MfaError::WrongPassword => ApiError::Auth(AuthError::InvalidCredentials),
            MfaError::Policy(policy) => ApiError::InvalidParameter(policy.to_string()),
            MfaError::Auth(auth) => ApiError::Auth(auth),
        }
    }
}

fn token_body(tokens: &TokenPair) -> Json<Value> {
    Json(json!({
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "bearer",
        "expires_in": tokens.expires_in_seconds,
    }))
}

/// Writes a security event durably; a failure refuses the request.
async fn audit_security(
    state: &AppState,
    context: &SharedContext,
    user_id: Option<String>,
    event_type: &str,
    status: Status,
    severity: Severity,
    description: String,
) -> ApiResult<()> {
    let event = context
        .event(state, event_type, status, severity)
        .user(user_id, None)
        .description(description);
    record_security_event(state, event).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    totp_code: Option<SecretString>,
    #[serde(default)]
    recovery_code: Option<SecretString>,
}

async fn login(
    State(state): State<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<LoginRequest>,
) -> ApiResult<Json<Value>> {
    // A second budget per username, so one account cannot be guessed at from
    // many addresses faster than from one.
    let per_minute = state.config.login_rate_limit_per_minute;
    let username_key = format!("login-user:{}", body.username.to_lowercase());
    let decision = state
        .rate_limiter
        .check(
            &username_key,
            Limit {
                per_minute,
                burst: per_minute,
            },
            state.clock.now(),
        )
        .await;
    if !decision.allowed {
        return Err(ApiError::RateLimited {
            retry_after_seconds: decision.retry_after_seconds,
        });
    }

    let second_factor = SecondFactor {
        totp_code: body.totp_code.as_ref().map(SecretString::expose),
        recovery_code: body.recovery_code.as_ref().map(SecretString::expose),
    };
    let outcome = state
        .auth
        .login(&body.username, body.password.expose(), second_factor)
        .await;
    let user_id = outcome.user_id.map(|id| id.to_string());
    if let Some(user_id) = &user_id {
        context.set_acting_user(user_id.clone());
    }

    let (event_type, status, description) = match &outcome.result {
        Ok(_) if second_factor.recovery_code.is_some() => {
            ("login_success", Status::Success, "login succeeded with a recovery code")
        }
        Ok(_) => ("login_success", Status::Success, "login succeeded"),
        Err(AuthError::AccountLocked { .. }) => ("login_failed", Status::Denied, "login rejected: account locked"),
        Err(AuthError::AccountDisabled) => ("login_failed", Status::Denied, "login rejected: account disabled"),
        Err(AuthError::MfaRequired) => ("login_failed", Status::Failed, "login needs a second factor"),
        Err(AuthError::InvalidMfaCode) => ("login_failed", Status::Failed, "login failed: wrong MFA code"),
        Err(AuthError::InvalidCredentials) if outcome.user_id.is_none() => {
            ("login_failed", Status::Failed, "login failed: unknown username")
        }
        Err(_) => ("login_failed", Status::Failed, "login failed: wrong password"),
    };
    let severity = if status == Status::Success {
        Severity::Info
    } else {
        Severity::Medium
    };
    audit_security(
        &state,
        &context,
        user_id.clone(),
        event_type,
        status,
        severity,
        description.into(),
    )
    .await?;

    if status != Status::Success && !matches!(outcome.result, Err(AuthError::MfaRequired)) {
        // An unknown name is counted under a digest, so that a password
        // typed into the username field never reaches the log.
        let account = user_id
            .clone()
            .unwrap_or_else(|| format!("name:{}", &sha256_hex(body.username.to_lowercase().as_bytes())[..16]));
        let address = context.client_ip.to_string();
        for alarm in state.detectors.failed_login(&address, &account, state.clock.now()) {
            let mut event = context.event(&state, alarm.event_type, Status::Denied, alarm.severity);
            event.user_id = user_id.clone();
            event.description = alarm.description.clone();
            state.metrics.count_alarm(alarm.event_type);
            record_security_event(&state, event).await?;
        }
    }

    if outcome.locked_now {
        let description = format!(
            "account locked after {} failed logins",
            state.config.login_max_failed_attempts
        );
        audit_security(
            &state,
            &context,
            user_id,
            "account_locked",
            Status::Denied,
            Severity::High,
            description,
        )
        .await?;
    }

    let tokens = outcome.result?;
    Ok(token_body(&tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: SecretString,
}

async fn refresh(
    State(state): State<AppState>,
    Context(context): Context,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> ApiResult<Json<Value>> {
    let outcome = state.auth.refresh(body.refresh_token.expose()).await;
    let user_id = outcome.user_id.map(|id| id.to_string());
    if let Some(user_id) = &user_id {
        context.set_acting_user(user_id.clone());
    }
    let family = outcome.family_id.clone().unwrap_or_default();
    match &outcome.result {
        Ok(_) => {
            audit_security(
                &state,
                &context,
                user_id,
                "token_refreshed",
                Status::Success,
                Severity::Info,
                format!("session {family} refreshed"),
            )
            .await?;
        }
        Err(AuthError::RefreshReused) => {
            let description = format!("refresh token reused: session {family} revoked as stolen");
            audit_security(
                &state,
                &context,
                user_id,
                "refresh_token_reused",
                Status::Denied,
                Severity::High,
                description,
            )
            .await?;
        }
        Err(_) => {
            audit_security(
                &state,
                &context,
                user_id,
                "token_refresh_failed",
                Status::Failed,
                Severity::Low,
                "refresh token rejected".into(),
            )
            .await?;
        }
    }
    let tokens = outcome.result?;
    Ok(token_body(&tokens))
}

async fn logout(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
) -> ApiResult<StatusCode> {
    let principal = caller.0;
    state.auth.logout(&principal).await?;
    audit_security(
        &state,
        &context,
        Some(principal.user_id.to_string()),
        "logout",
        Status::Success,
        Severity::Info,
        "signed out; token and session revoked".into(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: Authenticated) -> Json<Value> {
    let principal = caller.0;
    let mut body = json!({
        "id": principal.user_id.to_string(),
        "username": principal.username,
        "roles": principal.roles,
        "permissions": principal.permissions.effective(),
        "mfa_enabled": principal.mfa_enabled,
    });
    if principal.mfa_enrollment_required {
        body["mfa_enrollment_required"] = Value::Bool(true);
    }
    if let Some(key_id) = principal.api_key_id {
        body["api_key_id"] = Value::String(key_id);
    }
    Json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    current_password: SecretString,
    new_password: SecretString,
}

async fn change_password(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    JsonBody(body): JsonBody<PasswordRequest>,
) -> ApiResult<Json<Value>> {
    let principal = caller.0;
    if principal.api_key_id.is_some() {
        return Err(ApiError::Forbidden(
            "an API key cannot change its owner's password".into(),
        ));
    }
    let result = state
        .auth
        .change_password(&principal, body.current_password.expose(), body.new_password.expose())
        .await;
    let user_id = Some(principal.user_id.to_string());
    match &result {
        Ok(_) => {
            audit_security(
                &state,
                &context,
                user_id,
                "password_changed",
                Status::Success,
                Severity::Medium,
                "password changed; other sessions revoked".into(),
            )
            .await?
        }
        Err(_) => {
            audit_security(
                &state,
                &context,
                user_id,
                "password_change_failed",
                Status::Failed,
                Severity::Medium,
                "password change rejected".into(),
            )
            .await?
        }
    }
    Ok(token_body(&result?))
}

fn require_session(principal: &crate::auth::Principal) -> ApiResult<()> {
    if principal.api_key_id.is_some() {
        return Err(ApiError::Forbidden(
            "MFA is managed with a signed-in session, not an API key".into(),
        ));
    }
    Ok(())
}

async fn mfa_setup(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
) -> ApiResult<Json<Value>> {
    let principal = caller.0;
    require_session(&principal)?;
    let (secret, uri) = state.auth.mfa_setup(&principal, &state.config.jwt_issuer).await?;
    audit_security(
        &state,
        &context,
        Some(principal.user_id.to_string()),
        "mfa_setup_started",
        Status::Success,
        Severity::Low,
        "MFA enrolment started".into(),
    )
    .await?;
    Ok(Json(json!({ "secret": secret, "otpauth_uri": uri })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    code: SecretString,
}

async fn mfa_confirm(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    JsonBody(body): JsonBody<ConfirmRequest>,
) -> ApiResult<Json<Value>> {
    let principal = caller.0;
    require_session(&principal)?;
    let codes = state.auth.mfa_confirm(&principal, body.code.expose()).await?;
    audit_security(
        &state,
        &context,
        Some(principal.user_id.to_string()),
        "mfa_enabled",
        Status::Success,
        Severity::Medium,
        "MFA enabled".into(),
    )
    .await?;
    Ok(Json(json!({ "recovery_codes": codes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableRequest {
    password: SecretString,
    code: SecretString,
}

async fn mfa_disable(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    JsonBody(body): JsonBody<DisableRequest>,
) -> ApiResult<StatusCode> {
    let principal = caller.0;
    require_session(&principal)?;
    let result = state
        .auth
        .mfa_disable(&principal, body.password.expose(), body.code.expose())
        .await;
    let user_id = Some(principal.user_id.to_string());
    match &result {
        Ok(()) => {
            audit_security(
                &state,
                &context,
                user_id,
                "mfa_disabled",
                Status::Success,
                Severity::High,
                "MFA disabled".into(),
            )
            .await?
        }
        Err(_) => {
            audit_security(
                &state,
                &context,
                user_id,
                "mfa_disable_failed",
                Status::Failed,
                Severity::Medium,
                "MFA disable rejected".into(),
            )
            .await?
        }
    }
    result?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/auth/*`: sign-in and the caller's own identity.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use crate::app::AppState;
use crate::audit::{AuditEvent, Severity, Status};
use crate::auth::AuthError;
use crate::config::SecretString;
use crate::ratelimit::Limit;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    #[allow(dead_code)]
    totp_code: Option<SecretString>,
    #[serde(default)]
    #[allow(dead_code)]
    recovery_code: Option<SecretString>,
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString::new)
    }
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
    let decision = state.rate_limiter.check(
        &username_key,
        Limit {
            per_minute,
            burst: per_minute,
        },
        state.clock.now(),
    );
    if !decision.allowed {
        return Err(ApiError::RateLimited {
            retry_after_seconds: decision.retry_after_seconds,
        });
    }

    let outcome = state.auth.login(&body.username, body.password.expose()).await;
    if let Some(user_id) = outcome.user_id {
        context.set_acting_user(user_id.to_string());
    }

    let (event_type, status, severity, description) = match &outcome.result {
        Ok(_) => (
            "login_success",
            Status::Success,
            Severity::Info,
            "login succeeded".to_string(),
        ),
        Err(AuthError::AccountLocked { .. }) => (
            "login_failed",
            Status::Denied,
            Severity::Medium,
            "login refused: account locked".to_string(),
        ),
        Err(AuthError::AccountDisabled) => (
            "login_failed",
            Status::Denied,
            Severity::Medium,
            "login refused: account disabled".to_string(),
        ),
        Err(AuthError::InvalidCredentials) if outcome.user_id.is_none() => (
            "login_failed",
            Status::Failed,
            Severity::Medium,
            "login failed: unknown username".to_string(),
        ),
        Err(_) => (
            "login_failed",
            Status::Failed,
            Severity::Medium,
            "login failed: wrong password".to_string(),
        ),
    };
    let mut event = AuditEvent::new(state.clock.now(), event_type, "login", status, severity)
        .user(outcome.user_id.map(|id| id.to_string()), None)
        .description(description);
    event.client_ip = Some(context.client_ip.to_string());
    event.request_id = Some(context.request_id.clone());
    state
        .audit
        .record_durable(event)
        .await
        .map_err(|_| ApiError::AuditUnavailable)?;

    if outcome.locked_now {
        let mut event = AuditEvent::new(
            state.clock.now(),
            "account_locked",
            "lockout",
            Status::Denied,
            Severity::High,
        )
        .user(outcome.user_id.map(|id| id.to_string()), None)
        .description(format!(
            "account locked after {} failed logins",
            state.config.login_max_failed_attempts
        ));
        event.client_ip = Some(context.client_ip.to_string());
        event.request_id = Some(context.request_id.clone());
        state
            .audit
            .record_durable(event)
            .await
            .map_err(|_| ApiError::AuditUnavailable)?;
    }

    let tokens = outcome.result?;
    Ok(Json(json!({
        "access_token": tokens.access_token,
        "token_type": "bearer",
        "expires_in": tokens.expires_in_seconds,
    })))
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
    if let Some(key_id) = principal.api_key_id {
        body["api_key_id"] = Value::String(key_id);
    }
    Json(body)
}

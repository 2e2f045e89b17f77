//! `/auth/*`: sign-in, refresh, logout, password change, MFA and the
//! caller's own identity.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::{record_security_event, SharedContext};
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::openapi::{
    Conflict, Forbidden, Locked, Me, MfaSetup, PayloadTooLarge, RecoveryCodes, TokenPair as TokenPairBody,
    Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::auth::sessions::MfaError;
use crate::auth::{AuthError, SecondFactor, TokenPair};
use crate::config::SecretString;
use crate::crypto::sha256_hex;
use crate::ratelimit::Limit;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(mfa_setup))
        .routes(routes!(mfa_confirm))
        .routes(routes!(mfa_disable))
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// The current code of the user's authenticator, when MFA is enabled.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    totp_code: Option<SecretString>,
    /// One of the user's unused recovery codes, in place of `totp_code`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    recovery_code: Option<SecretString>,
}

/// Signs in with a password and, when MFA is enabled, a second factor.
///
/// Failures look the same whether the user exists or not. Besides the
/// client's rate limit, each username has its own budget of
/// `LOGIN_RATE_LIMIT_PER_MINUTE` attempts.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "sessions",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in.", body = TokenPairBody,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 423, response = Locked),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    #[schema(value_type = String, format = Password)]
    refresh_token: SecretString,
}

/// Exchanges a refresh token for a new pair and spends it.
///
/// A refresh token presented a second time is treated as stolen: its whole
/// sign-in is revoked and the request gets 401 `refresh_token_reused`.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "sessions",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair of tokens.", body = TokenPairBody,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
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

/// Revokes the presented access token and every token of its sign-in.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, response = Unauthorized),
    ),
)]
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

/// Returns the caller's identity and effective permissions.
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The caller.", body = Me),
        (status = 401, response = Unauthorized),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    /// 8 to 128 characters, not a common password, not only whitespace and
    /// without control characters.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// Changes the caller's password and revokes every other session.
///
/// Needs a signed-in session, not an API key. A wrong `current_password`
/// counts towards the account lockout like a failed login.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = PasswordRequest,
    responses(
        (status = 200, description = "Changed. The body is a new pair of tokens for this session.", body = TokenPairBody,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 423, response = Locked),
    ),
)]
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

/// Starts TOTP enrolment with a new secret, pending until confirmed.
///
/// Needs a signed-in session, not an API key.
#[utoipa::path(
    post,
    path = "/auth/mfa/setup",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The new secret.", body = MfaSetup),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[schema(as = MfaConfirmRequest)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    /// A current code from the pending secret.
    #[schema(value_type = String, format = Password)]
    code: SecretString,
}

/// Enables MFA with a code from the pending secret.
///
/// Needs a signed-in session, not an API key.
#[utoipa::path(
    post,
    path = "/auth/mfa/confirm",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "MFA is enabled. The recovery codes are shown only here.", body = RecoveryCodes),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
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

#[derive(Deserialize, ToSchema)]
#[schema(as = MfaDisableRequest)]
#[serde(deny_unknown_fields)]
struct DisableRequest {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// A current TOTP code.
    #[schema(value_type = String, format = Password)]
    code: SecretString,
}

/// Disables MFA with the password and a current code.
///
/// Needs a signed-in session, not an API key. A wrong password counts
/// towards the account lockout like a failed login.
#[utoipa::path(
    post,
    path = "/auth/mfa/disable",
    tag = "sessions",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = DisableRequest,
    responses(
        (status = 204, description = "MFA is disabled."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
        (status = 423, response = Locked),
    ),
)]
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

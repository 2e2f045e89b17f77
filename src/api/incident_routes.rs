//! `/api/v1/admin/emergency` and `/api/v1/admin/logging`: the controls an
//! operator reaches for during an incident. Both need `security:admin` and
//! both are audited.

use axum::extract::State;
use axum::Json;
use chrono::{Duration, SecondsFormat};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::record_security_event;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::openapi::{
    EmergencyState, Forbidden, LogLevel, PayloadTooLarge, Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::incident::Emergency;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show_emergency, start_emergency, lift_emergency))
        .routes(routes!(show_logging, set_logging))
}

pub fn emergency_view(emergency: Option<&Emergency>) -> Value {
    match emergency {
        None => json!({ "active": false }),
        Some(emergency) => json!({
            "active": true,
            "rate_limit_per_minute": emergency.rate_limit_per_minute,
            "reason": emergency.reason,
            "started_at": emergency.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            "expires_at": emergency.expires_at.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
            "started_by": emergency.started_by,
        }),
    }
}

/// Returns whether emergency mode is on, and its settings.
#[utoipa::path(
    get,
    path = "/api/v1/admin/emergency",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Emergency mode.", body = EmergencyState),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
async fn show_emergency(State(state): State<AppState>, caller: Authenticated) -> ApiResult<Json<Value>> {
    caller.require("security:admin")?;
    Ok(Json(emergency_view(
        state.runtime.emergency(state.clock.now()).as_ref(),
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EmergencyRequest {
    /// The rate, also the burst, of every client without `security:admin`.
    #[schema(minimum = 1, maximum = 1_000_000)]
    rate_limit_per_minute: u32,
    /// 1 to 500 characters without control characters.
    #[schema(min_length = 1, max_length = 500, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    reason: String,
    /// Minutes until the emergency ends by itself, at most a week. Without it, it lasts until lifted.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10080)]
    duration_minutes: Option<u32>,
}

/// Starts emergency mode, or replaces the settings of the one in force.
#[utoipa::path(
    post,
    path = "/api/v1/admin/emergency",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = EmergencyRequest,
    responses(
        (status = 200, description = "Emergency mode is on.", body = EmergencyState),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn start_emergency(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    body: ApiResult<JsonBody<EmergencyRequest>>,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("security:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    crate::incident::check_emergency(body.rate_limit_per_minute, &body.reason, body.duration_minutes)
        .map_err(ApiError::InvalidParameter)?;
    let now = state.clock.now();
    let emergency = Emergency {
        rate_limit_per_minute: body.rate_limit_per_minute,
        reason: body.reason,
        started_at: now,
        expires_at: body
            .duration_minutes
            .map(|minutes| now + Duration::minutes(i64::from(minutes))),
        started_by: principal.user_id.to_string(),
    };
    // Recorded first: an emergency that the trail cannot show must not start.
    let event = context
        .event(&state, "emergency_mode_enabled", Status::Success, Severity::Critical)
        .user(Some(principal.user_id.to_string()), principal.api_key_id.clone())
        .description(format!(
            "emergency mode on: {} requests per minute for clients without security:admin{}; reason: {}",
            emergency.rate_limit_per_minute,
            body.duration_minutes
                .map(|minutes| format!(" for {minutes} minutes"))
                .unwrap_or_default(),
            emergency.reason
        ));
    record_security_event(&state, event).await?;
    state
        .runtime
        .set_emergency(&state.store, Some(emergency.clone()), now)
        .await?;
    Ok(Json(emergency_view(Some(&emergency))))
}

/// Lifts emergency mode. Lifting it when it is off changes nothing.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/emergency",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "Emergency mode is off.", body = EmergencyState),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
async fn lift_emergency(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("security:admin")?;
    let now = state.clock.now();
    if state.runtime.emergency(now).is_none() {
        // Nothing to lift: no event, so alerts are not raised for a no-op.
        return Ok(Json(emergency_view(None)));
    }
    state.runtime.set_emergency(&state.store, None, now).await?;
    let event = context
        .event(&state, "emergency_mode_disabled", Status::Success, Severity::Critical)
        .user(Some(principal.user_id.to_string()), principal.api_key_id.clone())
        .description("emergency mode lifted");
    record_security_event(&state, event).await?;
    Ok(Json(emergency_view(None)))
}

fn current_level(state: &AppState) -> String {
    state
        .runtime
        .log_level()
        .unwrap_or_else(|| state.config.log_level.clone())
}

/// Returns the log level in force.
#[utoipa::path(
    get,
    path = "/api/v1/admin/logging",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The log level.", body = LogLevel),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
async fn show_logging(State(state): State<AppState>, caller: Authenticated) -> ApiResult<Json<Value>> {
    caller.require("security:admin")?;
    Ok(Json(json!({ "level": current_level(&state) })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LoggingRequest {
    /// `trace`, `debug`, `info`, `warn` or `error`, in any case.
    #[schema(
        pattern = "^([Tt][Rr][Aa][Cc][Ee]|[Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn]|[Ee][Rr][Rr][Oo][Rr])$"
    )]
    level: String,
}

/// Changes the log level at run time, without a restart.
#[utoipa::path(
    put,
    path = "/api/v1/admin/logging",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = LoggingRequest,
    responses(
        (status = 200, description = "The new log level, in lowercase.", body = LogLevel),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn set_logging(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    body: ApiResult<JsonBody<LoggingRequest>>,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("security:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    let level = body.level.to_ascii_lowercase();
    if !crate::telemetry::LEVELS.contains(&level.as_str()) {
        return Err(ApiError::InvalidParameter(
            "`level` must be one of trace, debug, info, warn, error".into(),
        ));
    }
    let previous = current_level(&state);
    let event = context
        .event(&state, "log_level_changed", Status::Success, Severity::Medium)
        .user(Some(principal.user_id.to_string()), principal.api_key_id.clone())
        .description(format!("log level changed from {previous} to {level}"));
    record_security_event(&state, event).await?;
    state
        .runtime
        .set_log_level(&state.store, &level, state.clock.now())
        .await?;
    Ok(Json(json!({ "level": level })))
}

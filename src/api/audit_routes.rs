//! `/api/v1/admin/audit`: the queryable copy of the trail, and operator
//! notes recorded into it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::record_security_event;
use super::cursor;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::openapi::{
    AuditEventPage, AuditFilters, Forbidden, PayloadTooLarge, RecordedEvent, Severity as SeverityBody, Unauthorized,
    UnprocessableContent, UnsupportedMediaType,
};
use super::query::QueryPairs;
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::storage::audit::AuditQuery;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(query_events))
        .routes(routes!(record_event))
}

fn timestamp(query: &QueryPairs, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    match query.single(name)? {
        None => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|_| ApiError::InvalidParameter(format!("`{name}` must be an RFC 3339 timestamp"))),
    }
}

fn short_text(query: &QueryPairs, name: &str) -> ApiResult<Option<String>> {
    match query.single(name)? {
        Some(raw) if raw.len() > 256 => Err(ApiError::InvalidParameter(format!("`{name}` is longer than 256 bytes"))),
        other => Ok(other.map(str::to_string)),
    }
}

/// Parses the SPEC filters of `GET /api/v1/admin/audit`.
fn audit_query(state: &AppState, query: &QueryPairs) -> ApiResult<AuditQuery> {
    query.only(&[
        "severity",
        "user_id",
        "action",
        "event_type",
        "status",
        "since",
        "until",
        "limit",
        "cursor",
    ])?;
    let min_severity = match query.single("severity")? {
        None => None,
        Some(raw) => Some(Severity::parse(raw).ok_or_else(|| {
            ApiError::InvalidParameter("`severity` must be one of info, low, medium, high, critical".into())
        })?),
    };
    let status = match query.single("status")? {
        None => None,
        Some(raw) => Some(
            Status::parse(raw)
                .ok_or_else(|| ApiError::InvalidParameter("`status` must be one of success, failed, denied".into()))?,
        ),
    };
    let before_seq = match query.single("cursor")? {
        None => None,
        Some(raw) => Some(cursor::decode::<i64>(&state.cursor_key, "audit", raw)?),
    };
    Ok(AuditQuery {
        min_severity,
        user_id: short_text(query, "user_id")?,
        action: short_text(query, "action")?,
        event_type: short_text(query, "event_type")?,
        status,
        since: timestamp(query, "since")?,
        until: timestamp(query, "until")?,
        before_seq,
        limit: query.limit(50)?,
    })
}

/// Queries the database copy of the audit trail, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(AuditFilters),
    responses(
        (status = 200, description = "One page of events.", body = AuditEventPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn query_events(
    State(state): State<AppState>,
    caller: Authenticated,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    caller.require("audit:read")?;
    let mut filters = audit_query(&state, &query)?;
    let limit = filters.limit;
    filters.limit = limit + 1;
    let mut events = state.store.query_audit_events(&filters).await?;
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_cursor = if has_more {
        events
            .last()
            .map(|last| cursor::encode(&state.cursor_key, "audit", &last.seq))
    } else {
        None
    };
    Ok(Json(json!({
        "items": events.iter().map(|stored| &stored.event).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = ManualEventRequest)]
#[serde(deny_unknown_fields)]
struct ManualEvent {
    /// 1 to 64 characters of a-z, 0-9, `_` and `.`, starting with a letter,
    /// and not one of the event types that the server itself writes.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z][a-z0-9_.]*$")]
    event_type: String,
    #[schema(value_type = SeverityBody)]
    severity: String,
    /// 1 to 2000 characters, with line feed as the only control character allowed.
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00-\x09\x0B-\x1F\x7F-\x9F]*$")]
    description: String,
    /// The user the event is about: 1 to 128 letters, digits and `-_.@:`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._@:-]{1,128}$")]
    user_id: Option<String>,
}

fn validate(body: &ManualEvent) -> ApiResult<Severity> {
    crate::audit::check_manual_event(&body.event_type, &body.description, body.user_id.as_deref())
        .map_err(ApiError::InvalidParameter)?;
    Severity::parse(&body.severity)
        .ok_or_else(|| ApiError::InvalidParameter("`severity` must be one of info, low, medium, high, critical".into()))
}

/// Records an operator's note or manual security event. The event names
/// the user it is about; the operator is named in the description and in
/// the access event of the same request id.
#[utoipa::path(
    post,
    path = "/api/v1/admin/audit/events",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = ManualEvent,
    responses(
        (status = 201, description = "Recorded, on disk before this response.", body = RecordedEvent),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn record_event(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    body: ApiResult<JsonBody<ManualEvent>>,
) -> ApiResult<Response> {
    let principal = caller.require("security:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    let severity = validate(&body)?;
    let mut event = context.event(&state, &body.event_type, Status::Success, severity);
    event.action = "manual_event".into();
    event.user_id = body.user_id.clone();
    event.api_key_id = principal.api_key_id.clone();
    event.description = format!("{} (recorded by user {})", body.description, principal.user_id);
    let view = json!({
        "event_id": event.event_id,
        "timestamp": event.timestamp,
        "event_type": event.event_type,
        "severity": event.severity,
        "user_id": event.user_id,
        "description": event.description,
    });
    record_security_event(&state, event).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

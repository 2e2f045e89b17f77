//! `/api/v1/registry/entries`, search and analytics.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::cursor;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, JsonValue};
use super::openapi::{
    Analytics, Conflict, Entry, EntryFilters, EntryInput, EntryPage, EntryPatch, Forbidden, NotFound, PayloadTooLarge,
    PreconditionFailed, SearchPage, Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
use super::query::QueryPairs;
use crate::app::AppState;
use crate::registry::{entity_tag, validate_slug, EntryView, STATUSES};
use crate::storage::{EntryCursor, EntryFilter};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_entries, create_entry))
        .routes(routes!(get_entry, replace_entry, patch_entry, delete_entry))
        .routes(routes!(search_entries))
        .routes(routes!(analytics))
}

/// Parses an entry id from the path; anything but a UUID is a 404 (it cannot
/// name an entry), so path tricks never reach storage.
fn entry_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("entry not found".into()))
}

fn with_etag(status: StatusCode, view: EntryView) -> Response {
    let revision = view.revision;
    let mut response = (status, Json(view)).into_response();
    insert_etag(&mut response, revision);
    response
}

/// Sets the `ETag` header to the entry revision's entity tag.
fn insert_etag(response: &mut Response, revision: i64) {
    if let Ok(value) = HeaderValue::try_from(entity_tag(revision)) {
        response.headers_mut().insert(header::ETAG, value);
    }
}

fn if_match(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| ApiError::InvalidParameter("If-Match is not a valid entity tag list".into())),
    }
}

/// Reads the shared filters (`category`, `status`, `tag`, `owner_id`).
fn filter(query: &QueryPairs) -> ApiResult<EntryFilter> {
    let category = query.single("category")?.map(str::to_string);
    if let Some(category) = &category {
        validate_slug("category", category, false)
            .map_err(|error| ApiError::InvalidParameter(format!("`category` {}", error.message)))?;
    }
    let status = query.single("status")?.map(str::to_string);
    if let Some(status) = &status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::InvalidParameter(
                "`status` must be one of active, deprecated, archived".into(),
            ));
        }
    }
    let owner_id = match query.single("owner_id")? {
        None => None,
        Some(raw) => {
            Some(Uuid::parse_str(raw).map_err(|_| ApiError::InvalidParameter("`owner_id` must be a UUID".into()))?)
        }
    };
    let tags: Vec<String> = query.all("tag").map(str::to_string).collect();
    if tags.len() > 32 || tags.iter().any(|tag| tag.is_empty() || tag.chars().count() > 64) {
        return Err(ApiError::InvalidParameter(
            "give at most 32 `tag` values of 1 to 64 characters".into(),
        ));
    }
    Ok(EntryFilter {
        category,
        status,
        tags,
        owner_id,
    })
}

/// Creates an entry owned by the caller.
#[utoipa::path(
    post,
    path = "/api/v1/registry/entries",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = EntryInput,
    responses(
        (status = 201, description = "Created.", body = Entry, headers(
            ("Location" = String, description = "The entry's URL path."),
            ("ETag" = String, description = "The entry's revision as a strong entity tag."),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn create_entry(
    State(state): State<AppState>,
    caller: Authenticated,
    JsonValue(body): JsonValue,
) -> ApiResult<Response> {
    let principal = caller.require("write")?;
    let view = state.registry.create_entry(&principal, body).await?;
    let location = format!("/api/v1/registry/entries/{}", view.id);
    let mut response = with_etag(StatusCode::CREATED, view);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Returns one entry.
#[utoipa::path(
    get,
    path = "/api/v1/registry/entries/{id}",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("id" = String, Path, format = "uuid", description = "The entry's id.")),
    responses(
        (status = 200, description = "The entry.", body = Entry, headers(
            ("ETag" = String, description = "The entry's revision as a strong entity tag."),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
)]
async fn get_entry(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let principal = caller.require("read")?;
    let body = state.registry.get_entry(&principal, entry_id(&id)?).await?;
    // The body comes rendered from the entry cache. Only the headers are
    // built per request.
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.json,
    )
        .into_response();
    insert_etag(&mut response, body.revision);
    Ok(response)
}

/// Replaces an entry's content.
///
/// Needs `write` on one's own entry, or `entries:manage` on any.
#[utoipa::path(
    put,
    path = "/api/v1/registry/entries/{id}",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "The entry's id."),
        ("If-Match" = Option<String>, Header, nullable = false,
            description = "Apply only if one of these entity tags (or `*`) matches the entry's `ETag`."),
    ),
    request_body = EntryInput,
    responses(
        (status = 200, description = "The replaced entry.", body = Entry, headers(
            ("ETag" = String, description = "The entry's new revision as a strong entity tag."),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn replace_entry(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonValue(body): JsonValue,
) -> ApiResult<Response> {
    let principal = caller.0;
    if !principal.can("write") && !principal.can("entries:manage") {
        return Err(ApiError::PermissionDenied("write".into()));
    }
    let view = state
        .registry
        .replace_entry(&principal, entry_id(&id)?, body, if_match(&headers)?)
        .await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Changes an entry with a JSON merge patch (RFC 7396).
///
/// Needs `write` on one's own entry, or `entries:manage` on any.
#[utoipa::path(
    patch,
    path = "/api/v1/registry/entries/{id}",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "The entry's id."),
        ("If-Match" = Option<String>, Header, nullable = false,
            description = "Apply only if one of these entity tags (or `*`) matches the entry's `ETag`."),
    ),
    request_body(content(
        (EntryPatch = "application/merge-patch+json"),
        (EntryPatch = "application/json"),
    )),
    responses(
        (status = 200, description = "The changed entry.", body = Entry, headers(
            ("ETag" = String, description = "The entry's new revision as a strong entity tag."),
        )),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn patch_entry(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonValue(patch): JsonValue,
) -> ApiResult<Response> {
    let principal = caller.0;
    if !principal.can("write") && !principal.can("entries:manage") {
        return Err(ApiError::PermissionDenied("write".into()));
    }
    let view = state
        .registry
        .patch_entry(&principal, entry_id(&id)?, patch, if_match(&headers)?)
        .await?;
    Ok(with_etag(StatusCode::OK, view))
}

/// Deletes an entry.
///
/// Needs `delete` on one's own entry, or `entries:manage` on any.
#[utoipa::path(
    delete,
    path = "/api/v1/registry/entries/{id}",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("id" = String, Path, format = "uuid", description = "The entry's id."),
        ("If-Match" = Option<String>, Header, nullable = false,
            description = "Delete only if one of these entity tags (or `*`) matches the entry's `ETag`."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn delete_entry(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let principal = caller.0;
    if !principal.can("delete") && !principal.can("entries:manage") {
        return Err(ApiError::PermissionDenied("delete".into()));
    }
    state
        .registry
        .delete_entry(&principal, entry_id(&id)?, if_match(&headers)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists entries in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/registry/entries",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(EntryFilters),
    responses(
        (status = 200, description = "One page of entries.", body = EntryPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn list_entries(
    State(state): State<AppState>,
    caller: Authenticated,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("read")?;
    query.only(&["category", "status", "tag", "owner_id", "limit", "cursor"])?;
    let filter = filter(&query)?;
    let limit = query.limit(20)?;
    let after: Option<EntryCursor> = match query.single("cursor")? {
        None => None,
        Some(raw) => Some(cursor::decode(&state.cursor_key, "entries", raw)?),
    };
    let page = state
        .registry
        .list_entries(&principal, &filter, after.as_ref(), limit)
        .await?;
    let next_cursor = page
        .next
        .map(|next| cursor::encode(&state.cursor_key, "entries", &next));
    Ok(Json(json!({ "items": page.items, "next_cursor": next_cursor })))
}

/// Longest accepted search query, in characters.
const MAX_QUERY_CHARS: usize = 256;

/// Searches name, title, description and tags, best match first.
#[utoipa::path(
    get,
    path = "/api/v1/registry/search",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("q" = String, Query, min_length = 1, max_length = 256,
            description = "The words to look for, with at least one character that is not whitespace."),
        EntryFilters,
    ),
    responses(
        (status = 200, description = "One page of hits.", body = SearchPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn search_entries(
    State(state): State<AppState>,
    caller: Authenticated,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("search")?;
    query.only(&["q", "category", "status", "tag", "owner_id", "limit", "cursor"])?;
    let text = query.single("q")?.unwrap_or("");
    if text.trim().is_empty() || text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::InvalidParameter(format!(
            "`q` must be 1 to {MAX_QUERY_CHARS} characters"
        )));
    }
    let filter = filter(&query)?;
    let limit = query.limit(20)?;
    // The cursor binds the query text, so it cannot be replayed on another search.
    let cursor_kind = format!("search:{text}");
    let offset: u32 = match query.single("cursor")? {
        None => 0,
        Some(raw) => cursor::decode(&state.cursor_key, &cursor_kind, raw)?,
    };
    if offset > 10_000 {
        return Err(ApiError::InvalidCursor);
    }
    let page = state
        .registry
        .search_entries(&principal, text, &filter, offset, limit)
        .await?;
    let next_cursor = page
        .next_offset
        .map(|next| cursor::encode(&state.cursor_key, &cursor_kind, &next));
    Ok(Json(json!({ "items": page.items, "next_cursor": next_cursor })))
}

/// Days covered by `created_per_day`.
const ANALYTICS_DAYS: u32 = 30;

/// Returns counts over the whole registry.
#[utoipa::path(
    get,
    path = "/api/v1/registry/analytics",
    tag = "registry",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The counts.", body = Analytics),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn analytics(State(state): State<AppState>, caller: Authenticated, query: QueryPairs) -> ApiResult<Json<Value>> {
    caller.require("analytics:read")?;
    query.only(&[])?;
    let counts = state.registry.analytics(ANALYTICS_DAYS).await?;
    let to_map = |pairs: Vec<(String, i64)>| {
        pairs
            .into_iter()
            .map(|(name, count)| (name, json!(count)))
            .collect::<serde_json::Map<String, Value>>()
    };
    let mut active: Vec<(uuid::Uuid, u64)> = state
        .request_counts
        .lock()
        .map(|counts| counts.iter().map(|(id, n)| (*id, *n)).collect())
        .unwrap_or_default();
    active.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    active.truncate(10);

    Ok(Json(json!({
        "total": counts.total,
        "by_category": to_map(counts.by_category),
        "by_status": to_map(counts.by_status),
        "top_tags": counts.top_tags.iter().map(|(tag, count)| json!({"tag": tag, "count": count})).collect::<Vec<_>>(),
        "created_per_day": counts.created_per_day.iter().map(|(date, count)| json!({"date": date, "count": count})).collect::<Vec<_>>(),
        "most_active_principals": active.iter().map(|(id, n)| json!({"principal_id": id, "requests": n})).collect::<Vec<_>>(),
    })))
}

//! `/api/v1/keys`: API keys of the caller (everyone's with `keys:admin`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::context::record_change;
use super::error::{ApiError, ApiResult};
use super::extract::{from_value, parse_json, Authenticated, Context, JsonBody};
use super::openapi::{
    nullable_uuid_input, ApiKeyList, Conflict, CreatedApiKey, Forbidden, KeyFilters, NotFound, PayloadTooLarge,
    PermissionName, Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
use super::query::QueryPairs;
use crate::app::AppState;
use crate::auth::api_key::display_prefix;
use crate::auth::keys::{create_key, find_manageable_key, rotate_key, KeyError, KeyLimits, KeyRequest};
use crate::auth::Principal;
use crate::storage::ApiKeyRecord;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create))
        .routes(routes!(revoke))
        .routes(routes!(rotate))
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Invalid(message) => ApiError::InvalidParameter(message),
            KeyError::Forbidden(message) => ApiError::Forbidden(message),
            KeyError::NotFound => ApiError::NotFound("API key not found".into()),
            limit @ KeyError::LimitReached(_) => ApiError::Conflict("key_limit_reached", limit.to_string()),
            KeyError::Storage(storage) => storage.into(),
        }
    }
}

fn time(value: chrono::DateTime<chrono::Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn key_view(record: &ApiKeyRecord) -> Value {
    json!({
        "id": record.id,
        "name": record.name,
        "prefix": display_prefix(&record.id),
        "user_id": record.user_id.to_string(),
        "permissions": record.permissions,
        "rate_limit_per_minute": record.rate_limit_per_minute,
        "created_at": time(record.created_at),
        "expires_at": time(record.expires_at),
        "revoked_at": record.revoked_at.map(time),
        "last_used_at": record.last_used_at.map(time),
    })
}

fn manage_permission(principal: &Principal) -> ApiResult<bool> {
    if principal.can("keys:admin") {
        Ok(true)
    } else if principal.can("keys:manage") {
        Ok(false)
    } else {
        Err(ApiError::PermissionDenied("keys:manage".into()))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    /// 1 to 128 characters after trimming, without control characters.
    #[schema(min_length = 1)]
    name: String,
    /// A subset of the owner's permissions. Without it the key acts with the
    /// owner's current permissions, or, when an API key creates it, with
    /// that key's.
    #[serde(default)]
    #[schema(value_type = Option<Vec<PermissionName>>)]
    permissions: Option<Vec<String>>,
    /// From 1 to `API_KEY_MAX_EXPIRE_DAYS`, `API_KEY_EXPIRE_DAYS` by default.
    #[serde(default)]
    #[schema(minimum = 1)]
    expires_in_days: Option<u32>,
    /// Requests per minute, also the burst. Above `RATE_LIMIT_PER_MINUTE` it needs `keys:admin`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    rate_limit_per_minute: Option<u32>,
    /// The owner, when not the caller, which needs `keys:admin`.
    #[serde(default)]
    #[schema(schema_with = nullable_uuid_input)]
    user_id: Option<Uuid>,
}

/// Creates an API key.
///
/// Needs `keys:manage` for one's own keys and `keys:admin` for anyone's.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    operation_id = "create_api_key",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created. `key` is shown only in this response.", body = CreatedApiKey,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn create(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    body: ApiResult<JsonBody<CreateKeyRequest>>,
) -> ApiResult<Response> {
    let principal = caller.0;
    let admin = manage_permission(&principal)?;
    let JsonBody(body) = body?;
    let owner_id = body.user_id.unwrap_or(principal.user_id);
    if owner_id != principal.user_id && !admin {
        return Err(ApiError::PermissionDenied("keys:admin".into()));
    }
    let owner = state
        .store
        .find_user(owner_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("user not found".into()))?;

    // Without a list, a key made with an API key gets that key's permissions
    // and any other key gets its owner's. Either way the caller must hold
    // every permission the new key gets, so that `keys:admin` cannot mint a
    // key with an administrator's permissions.
    let permissions = match body.permissions {
        Some(wanted) => wanted,
        None if principal.api_key_id.is_some() => principal.permissions.effective(),
        None => state.auth.permissions_of(&owner.roles).effective(),
    };
    require_caller_holds(&principal, &permissions)?;
    let request = KeyRequest {
        name: body.name,
        permissions: Some(permissions),
        expires_in_days: body.expires_in_days,
        rate_limit_per_minute: body.rate_limit_per_minute,
    };
    // A custom rate may only lower the default, unless the caller
    // administers keys: otherwise every user could mint a key that escapes
    // RATE_LIMIT_PER_MINUTE.
    if let Some(rate) = request.rate_limit_per_minute {
        if rate > state.config.rate_limit_per_minute && !admin {
            return Err(ApiError::Forbidden(format!(
                "`rate_limit_per_minute` above the default of {} needs keys:admin",
                state.config.rate_limit_per_minute
            )));
        }
    }
    let limits = KeyLimits {
        default_days: state.config.api_key_expire_days,
        max_days: state.config.api_key_max_expire_days,
    };
    let pepper = current_pepper(&state)?;
    let created = create_key(&state.auth, &owner, request, limits, &pepper, state.clock.now()).await?;
    record_change(
        &state,
        &context,
        &principal,
        "api_key_created",
        format!("API key {} created for user {}", created.record.id, owner.id),
    )
    .await?;

    let mut body = key_view(&created.record);
    body["key"] = Value::String(created.key);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn current_pepper(state: &AppState) -> ApiResult<[u8; 32]> {
    state
        .auth
        .peppers()
        .first()
        .copied()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no API key pepper configured")))
}

/// Lists the caller's API keys, or with `keys:admin` everyone's.
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    operation_id = "list_api_keys",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(KeyFilters),
    responses(
        (status = 200, description = "The keys.", body = ApiKeyList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn list_keys(State(state): State<AppState>, caller: Authenticated, query: QueryPairs) -> ApiResult<Json<Value>> {
    let principal = caller.0;
    let admin = manage_permission(&principal)?;
    query.only(&["user_id"])?;
    let filter = match query.single("user_id")? {
        None if admin => None,
        None => Some(principal.user_id),
        Some(raw) => {
            let id = Uuid::parse_str(raw).map_err(|_| ApiError::InvalidParameter("`user_id` must be a UUID".into()))?;
            if id != principal.user_id && !admin {
                return Err(ApiError::PermissionDenied("keys:admin".into()));
            }
            Some(id)
        }
    };
    let keys = state.store.list_api_keys(filter).await?;
    Ok(Json(
        json!({ "items": keys.iter().map(key_view).collect::<Vec<_>>(), "next_cursor": null }),
    ))
}

#[derive(Deserialize, Default, ToSchema)]
#[schema(as = RotateKeyRequest)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    /// Hours that the old key keeps working. 0, the default, revokes it at once.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 720)]
    grace_period_hours: Option<u32>,
}

/// Rejects with 403 unless the caller has every permission in `granted`.
/// Names that do not parse are left to the key service, which rejects them
/// with 422.
fn require_caller_holds(principal: &Principal, granted: &[String]) -> ApiResult<()> {
    let parsed: Vec<_> = granted
        .iter()
        .filter_map(|name| crate::rbac::Permission::parse(name).ok())
        .collect();
    if principal.permissions.covers(&crate::rbac::PermissionSet::new(parsed)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(crate::rbac::GRANT_DENIED.into()))
    }
}

/// Replaces an API key with a new one of the same settings.
///
/// The body is optional. The old key stops working after the grace period.
/// A revoked, expired or already rotated key cannot be rotated (422).
#[utoipa::path(
    post,
    path = "/api/v1/keys/{id}/rotate",
    tag = "keys",
    operation_id = "rotate_api_key",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("id" = String, Path, description = "The key id.")),
    request_body = Option<RotateRequest>,
    responses(
        (status = 201, description = "The new key. `key` is shown only in this response.", body = CreatedApiKey,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn rotate(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let principal = caller.0;
    let admin = manage_permission(&principal)?;
    let old = find_manageable_key(&state.auth, &id, principal.user_id, admin).await?;
    // The replacement carries the old key's permissions, so rotating is
    // granting them again: the caller must hold them all.
    require_caller_holds(&principal, &old.permissions)?;
    // The body is optional: none means no grace period.
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        from_value(parse_json(&body)?)?
    };
    let grace = request.grace_period_hours.unwrap_or(0);
    let pepper = current_pepper(&state)?;
    let created = rotate_key(&state.auth, &old, grace, &pepper, state.clock.now()).await?;
    record_change(
        &state,
        &context,
        &principal,
        "api_key_rotated",
        format!(
            "API key {} rotated to {} with {grace} h grace",
            old.id, created.record.id
        ),
    )
    .await?;
    let mut body = key_view(&created.record);
    body["key"] = Value::String(created.key);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Revokes an API key at once.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    operation_id = "revoke_api_key",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("id" = String, Path, description = "The key id.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
)]
async fn revoke(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let principal = caller.0;
    let admin = manage_permission(&principal)?;
    let key = find_manageable_key(&state.auth, &id, principal.user_id, admin).await?;
    state.store.revoke_api_key(&key.id, state.clock.now()).await?;
    state.auth.key_changed(&key.id).await;
    record_change(
        &state,
        &context,
        &principal,
        "api_key_revoked",
        format!("API key {} revoked", key.id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

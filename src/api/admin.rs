//! `/api/v1/admin/users`: user administration, with the escalation rules.

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
use super::cursor;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::openapi::{
    Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, UnprocessableContent, UnsupportedMediaType,
    User as UserBody, UserPage,
};
use super::query::QueryPairs;
use crate::app::accounts::{change_account, check_can_grant, AccountChange, AccountError};
use crate::app::{create_user, AppState, CreateUserError, NewUser};
use crate::config::SecretString;
use crate::storage::{User, UserCursor};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create))
        .routes(routes!(get_user, update))
}

fn user_view(user: &User, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "id": user.id.to_string(),
        "username": user.username,
        "roles": user.roles,
        "disabled": user.disabled,
        "locked": user.locked_until.is_some_and(|until| until > now),
        "mfa_enabled": user.mfa_enabled,
        "created_at": user.created_at.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

impl From<CreateUserError> for ApiError {
    fn from(error: CreateUserError) -> Self {
        match error {
            CreateUserError::Exists => ApiError::Conflict("username_taken", error.to_string()),
            CreateUserError::Storage(storage) => storage.into(),
            CreateUserError::Hashing(cause) => ApiError::Internal(cause),
            other => ApiError::InvalidParameter(other.to_string()),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    /// 1 to 64 characters from ASCII letters, digits and `.`, `_`, `-`, `@`,
    /// unique without regard to case.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    username: String,
    /// 8 to 128 characters, not a common password, not only whitespace and
    /// without control characters.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    password: SecretString,
    /// Defaults to `["user"]`. The caller must hold every permission these grant.
    #[serde(default)]
    roles: Option<Vec<String>>,
}

/// Creates a user.
#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    operation_id = "create_user",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created.", body = UserBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
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
    body: ApiResult<JsonBody<CreateUserRequest>>,
) -> ApiResult<Response> {
    let principal = caller.require("users:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    let roles = body.roles.unwrap_or_else(|| vec!["user".into()]);
    check_can_grant(&state.auth, &principal, &roles)?;
    let known: Vec<String> = state.auth.roles().keys().cloned().collect();
    let new = NewUser {
        username: body.username,
        password: body.password,
        roles,
    };
    let user = create_user(&state.store, &known, new, state.clock.now()).await?;
    record_change(
        &state,
        &context,
        &principal,
        "user_created",
        format!("user {} created with roles {:?}", user.id, user.roles),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user_view(&user, state.clock.now()))).into_response())
}

/// Lists users in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 20 by default."),
        ("cursor" = Option<String>, Query, min_length = 1, description = "The `next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "One page of users.", body = UserPage),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn list_users(State(state): State<AppState>, caller: Authenticated, query: QueryPairs) -> ApiResult<Json<Value>> {
    caller.require("users:admin")?;
    query.only(&["limit", "cursor"])?;
    let limit = query.limit(20)?;
    let after: Option<UserCursor> = match query.single("cursor")? {
        None => None,
        Some(raw) => Some(cursor::decode(&state.cursor_key, "users", raw)?),
    };
    let mut users = state.store.list_users(after.as_ref(), limit + 1).await?;
    let has_more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let next_cursor = if has_more {
        users.last().map(|last| {
            cursor::encode(
                &state.cursor_key,
                "users",
                &UserCursor {
                    created_at: last.created_at,
                    id: last.id,
                },
            )
        })
    } else {
        None
    };
    let now = state.clock.now();
    Ok(Json(json!({
        "items": users.iter().map(|user| user_view(user, now)).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

async fn load_user(state: &AppState, raw_id: &str) -> ApiResult<User> {
    let id = Uuid::parse_str(raw_id).map_err(|_| ApiError::NotFound("user not found".into()))?;
    state
        .store
        .find_user(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("user not found".into()))
}

/// Returns one user.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    responses(
        (status = 200, description = "The user.", body = UserBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
)]
async fn get_user(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require("users:admin")?;
    let user = load_user(&state, &id).await?;
    Ok(Json(user_view(&user, state.clock.now())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    /// Replaces the user's roles. Users cannot change their own roles, and
    /// the caller must hold every permission the new roles grant.
    #[serde(default)]
    roles: Option<Vec<String>>,
    /// Disabling stops the user's tokens and keys at once. The last active
    /// administrator cannot be disabled.
    #[serde(default)]
    disabled: Option<bool>,
    /// `true` ends a lockout, and `false` does nothing.
    #[serde(default)]
    unlock: Option<bool>,
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Invalid(message) => ApiError::InvalidParameter(message),
            AccountError::Forbidden(message) => ApiError::Forbidden(message),
            AccountError::LastAdmin => ApiError::Conflict("last_admin", error.to_string()),
            AccountError::Storage(storage) => storage.into(),
        }
    }
}

/// Changes a user's roles, disables or enables the user, or ends a lockout.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    tag = "admin",
    operation_id = "update_user",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("id" = String, Path, format = "uuid", description = "The user's id.")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The changed user.", body = UserBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
async fn update(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    Path(id): Path<String>,
    body: ApiResult<JsonBody<UpdateUserRequest>>,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("users:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    let target = load_user(&state, &id).await?;
    let now = state.clock.now();
    let change = AccountChange {
        roles: body.roles,
        disabled: body.disabled,
        unlock: body.unlock == Some(true),
    };
    let (user, description) = change_account(&state.auth, &principal, target, change, now).await?;
    record_change(&state, &context, &principal, "user_updated", description).await?;
    Ok(Json(user_view(&user, now)))
}

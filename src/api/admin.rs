//! `/api/v1/admin/users`: user administration, with the escalation rules.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::context::record_change;
use super::cursor;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::query::QueryPairs;
use crate::app::accounts::{change_account, check_can_grant, AccountChange, AccountError};
use crate::app::{create_user, AppState, CreateUserError, NewUser};
use crate::config::SecretString;
use crate::storage::{User, UserCursor};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", get(list_users).post(create))
        .route("/api/v1/admin/users/{id}", get(get_user).patch(update))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    username: String,
    password: SecretString,
    #[serde(default)]
    roles: Option<Vec<String>>,
}

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

async fn get_user(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require("users:admin")?;
    let user = load_user(&state, &id).await?;
    Ok(Json(user_view(&user, state.clock.now())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
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

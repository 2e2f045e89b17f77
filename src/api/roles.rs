//! `/api/v1/admin/roles`: custom roles next to the built-in ones.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::record_change;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use crate::app::roles::{
    check_custom_role, delete_role as delete_custom_role, effective_permissions, insert_role, validate_role,
    RoleDefinition, RoleError,
};
use crate::app::AppState;
use crate::rbac::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/roles", get(list_roles).post(create_role))
        .route(
            "/api/v1/admin/roles/{name}",
            get(get_role).put(replace_role).delete(delete_role),
        )
}

impl From<RoleError> for ApiError {
    fn from(error: RoleError) -> Self {
        match error {
            RoleError::Invalid(message) => ApiError::InvalidParameter(message),
            RoleError::Forbidden(message) => ApiError::Forbidden(message),
            RoleError::NotFound => ApiError::NotFound("role not found".into()),
            RoleError::Exists => ApiError::Conflict("role_exists", error.to_string()),
            RoleError::InUse(message) => {
                ApiError::Conflict("role_in_use", format!("the role is still in use: {message}"))
            }
            RoleError::Storage(storage) => storage.into(),
        }
    }
}

fn role_view(state: &AppState, role: &Role) -> Value {
    let roles = state.auth.roles();
    json!({
        "name": role.name,
        "description": role.description,
        "permissions": role.permissions,
        "inherits": role.inherits,
        "builtin": role.builtin,
        "effective_permissions": effective_permissions(role, &roles).effective(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    permissions: Vec<String>,
    #[serde(default)]
    inherits: Vec<String>,
}

async fn list_roles(State(state): State<AppState>, caller: Authenticated) -> ApiResult<Json<Value>> {
    caller.require("roles:admin")?;
    let roles = state.auth.roles();
    let mut names: Vec<&String> = roles.keys().collect();
    names.sort();
    let items: Vec<Value> = names
        .iter()
        .filter_map(|name| roles.get(*name))
        .map(|role| role_view(&state, role))
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn get_role(
    State(state): State<AppState>,
    caller: Authenticated,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require("roles:admin")?;
    let roles = state.auth.roles();
    let role = roles
        .get(&name)
        .ok_or_else(|| ApiError::NotFound("role not found".into()))?;
    Ok(Json(role_view(&state, role)))
}

async fn create_role(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    body: ApiResult<JsonBody<RoleRequest>>,
) -> ApiResult<Response> {
    let principal = caller.require("roles:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    let roles = state.auth.roles();
    let name = body
        .name
        .ok_or_else(|| ApiError::InvalidParameter("`name` is required".into()))?;
    if roles.contains_key(&name) {
        return Err(RoleError::Exists.into());
    }
    let definition = RoleDefinition {
        name,
        description: body.description,
        permissions: body.permissions,
        inherits: body.inherits,
    };
    let role = validate_role(definition, &roles, &principal)?;
    insert_role(&state.store, &role, state.clock.now()).await?;
    state.auth.roles_changed().await?;
    record_change(
        &state,
        &context,
        &principal,
        "role_created",
        format!("role {} created with {:?}", role.name, role.permissions),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(role_view(&state, &role))).into_response())
}

async fn replace_role(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    Path(name): Path<String>,
    body: ApiResult<JsonBody<RoleRequest>>,
) -> ApiResult<Json<Value>> {
    let principal = caller.require("roles:admin")?;
    // Parsed only after the permission check, so that a caller without
    // the permission gets 403 and learns nothing about the body format.
    let JsonBody(body) = body?;
    if body.name.as_ref().is_some_and(|body_name| *body_name != name) {
        return Err(ApiError::InvalidParameter("a role cannot be renamed".into()));
    }
    let roles = state.auth.roles();
    check_custom_role(&roles, &name)?;
    let definition = RoleDefinition {
        name: name.clone(),
        description: body.description,
        permissions: body.permissions,
        inherits: body.inherits,
    };
    let role = validate_role(definition, &roles, &principal)?;
    if !state.store.update_role(&role, state.clock.now()).await? {
        return Err(RoleError::NotFound.into());
    }
    state.auth.roles_changed().await?;
    record_change(
        &state,
        &context,
        &principal,
        "role_updated",
        format!("role {} now grants {:?}", role.name, role.permissions),
    )
    .await?;
    Ok(Json(role_view(&state, &role)))
}

async fn delete_role(
    State(state): State<AppState>,
    caller: Authenticated,
    Context(context): Context,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let principal = caller.require("roles:admin")?;
    let roles = state.auth.roles();
    delete_custom_role(&state.store, &name, &roles).await?;
    state.auth.roles_changed().await?;
    record_change(
        &state,
        &context,
        &principal,
        "role_deleted",
        format!("role {name} deleted"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

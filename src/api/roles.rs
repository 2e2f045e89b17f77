//! `/api/v1/admin/roles`: custom roles next to the built-in ones.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::record_change;
use super::error::{ApiError, ApiResult};
use super::extract::{Authenticated, Context, JsonBody};
use super::openapi::{
    Conflict, CreateRoleRequest, Forbidden, NotFound, PayloadTooLarge, PermissionName, Role as RoleBody, RoleList,
    Unauthorized, UnprocessableContent, UnsupportedMediaType,
};
use crate::app::roles::{
    check_custom_role, delete_role as delete_custom_role, effective_permissions, insert_role, validate_role,
    RoleDefinition, RoleError,
};
use crate::app::AppState;
use crate::rbac::Role;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, replace_role, delete_role))
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RoleRequest {
    /// When replacing, it may only repeat the path's name.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z][a-z0-9_-]*$")]
    name: Option<String>,
    /// At most 1024 characters, without NUL.
    #[serde(default)]
    #[schema(max_length = 1024)]
    description: Option<String>,
    /// The caller must hold each.
    #[schema(value_type = Vec<PermissionName>)]
    permissions: Vec<String>,
    /// Names of existing roles whose permissions this one includes. A cycle is rejected.
    #[serde(default)]
    inherits: Vec<String>,
}

/// Lists every role, built-in ones included.
#[utoipa::path(
    get,
    path = "/api/v1/admin/roles",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The roles, by name.", body = RoleList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
)]
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

/// Returns one role.
#[utoipa::path(
    get,
    path = "/api/v1/admin/roles/{name}",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("name" = String, Path, description = "The role's name.")),
    responses(
        (status = 200, description = "The role.", body = RoleBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
)]
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

/// Creates a custom role.
#[utoipa::path(
    post,
    path = "/api/v1/admin/roles",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    request_body = CreateRoleRequest,
    responses(
        (status = 201, description = "Created.", body = RoleBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
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

/// Replaces a custom role's description, permissions and inherited roles.
#[utoipa::path(
    put,
    path = "/api/v1/admin/roles/{name}",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("name" = String, Path, description = "The role's name.")),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "The replaced role.", body = RoleBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = UnprocessableContent),
    ),
)]
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

/// Deletes a custom role that no user or role refers to.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/roles/{name}",
    tag = "admin",
    security(("bearerAuth" = []), ("apiKey" = [])),
    params(("name" = String, Path, description = "The role's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    ),
)]
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

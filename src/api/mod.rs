//! The HTTP API: one router per resource, the shared middleware pipeline and
//! the problem-details error type.

mod access_log;
mod admin;
mod audit_routes;
mod auth_routes;
pub mod client_ip;
pub mod context;
mod cors;
pub(crate) mod cursor;
mod entries;
pub mod error;
mod extract;
mod health;
pub mod incident_routes;
mod keys;
mod middleware;
pub mod openapi;
mod query;
mod roles;
mod transfer;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Longest request line plus headers accepted, in bytes; larger heads get 431.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Collects every route together with its OpenAPI operation. Each resource
/// router registers its handlers through `utoipa_axum::routes!`, which takes
/// the method and path from the handler's `#[utoipa::path]` attribute, so a
/// route cannot be served without also being documented.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router())
        .merge(openapi::router())
        .merge(auth_routes::router())
        .merge(entries::router())
        .merge(transfer::router())
        .merge(keys::router())
        .merge(admin::router())
        .merge(roles::router())
        .merge(audit_routes::router())
        .merge(incident_routes::router())
}

/// Builds the application's router with every route and layer.
pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.config.max_body_bytes;
    let cors_policy = cors::CorsPolicy::new(state.config.transport.cors_allowed_origins.clone());
    let (routes, _document) = routes().split_for_parts();
    routes
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            cors_policy.clone(),
            cors::answer_preflight,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::pipeline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            cors_policy,
            cors::add_response_headers,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            error::problem_response(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
                "the server could not complete the request".into(),
                None,
            )
        }))
        .with_state(state)
}

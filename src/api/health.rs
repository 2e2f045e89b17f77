//! `/health` (liveness) and `/ready` (readiness), neither authenticated nor
//! rate-limited, and neither revealing more than up or down.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{Health, Readiness};
use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process is up.", body = Health)),
)]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "The instance can serve requests: `ready`, or `degraded` while Redis or \
                                      the audit log is failing.", body = Readiness),
        (status = 503, description = "The database is unreachable, and `status` is `unavailable`.", body = Readiness),
    ),
)]
async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let database = state.store.ping().await.is_ok();
    let audit = state.audit.is_healthy();
    // A Redis outage degrades the instance (per-instance rate limits) but
    // does not take it out of the load balancer.
    let redis = match &state.redis {
        None => "not_configured",
        Some(link) if link.ping().await && state.rate_limiter.is_healthy() => "ok",
        Some(_) => "unavailable",
    };
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let overall = if !database {
        "unavailable"
    } else if audit && redis != "unavailable" {
        "ready"
    } else {
        "degraded"
    };
    let body = json!({
        "status": overall,
        "checks": {
            "database": if database { "ok" } else { "unavailable" },
            "redis": redis,
            "audit_log": if audit { "ok" } else { "unavailable" },
        }
    });
    (status, Json(body))
}

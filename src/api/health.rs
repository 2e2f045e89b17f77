//! `/health` (liveness) and `/ready` (readiness), neither authenticated nor
//! rate-limited, and neither revealing more than up or down.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

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

//! Records made once a request has its response: the access event,
//! the security events a refusal implies (on disk before the response
//! leaves), the detectors they feed and the request metrics.

use axum::http::{Method, StatusCode};

use super::context::RequestContext;
use crate::app::AppState;
use crate::audit::detector::Alarm;
use crate::audit::{AuditEvent, Severity, Status};
use crate::auth::AuthError;
use crate::metrics::{ReasonLabels, RequestLabels, RouteLabels};

/// The facts that the audit events of one finished request share.
pub(super) struct FinishedRequest<'a> {
    pub context: &'a RequestContext,
    pub method: &'a Method,
    pub path: &'a str,
    pub route: &'a str,
    pub status: StatusCode,
    /// The rate-limit bucket the request was counted in.
    pub bucket: Option<&'a str>,
    pub elapsed: std::time::Duration,
}

impl FinishedRequest<'_> {
    /// Starts an event about this request, with its action, client address,
    /// method, path, HTTP status and request id filled in.
    fn event(&self, state: &AppState, event_type: &str, status: Status, severity: Severity) -> AuditEvent {
        let method = audit_method(self.method);
        let action = format!("{method} {}", self.route);
        let mut event = AuditEvent::new(state.clock.now(), event_type, &action, status, severity);
        event.client_ip = Some(self.context.client_ip.to_string());
        event.method = Some(method);
        // The path only: query strings may carry values that must not be logged.
        event.path = Some(self.path.chars().take(512).collect());
        event.http_status = Some(self.status.as_u16());
        event.request_id = Some(self.context.request_id.clone());
        event.client_cert_subject = self.context.client_cert_subject.as_ref().map(ToString::to_string);
        event
    }

    fn alarm_event(&self, state: &AppState, alarm: &Alarm) -> AuditEvent {
        let mut event = alarm.event(state.clock.now());
        event.client_ip = Some(self.context.client_ip.to_string());
        event.request_id = Some(self.context.request_id.clone());
        event.user_id = self.context.audit_user_id();
        event.api_key_id = self.context.presented_api_key_id.clone();
        event.client_cert_subject = self.context.client_cert_subject.as_ref().map(ToString::to_string);
        event
    }
}

/// Returns the method as a metric label: any method outside the standard
/// ones is `OTHER`, so that clients cannot add label series at will.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("OTHER", |standard| standard.as_str())
}

/// Returns the method as recorded in the trail: at most 32 characters, so an
/// invented method cannot make a line arbitrarily long.
fn audit_method(method: &Method) -> String {
    method.as_str().chars().take(32).collect()
}

/// Audit classification of a finished request.
fn outcome(status: StatusCode) -> (Status, Severity) {
    match status.as_u16() {
        0..=399 => (Status::Success, Severity::Info),
        401 | 403 | 429 => (Status::Denied, Severity::Low),
        400..=499 => (Status::Failed, Severity::Info),
        _ => (Status::Failed, Severity::Medium),
    }
}

/// Writes a security event to disk before the response goes out; returns
/// false when that failed (the event stays queued for when the file
/// recovers, and the caller returns 503 instead).
async fn record_now(state: &AppState, event: AuditEvent) -> bool {
    let event_type = event.event_type.clone();
    if state.audit.record_durable(event).await.is_err() {
        tracing::error!(event_type = %event_type, "could not write a security event to the audit log");
        return false;
    }
    true
}

/// Records the request; returns false when a security event it implies
/// could not be written to disk.
pub(super) async fn record_access(state: &AppState, request: &FinishedRequest<'_>) -> bool {
    count(state, request);
    let context = request.context;
    let principal = context.principal();
    let api_key_id = principal.and_then(|p| p.api_key_id.clone());
    if let Some(principal) = principal {
        if let Ok(mut counts) = state.request_counts.lock() {
            *counts.entry(principal.user_id).or_insert(0) += 1;
        }
    }

    let (audit_status, severity) = outcome(request.status);
    let event = request
        .event(state, "access", audit_status, severity)
        .user(context.audit_user_id(), api_key_id.clone())
        .description(request.status.canonical_reason().unwrap_or("").to_string());
    state.audit.record(event).await;

    let mut recorded = record_key_events(state, request).await;

    let now = state.clock.now();
    let (event_type, what, alarm) = match request.status {
        StatusCode::TOO_MANY_REQUESTS => {
            let client = request.bucket.unwrap_or("unknown");
            (
                "rate_limit_exceeded",
                "rate limit exceeded",
                state.detectors.rate_limited(client, now),
            )
        }
        StatusCode::FORBIDDEN => {
            let subject = api_key_id
                .clone()
                .or_else(|| context.audit_user_id())
                .unwrap_or_else(|| context.client_ip.to_string());
            (
                "permission_denied",
                "permission denied",
                state.detectors.permission_denied(&subject, now),
            )
        }
        StatusCode::UNAUTHORIZED if context.authentication.is_some() => {
            ("authentication_failed", "credentials rejected", None)
        }
        _ => return recorded,
    };
    let event = request
        .event(state, event_type, Status::Denied, Severity::Low)
        .user(context.audit_user_id(), api_key_id)
        .description(format!("{what} on {} {}", audit_method(request.method), request.route));
    recorded &= record_now(state, event).await;
    if let Some(alarm) = alarm {
        recorded &= raise(state, request, &alarm).await;
    }
    recorded
}

async fn raise(state: &AppState, request: &FinishedRequest<'_>, alarm: &Alarm) -> bool {
    state.metrics.count_alarm(alarm.event_type);
    record_now(state, request.alarm_event(state, alarm)).await
}

fn count(state: &AppState, request: &FinishedRequest<'_>) {
    let metrics = &state.metrics;
    let method = method_label(request.method).to_string();
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: request.route.to_string(),
            status: request.status.as_u16(),
        })
        .inc();
    metrics
        .http_request_duration
        .get_or_create(&RouteLabels {
            method,
            route: request.route.to_string(),
        })
        .observe(request.elapsed.as_secs_f64());
    if request.status == StatusCode::TOO_MANY_REQUESTS {
        metrics.rate_limit_rejections.inc();
    }
    if let Some(Err(error)) = &request.context.authentication {
        metrics
            .auth_failures
            .get_or_create(&ReasonLabels {
                reason: failure_reason(error).to_string(),
            })
            .inc();
    }
}

/// Audits the uses of API keys that operators must see: revoked, expired or
/// unknown keys, and rotated keys still used inside their grace period.
/// Returns false when an event could not be written to disk.
async fn record_key_events(state: &AppState, request: &FinishedRequest<'_>) -> bool {
    let context = request.context;
    let (event_type, status, severity, description) = match &context.authentication {
        Some(Err(AuthError::ApiKeyRevoked)) => (
            "revoked_api_key_used",
            Status::Denied,
            Severity::Medium,
            "a revoked API key was used",
        ),
        Some(Err(AuthError::ApiKeyExpired)) => (
            "expired_api_key_used",
            Status::Denied,
            Severity::Medium,
            "an expired API key was used",
        ),
        Some(Err(AuthError::InvalidApiKey)) => (
            "invalid_api_key_used",
            Status::Denied,
            Severity::Low,
            "an invalid API key was presented",
        ),
        Some(Ok(principal)) if principal.api_key_in_grace_period => (
            "rotated_api_key_used",
            Status::Success,
            Severity::Low,
            "a rotated API key was used during its grace period",
        ),
        _ => return true,
    };
    let event = request
        .event(state, event_type, status, severity)
        .user(
            context.principal().map(|p| p.user_id.to_string()),
            context.presented_api_key_id.clone(),
        )
        .description(description);
    let mut recorded = record_now(state, event).await;

    if status != Status::Denied {
        return recorded;
    }
    let now = state.clock.now();
    let mut alarms = Vec::new();
    if event_type == "revoked_api_key_used" {
        if let Some(key_id) = &context.presented_api_key_id {
            alarms.extend(state.detectors.revoked_key_used(key_id, now));
        }
    }
    alarms.extend(state.detectors.unusable_api_key(&context.client_ip.to_string(), now));
    for alarm in alarms {
        recorded &= raise(state, request, &alarm).await;
    }
    recorded
}

/// Returns a short label for the metrics, never the credential itself.
fn failure_reason(error: &AuthError) -> &'static str {
    match error {
        AuthError::InvalidToken => "invalid_token",
        AuthError::TokenExpired => "token_expired",
        AuthError::InvalidApiKey => "invalid_api_key",
        AuthError::ApiKeyRevoked => "api_key_revoked",
        AuthError::ApiKeyExpired => "api_key_expired",
        AuthError::AccountDisabled => "account_disabled",
        AuthError::AccountLocked { .. } => "account_locked",
        AuthError::Storage(_) | AuthError::Unavailable | AuthError::Internal(_) => "unavailable",
        _ => "other",
    }
}

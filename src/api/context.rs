//! Per-request context shared between the middleware and handlers: who the
//! caller is (authenticated once, in the middleware) and where they are.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::audit::{AuditEvent, Severity, Status};
use crate::auth::{AuthError, Principal};
use crate::tls::ClientCertSubject;

/// Created by the middleware for each request and placed in its extensions.
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: IpAddr,
    /// `None` when the request carried no credentials.
    pub authentication: Option<Result<Principal, AuthError>>,
    /// The key id of a well-formed `X-API-Key`, even when the key was
    /// rejected, so that the audit trail can name the key.
    pub presented_api_key_id: Option<String>,
    /// Set by handlers that act on behalf of someone other than the
    /// authenticated principal (the login handler, for the user it signs in).
    pub acting_user_id: Mutex<Option<String>>,
    /// The verified client certificate of the connection, under mutual TLS.
    pub client_cert_subject: Option<ClientCertSubject>,
}

pub type SharedContext = Arc<RequestContext>;

impl RequestContext {
    /// Returns the principal, if authentication succeeded.
    pub fn principal(&self) -> Option<&Principal> {
        self.authentication.as_ref().and_then(|result| result.as_ref().ok())
    }

    pub fn set_acting_user(&self, user_id: String) {
        if let Ok(mut slot) = self.acting_user_id.lock() {
            *slot = Some(user_id);
        }
    }

    /// Returns the user id to record in the audit event.
    pub fn audit_user_id(&self) -> Option<String> {
        self.principal()
            .map(|principal| principal.user_id.to_string())
            .or_else(|| self.acting_user_id.lock().ok().and_then(|slot| slot.clone()))
    }
}

impl RequestContext {
    /// Starts an audit event stamped with this request's client address and id.
    pub fn event(&self, state: &AppState, event_type: &str, status: Status, severity: Severity) -> AuditEvent {
        let mut event = AuditEvent::new(state.clock.now(), event_type, event_type, status, severity);
        event.client_ip = Some(self.client_ip.to_string());
        event.request_id = Some(self.request_id.clone());
        event.client_cert_subject = self.client_cert_subject.as_ref().map(ToString::to_string);
        event
    }
}

/// Writes a security event to disk before the response is sent.
///
/// # Errors
/// [`ApiError::AuditUnavailable`] when it cannot be written, so that no
/// change goes unrecorded.
pub async fn record_security_event(state: &AppState, event: AuditEvent) -> ApiResult<()> {
    state
        .audit
        .record_durable(event)
        .await
        .map_err(|_| ApiError::AuditUnavailable)
}

/// Records a change that `principal` made (users, roles, keys) as a
/// successful event of medium severity.
///
/// # Errors
/// As [`record_security_event`].
pub async fn record_change(
    state: &AppState,
    context: &RequestContext,
    principal: &Principal,
    event_type: &str,
    description: String,
) -> ApiResult<()> {
    let event = context
        .event(state, event_type, Status::Success, Severity::Medium)
        .user(Some(principal.user_id.to_string()), principal.api_key_id.clone())
        .description(description);
    record_security_event(state, event).await
}

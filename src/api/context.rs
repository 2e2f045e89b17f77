//! Per-request context shared between the middleware and handlers: who the
//! caller is (authenticated once, in the middleware) and where they are.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::auth::{AuthError, Principal};

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
}

pub type SharedContext = Arc<RequestContext>;

impl RequestContext {
    /// The principal, if authentication succeeded.
    pub fn principal(&self) -> Option<&Principal> {
        self.authentication.as_ref().and_then(|result| result.as_ref().ok())
    }

    pub fn set_acting_user(&self, user_id: String) {
        if let Ok(mut slot) = self.acting_user_id.lock() {
            *slot = Some(user_id);
        }
    }

    /// The user id recorded in the audit event.
    pub fn audit_user_id(&self) -> Option<String> {
        self.principal()
            .map(|principal| principal.user_id.to_string())
            .or_else(|| self.acting_user_id.lock().ok().and_then(|slot| slot.clone()))
    }
}

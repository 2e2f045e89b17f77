//! Extractors that turn every rejection into our problem responses.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::context::SharedContext;
use super::error::{ApiError, ApiResult};
use crate::app::AppState;
use crate::auth::{AuthError, Principal};
use crate::registry::FieldError;
use crate::storage::StorageError;

/// The authenticated caller. Rejects with 401 when the request carried no
/// valid credentials.
pub struct Authenticated(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Self> {
        let context = parts
            .extensions
            .get::<SharedContext>()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("request context missing")))?;
        match &context.authentication {
            None => Err(ApiError::Auth(AuthError::MissingCredentials)),
            Some(Ok(principal)) => {
                // Until a user whose role requires MFA enrols, their tokens
                // reach only their identity and the enrolment routes.
                let path = parts.uri.path();
                let enrolment_route = path == "/auth/me" || path == "/auth/logout" || path.starts_with("/auth/mfa/");
                if principal.mfa_enrollment_required && !enrolment_route {
                    return Err(ApiError::Auth(AuthError::MfaEnrollmentRequired));
                }
                Ok(Authenticated(principal.clone()))
            }
            Some(Err(error)) => Err(ApiError::Auth(copy_auth_error(error))),
        }
    }
}

fn copy_auth_error(error: &AuthError) -> AuthError {
    match error {
        AuthError::TokenExpired => AuthError::TokenExpired,
        AuthError::InvalidApiKey => AuthError::InvalidApiKey,
        AuthError::ApiKeyRevoked => AuthError::ApiKeyRevoked,
        AuthError::ApiKeyExpired => AuthError::ApiKeyExpired,
        AuthError::MissingCredentials => AuthError::MissingCredentials,
        AuthError::Storage(StorageError::Unavailable(_)) | AuthError::Unavailable => AuthError::Unavailable,
        AuthError::Storage(_) | AuthError::Internal(_) => {
            AuthError::Internal(anyhow::anyhow!("authentication failed: {error}"))
        }
        _ => AuthError::InvalidToken,
    }
}

impl Authenticated {
    /// Returns the principal if it holds `permission`, else 403.
    ///
    /// # Errors
    /// [`ApiError::PermissionDenied`].
    pub fn require(self, permission: &str) -> ApiResult<Principal> {
        if self.0.can(permission) {
            Ok(self.0)
        } else {
            Err(ApiError::PermissionDenied(permission.to_string()))
        }
    }
}

/// The request context installed by the middleware.
pub struct Context(pub SharedContext);

impl<S: Send + Sync> FromRequestParts<S> for Context {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> ApiResult<Self> {
        parts
            .extensions
            .get::<SharedContext>()
            .cloned()
            .map(Context)
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("request context missing")))
    }
}

/// A JSON body as a [`Value`], with a JSON media type required and
/// `MAX_BODY_BYTES` enforced by the body limit layer.
pub struct JsonValue(pub Value);

fn is_json_media_type(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "application/merge-patch+json"
}

impl<S> FromRequest<S> for JsonValue
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        if !is_json_media_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json (or application/merge-patch+json for PATCH)".into(),
            ));
        }
        let limit = AppState::from_ref(state).config.max_body_bytes;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(limit))?;
        parse_json(&bytes).map(JsonValue)
    }
}

/// Parses JSON bytes; syntax problems are 400, never a 500.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|error| {
        let message = error.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        ApiError::MalformedBody(format!("the body is not valid JSON: {message}"))
    })
}

/// A typed JSON body. Unknown fields and wrong types give 422.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> ApiResult<Self> {
        let JsonValue(value) = JsonValue::from_request(request, state).await?;
        from_value(value).map(JsonBody)
    }
}

/// Converts a JSON value into `T`, naming the offending field on failure.
pub fn from_value<T: DeserializeOwned>(value: Value) -> ApiResult<T> {
    if !value.is_object() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    serde_json::from_value(value).map_err(|error| {
        let message = error.to_string();
        let message: String = message.chars().take(200).collect();
        ApiError::Validation(vec![FieldError::new("body", message)])
    })
}

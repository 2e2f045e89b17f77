//! The one error type of the HTTP API and its mapping to RFC 9457 problem
//! details. Every failure a client can see goes through [`ApiError`], so the
//! `code`, status and title of each kind live in one table below.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::registry::{FieldError, RegistryError};
use crate::storage::StorageError;

pub type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedBody(String),
    #[error("the request body does not match the expected fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("the cursor is invalid or belongs to another listing")]
    InvalidCursor,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error(transparent)]
    Auth(AuthError),
    #[error("this requires the `{0}` permission")]
    PermissionDenied(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{1}")]
    Conflict(&'static str, String),
    #[error("the resource's current ETag does not match If-Match")]
    PreconditionFailed,
    #[error("too many requests; retry after {retry_after_seconds} seconds")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the audit log cannot be written, so changes are refused until it can")]
    AuditUnavailable,
    #[error("the database is unavailable")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The body of every error response.
#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    problem_type: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
}

tokio::task_local! {
    /// The id of the request being handled, set by the middleware for the
    /// whole handling of one request so that every problem body carries it.
    pub static REQUEST_ID: String;
}

/// Marks a response as already rendered as a problem.
#[derive(Clone, Copy)]
pub struct ProblemRendered;

impl ApiError {
    /// Status, stable `code` and title of each error kind.
    fn classify(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed_body", "Malformed request body"),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "Validation failed",
            ),
            InvalidParameter(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_parameter",
                "Invalid parameter",
            ),
            InvalidCursor => (StatusCode::BAD_REQUEST, "invalid_cursor", "Invalid cursor"),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
            Auth(error) => classify_auth(error),
            PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied", "Permission denied"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Conflict(code, _) => (StatusCode::CONFLICT, code, "Conflict"),
            PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "Precondition failed",
            ),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "Service unavailable",
            ),
            DatabaseUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "Service unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
            ),
        }
    }
}

fn classify_auth(error: &AuthError) -> (StatusCode, &'static str, &'static str) {
    use AuthError::*;
    match error {
        InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Authentication failed"),
        MissingCredentials => (
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
            "Authentication required",
        ),
        InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_token", "Authentication failed"),
        TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired", "Authentication failed"),
        InvalidApiKey => (StatusCode::UNAUTHORIZED, "invalid_api_key", "Authentication failed"),
        ApiKeyRevoked => (StatusCode::UNAUTHORIZED, "api_key_revoked", "Authentication failed"),
        ApiKeyExpired => (StatusCode::UNAUTHORIZED, "api_key_expired", "Authentication failed"),
        AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled", "Account disabled"),
        MfaRequired => (StatusCode::UNAUTHORIZED, "mfa_required", "Second factor required"),
        InvalidMfaCode => (StatusCode::UNAUTHORIZED, "invalid_mfa_code", "Authentication failed"),
        RefreshReused => (
            StatusCode::UNAUTHORIZED,
            "refresh_token_reused",
            "Authentication failed",
        ),
        MfaEnrollmentRequired => (
            StatusCode::FORBIDDEN,
            "mfa_enrollment_required",
            "MFA enrolment required",
        ),
        AccountLocked { .. } => (StatusCode::LOCKED, "account_locked", "Account locked"),
        Storage(StorageError::Unavailable(_)) | Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "Service unavailable",
        ),
        Storage(_) | Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        ),
    }
}

/// Builds a problem response; used for errors and for framework rejections.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: String,
    errors: Option<&[FieldError]>,
) -> Response {
    let body = Problem {
        problem_type: format!("https://hyper-registry.dev/problems/{}", code.replace('_', "-")),
        title,
        status: status.as_u16(),
        detail,
        code,
        request_id: REQUEST_ID.try_with(Clone::clone).unwrap_or_default(),
        errors,
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hyper-registry\""),
        );
    }
    response.extensions_mut().insert(ProblemRendered);
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.classify();
        // 5xx causes are logged once here, never sent to the client.
        let detail = if status.is_server_error() {
            if let ApiError::Internal(cause) | ApiError::Auth(AuthError::Internal(cause)) = &self {
                tracing::error!(error = ?cause, "request failed");
            }
            if let ApiError::Auth(AuthError::Storage(cause)) = &self {
                tracing::error!(error = ?cause, "request failed");
            }
            match status {
                StatusCode::SERVICE_UNAVAILABLE => self.to_string(),
                _ => "the server could not complete the request; the request id identifies it in the server log".into(),
            }
        } else {
            self.to_string()
        };
        let errors = match &self {
            ApiError::Validation(errors) => Some(errors.as_slice()),
            _ => None,
        };
        let mut response = problem_response(status, code, title, detail, errors);
        if let ApiError::RateLimited { retry_after_seconds }
        | ApiError::Auth(AuthError::AccountLocked { retry_after_seconds }) = &self
        {
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        ApiError::Auth(error)
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(cause) => {
                tracing::error!(error = ?cause, "database unavailable");
                ApiError::DatabaseUnavailable
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotFound => ApiError::NotFound("entry not found".into()),
            RegistryError::Forbidden(message) => ApiError::Forbidden(message.into()),
            RegistryError::Conflict => ApiError::Conflict("entry_exists", error.to_string()),
            RegistryError::Concurrent => ApiError::Conflict("concurrent_update", error.to_string()),
            RegistryError::PreconditionFailed => ApiError::PreconditionFailed,
            RegistryError::Invalid(errors) => ApiError::Validation(errors),
            RegistryError::Decrypt => ApiError::Internal(anyhow::anyhow!("sensitive field could not be decrypted")),
            RegistryError::Storage(storage) => storage.into(),
        }
    }
}

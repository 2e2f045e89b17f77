//! Cross-origin resource sharing for browser clients on other origins.
//!
//! Only an `Origin` equal, byte for byte, to an entry of
//! `CORS_ALLOWED_ORIGINS` is echoed back. The wildcard `*` and `null` are
//! never sent, and neither is `Access-Control-Allow-Credentials`, because
//! authentication comes from headers and never from cookies. With an empty
//! list this layer adds nothing at all.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::problem_response;

/// Methods a cross-origin caller may use.
const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
/// Request headers a cross-origin caller may send, lowercase.
const ALLOWED_HEADERS: [&str; 5] = ["authorization", "content-type", "x-api-key", "if-match", "x-request-id"];
/// Response headers a cross-origin caller may read.
const EXPOSED_HEADERS: &str =
    "ETag, X-Request-Id, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After";
/// How long a browser may cache a successful preflight, in seconds.
const PREFLIGHT_MAX_AGE_SECONDS: &str = "600";

/// The exact origins from `CORS_ALLOWED_ORIGINS`.
#[derive(Clone)]
pub struct CorsPolicy {
    allowed_origins: Arc<Vec<String>>,
}

impl CorsPolicy {
    pub fn new(allowed_origins: Vec<String>) -> CorsPolicy {
        CorsPolicy {
            allowed_origins: Arc::new(allowed_origins),
        }
    }

    /// Returns the request's `Origin` when it is on the list.
    fn allowed_origin<'a>(&self, headers: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.allowed_origins
            .iter()
            .any(|allowed| allowed == text)
            .then_some(origin)
    }
}

/// Returns whether a preflight requests only allowed methods and headers.
fn preflight_request_allowed(headers: &HeaderMap) -> bool {
    let method_ok = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|method| ALLOWED_METHODS.split(", ").any(|allowed| allowed == method));
    let headers_ok = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .all(|value| {
            value.to_str().is_ok_and(|list| {
                list.split(',')
                    .map(|name| name.trim().to_ascii_lowercase())
                    .filter(|name| !name.is_empty())
                    .all(|name| ALLOWED_HEADERS.contains(&name.as_str()))
            })
        });
    method_ok && headers_ok
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers preflights. It runs inside the request pipeline, so preflights
/// get a request id and security headers and count against rate limits like
/// any request. A preflight from another origin, or for a method or header
/// that is not allowed, gets a 403 problem without CORS headers.
pub async fn answer_preflight(State(policy): State<CorsPolicy>, request: Request, next: Next) -> Response {
    if policy.allowed_origins.is_empty() || !is_preflight(&request) {
        return next.run(request).await;
    }
    match policy.allowed_origin(request.headers()) {
        Some(origin) if preflight_request_allowed(request.headers()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("Authorization, Content-Type, X-API-Key, If-Match, X-Request-Id"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE_SECONDS),
            );
            response
        }
        _ => problem_response(
            StatusCode::FORBIDDEN,
            "cors_request_not_allowed",
            "Cross-origin request not allowed",
            "this origin, method or header is not allowed for cross-origin requests".into(),
            None,
        ),
    }
}

/// Adds `Vary: Origin` to every response and, for an allowed origin, the
/// headers that let the browser read it. It runs outside the request
/// pipeline so that the pipeline's own responses (429 with `Retry-After`,
/// 503) are readable by allowed origins too.
pub async fn add_response_headers(State(policy): State<CorsPolicy>, request: Request, next: Next) -> Response {
    if policy.allowed_origins.is_empty() {
        return next.run(request).await;
    }
    let preflight = is_preflight(&request);
    let origin = policy.allowed_origin(request.headers()).cloned();

    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // Caches must key on Origin whether or not it was allowed, or an
    // allowed origin's response could be served to another origin.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin.filter(|_| !preflight) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn preflight_methods_and_headers_checked() {
        let cases = [
            (vec![("access-control-request-method", "PUT")], true),
            (
                vec![
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type, X-Api-Key"),
                ],
                true,
            ),
            (vec![("access-control-request-method", "TRACE")], false),
            (vec![("access-control-request-method", "put")], false),
            (
                vec![
                    ("access-control-request-method", "GET"),
                    ("access-control-request-headers", "cookie"),
                ],
                false,
            ),
            (vec![], false),
        ];
        for (pairs, expected) in cases {
            assert_eq!(preflight_request_allowed(&headers(&pairs)), expected, "{pairs:?}");
        }
    }
}

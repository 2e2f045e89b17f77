//! The request pipeline around every handler: request id, security headers,
//! authentication (once per request), rate limiting, the audit event and the
//! conversion of any bare error response into a problem document.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::access_log::{record_access, FinishedRequest};
use super::context::{RequestContext, SharedContext};
use super::error::{problem_response, ApiError, ProblemRendered, REQUEST_ID};
use crate::app::AppState;
use crate::audit::{Severity, Status};
use crate::auth::{AuthError, Principal};
use crate::ratelimit::{Decision, Limit};
use crate::tls::ClientCertSubject;

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const API_KEY_HEADER: &str = "x-api-key";

/// Routes that are neither rate-limited nor audited per request.
pub(super) fn is_unmetered(path: &str) -> bool {
    path == "/health" || path == "/ready"
}

/// Accepts a client's request id only when it is short and plain, so it can
/// be echoed and logged safely; otherwise generates one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .filter(|id| {
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// Returns the client address, believing `X-Forwarded-For` only from a
/// peer in `TRUSTED_PROXIES` (see [`super::client_ip`]).
fn client_ip(state: &AppState, request: &Request) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    super::client_ip::client_ip(peer, request.headers(), &state.config.transport.trusted_proxies)
}

/// Returns whether `ADMIN_ALLOWED_CIDRS` denies `client_ip` access to
/// `path`. An empty list allows every address.
fn admin_address_denied(state: &AppState, path: &str, route: &str, client_ip: IpAddr) -> bool {
    let allowed = &state.config.transport.admin_allowed_cidrs;
    // The route template as well as the raw path, so that no spelling of a
    // path that the router still matches to an admin route slips through.
    let is_admin = [path, route]
        .iter()
        .any(|candidate| *candidate == "/api/v1/admin" || candidate.starts_with("/api/v1/admin/"));
    is_admin && !allowed.is_empty() && !allowed.iter().any(|network| network.contains(&client_ip))
}

/// Authenticates from `Authorization: Bearer` or `X-API-Key`.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Option<Result<Principal, AuthError>> {
    let bearer = headers.get(header::AUTHORIZATION);
    let api_key = headers.get(API_KEY_HEADER);
    match (bearer, api_key) {
        (None, None) => None,
        // Two credentials at once are ambiguous; accept neither.
        (Some(_), Some(_)) => Some(Err(AuthError::InvalidToken)),
        (Some(value), None) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|text| text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")))
                .map(str::trim);
            Some(match token {
                Some(token) if !token.is_empty() => state.auth.authenticate_bearer(token).await,
                _ => Err(AuthError::InvalidToken),
            })
        }
        (None, Some(value)) => Some(match value.to_str() {
            Ok(key) => state.auth.authenticate_api_key(key.trim()).await,
            Err(_) => Err(AuthError::InvalidApiKey),
        }),
    }
}

/// Returns the bucket name and limit that apply to a request. In emergency
/// mode everyone without `security:admin` shares the emergency rate, in
/// buckets of its own.
fn limit_for(state: &AppState, principal: Option<&Principal>, path: &str) -> (String, Limit) {
    let config = &state.config;
    if let Some(emergency) = state.runtime.emergency(state.clock.now()) {
        let exempt = principal.is_some_and(|p| p.permissions.allows("security:admin"));
        if !exempt {
            let rate = emergency.rate_limit_per_minute;
            // Per user, not per key: a user's keys share the user's bucket.
            let bucket = match principal {
                Some(principal) if path != "/auth/login" => format!("emergency:user:{}", principal.user_id),
                _ => "emergency:ip".into(),
            };
            let limit = Limit {
                per_minute: rate,
                burst: rate,
            };
            return (bucket, limit);
        }
    }
    if path == "/auth/login" {
        let limit = Limit {
            per_minute: config.login_rate_limit_per_minute,
            burst: config.login_rate_limit_per_minute,
        };
        return ("login-ip".into(), limit);
    }
    match principal {
        Some(principal) => {
            let limit = match principal.rate_limit_per_minute {
                Some(rate) => Limit {
                    per_minute: rate,
                    burst: rate,
                },
                None => Limit {
                    per_minute: config.rate_limit_per_minute,
                    burst: config.rate_limit_burst,
                },
            };
            (principal.rate_limit_key(), limit)
        }
        None => {
            let limit = Limit {
                per_minute: config.rate_limit_per_minute,
                burst: config.rate_limit_burst,
            };
            ("ip".into(), limit)
        }
    }
}

fn insert_rate_headers(headers: &mut HeaderMap, decision: &Decision) {
    let pairs = [
        ("x-ratelimit-limit", u64::from(decision.limit)),
        ("x-ratelimit-remaining", u64::from(decision.remaining)),
        ("x-ratelimit-reset", decision.reset_seconds),
    ];
    for (name, value) in pairs {
        headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
    }
    if !decision.allowed {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(decision.retry_after_seconds));
    }
}

fn insert_security_headers(headers: &mut HeaderMap) {
    let fixed = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
        ("cache-control", "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
}

/// Turns a bare framework error (404 of an unknown route, 405, 413, …) into
/// a problem response so that every error has the same shape.
fn ensure_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<ProblemRendered>().is_some()
    {
        return response;
    }
    let (code, title, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "Not found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "Method not allowed",
            "this route does not accept that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "Payload too large",
            "the request body is too large".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Unsupported media type",
            "unsupported content type".to_string(),
        ),
        status if status.is_server_error() => (
            "internal_error",
            "Internal server error",
            "the server could not complete the request".to_string(),
        ),
        _ => (
            "bad_request",
            "Bad request",
            "the request could not be processed".to_string(),
        ),
    };
    let mut problem = problem_response(status, code, title, detail, None);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Runs the pipeline around one request; the module docs list its steps.
pub async fn pipeline(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let request_id = request_id(request.headers());
    let scoped_id = request_id.clone();
    REQUEST_ID
        .scope(scoped_id, handle(state, request_id, &mut request, next))
        .await
}

/// Rejects ambiguous message framing that hyper would otherwise resolve on
/// its own: both `Content-Length` and `Transfer-Encoding`, several
/// `Transfer-Encoding` headers, or a coding other than plain `chunked`.
/// Such requests are a request-smuggling signature, so the connection is closed.
fn ambiguous_framing(headers: &HeaderMap) -> bool {
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    if codings.is_empty() {
        return false;
    }
    let plain_chunked = codings.len() == 1
        && codings[0]
            .to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
    headers.contains_key(header::CONTENT_LENGTH) || !plain_chunked
}

async fn handle(state: AppState, request_id: String, request: &mut Request, next: Next) -> Response {
    let head_bytes: usize = request.uri().path_and_query().map_or(0, |target| target.as_str().len())
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_bytes > super::MAX_HEAD_BYTES {
        let mut response = problem_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "Request header fields too large",
            format!("the request line and headers exceed {} bytes", super::MAX_HEAD_BYTES),
            None,
        );
        insert_security_headers(response.headers_mut());
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if ambiguous_framing(request.headers()) {
        let mut response = problem_response(
            StatusCode::BAD_REQUEST,
            "ambiguous_framing",
            "Bad request",
            "send either Content-Length or Transfer-Encoding: chunked, not both or other codings".into(),
            None,
        );
        insert_security_headers(response.headers_mut());
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }

    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let metered = !is_unmetered(&path);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());

    // The admin allow-list applies before credentials are even read.
    let client_ip = client_ip(&state, request);
    let admin_denied = admin_address_denied(&state, &path, &route, client_ip);

    // Authenticate once; handlers read the result from the context.
    let authentication = if metered && !admin_denied {
        authenticate(&state, request.headers()).await
    } else {
        None
    };
    let context: SharedContext = Arc::new(RequestContext {
        request_id: request_id.clone(),
        client_ip,
        authentication,
        presented_api_key_id: request
            .headers()
            .get(API_KEY_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(|key| crate::auth::api_key::parse(key.trim()))
            .map(|parsed| parsed.id),
        acting_user_id: Mutex::new(None),
        client_cert_subject: request.extensions().get::<ClientCertSubject>().cloned(),
    });
    request.extensions_mut().insert(context.clone());

    let started = std::time::Instant::now();
    let mut decision = None;
    let mut bucket_key = None;
    let mut response = if metered {
        let (bucket, limit) = limit_for(&state, context.principal(), &path);
        let key = match context.principal() {
            Some(_) if path != "/auth/login" => bucket,
            _ => format!("{bucket}:{}", context.client_ip),
        };
        let taken = state.rate_limiter.check(&key, limit, state.clock.now()).await;
        bucket_key = Some(key);
        decision = Some(taken);
        if admin_denied {
            record_admin_address_denied(&state, &context, &path).await;
            problem_response(
                StatusCode::FORBIDDEN,
                "admin_address_not_allowed",
                "Address not allowed",
                "the admin API cannot be reached from this address".into(),
                None,
            )
        } else if !taken.allowed {
            ApiError::RateLimited {
                retry_after_seconds: taken.retry_after_seconds,
            }
            .into_response()
        } else if is_state_changing(&method) && !state.audit.is_healthy() {
            ApiError::AuditUnavailable.into_response()
        } else {
            let inner = std::mem::replace(request, Request::new(Body::empty()));
            next.run(inner).await
        }
    } else {
        let inner = std::mem::replace(request, Request::new(Body::empty()));
        next.run(inner).await
    };

    response = ensure_problem(response);
    let headers = response.headers_mut();
    insert_security_headers(headers);
    // Over our own TLS the connection layer adds HSTS; behind a proxy that
    // ends TLS, HTTPS_ONLY still promises it to browsers.
    let transport = &state.config.transport;
    if transport.https_only && transport.tls_terminated_by_proxy {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Some(decision) = &decision {
        insert_rate_headers(headers, decision);
    }

    if metered {
        let finished = FinishedRequest {
            context: &context,
            method: &method,
            path: &path,
            route: &route,
            status: response.status(),
            bucket: bucket_key.as_deref(),
            elapsed: started.elapsed(),
        };
        if !record_access(&state, &finished).await {
            // A refusal whose security event is not on disk is not sent:
            // while the trail cannot be written, it becomes a 503 too.
            let mut unavailable = ApiError::AuditUnavailable.into_response();
            insert_security_headers(unavailable.headers_mut());
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                unavailable.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            return unavailable;
        }
    }
    response
}

/// Writes the denial of an admin route by address before the response.
async fn record_admin_address_denied(state: &AppState, context: &RequestContext, path: &str) {
    let event = context
        .event(state, "admin_address_denied", Status::Denied, Severity::Medium)
        .description(format!(
            "admin route {} called from an address outside ADMIN_ALLOWED_CIDRS",
            path.chars().take(512).collect::<String>()
        ));
    if state.audit.record_durable(event).await.is_err() {
        tracing::error!(client_ip = %context.client_ip, "could not write the admin_address_denied event");
    }
}

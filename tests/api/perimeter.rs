//! The network perimeter over HTTP: CORS, `TRUSTED_PROXIES` with
//! `X-Forwarded-For`, and the `ADMIN_ALLOWED_CIDRS` allow-list.

use reqwest::{Method, Response, StatusCode};

use crate::helpers::{problem_code, TestApp};

const ALLOWED_ORIGIN: &str = "https://app.example.test";

async fn cors_app() -> TestApp {
    TestApp::spawn_with(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://app.example.test, http://localhost:3000",
    )])
    .await
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap_or("<not text>").to_string())
}

fn vary_has_origin(response: &Response) -> bool {
    response
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case("origin"))
}

async fn get_with_origin(app: &TestApp, origin: &str) -> Response {
    app.request(Method::GET, "/api/v1/registry/entries", Some(&app.admin_token))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
}

async fn preflight(app: &TestApp, origin: &str, method: &str, headers: Option<&str>) -> Response {
    let mut builder = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/registry/entries"))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        builder = builder.header("access-control-request-headers", headers);
    }
    builder.send().await.unwrap()
}

#[tokio::test]
async fn cors_allowed_origin_echoed() {
    let app = cors_app().await;

    let response = get_with_origin(&app, ALLOWED_ORIGIN).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    assert!(vary_has_origin(&response), "Vary: Origin");
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    let exposed = header(&response, "access-control-expose-headers").unwrap_or_default();
    for name in [
        "ETag",
        "X-Request-Id",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
    ] {
        assert!(exposed.contains(name), "{name} exposed: {exposed}");
    }
}

#[tokio::test]
async fn cors_other_origins_not_echoed() {
    let app = cors_app().await;
    let refused = [
        ("suffix added to an allowed host", "https://app.example.test.evil.test"),
        ("prefix added to an allowed host", "https://evilapp.example.test"),
        ("other scheme", "http://app.example.test"),
        ("other port", "https://app.example.test:8443"),
        ("null origin", "null"),
        ("case variant", "https://APP.example.test"),
        ("trailing slash", "https://app.example.test/"),
        ("wildcard", "*"),
    ];

    for (case, origin) in refused {
        let response = get_with_origin(&app, origin).await;

        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{case}: the request itself is served"
        );
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "{case}: no Access-Control-Allow-Origin"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            None,
            "{case}: no credentials"
        );
        assert!(vary_has_origin(&response), "{case}: Vary: Origin");
    }
}

#[tokio::test]
async fn cors_preflight_allowed() {
    let app = cors_app().await;

    let response = preflight(
        &app,
        ALLOWED_ORIGIN,
        "PATCH",
        Some("Authorization, Content-Type, If-Match"),
    )
    .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{method} allowed: {methods}");
    }
    let headers = header(&response, "access-control-allow-headers").unwrap_or_default();
    for name in ["Authorization", "Content-Type", "X-API-Key", "If-Match", "X-Request-Id"] {
        assert!(headers.contains(name), "{name} allowed: {headers}");
    }
    assert_eq!(header(&response, "access-control-max-age").as_deref(), Some("600"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
    assert!(vary_has_origin(&response), "Vary: Origin");
    assert!(
        header(&response, "x-request-id").is_some(),
        "preflights get a request id"
    );
}

#[tokio::test]
async fn cors_preflight_refused() {
    let app = cors_app().await;
    let refused = [
        ("other origin", "https://evilapp.example.test", "GET", None),
        ("null origin", "null", "GET", None),
        ("method not allowed", ALLOWED_ORIGIN, "TRACE", None),
        ("header not allowed", ALLOWED_ORIGIN, "GET", Some("Cookie")),
    ];

    for (case, origin, method, headers) in refused {
        let response = preflight(&app, origin, method, headers).await;

        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{case}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            None,
            "{case}: no Access-Control-Allow-Origin"
        );
        assert_eq!(header(&response, "access-control-allow-methods"), None, "{case}");
        assert_eq!(problem_code(response).await, "cors_request_not_allowed", "{case}");
    }
}

#[tokio::test]
async fn cors_rate_limited_response_readable() {
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", ALLOWED_ORIGIN), ("RATE_LIMIT_PER_MINUTE", "1")]).await;

    let mut last = get_with_origin(&app, ALLOWED_ORIGIN).await;
    for _ in 0..3 {
        last = get_with_origin(&app, ALLOWED_ORIGIN).await;
    }

    assert_eq!(last.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&last, "access-control-allow-origin").as_deref(),
        Some(ALLOWED_ORIGIN)
    );
    assert!(header(&last, "retry-after").is_some());
}

#[tokio::test]
async fn cors_empty_list_sends_nothing() {
    let app = TestApp::spawn().await;

    let response = get_with_origin(&app, ALLOWED_ORIGIN).await;
    let preflight_response = preflight(&app, ALLOWED_ORIGIN, "GET", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    for response in [&response, &preflight_response] {
        let cors_headers: Vec<&str> = response
            .headers()
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        assert!(cors_headers.is_empty(), "no CORS headers: {cors_headers:?}");
        assert!(!vary_has_origin(response), "no Vary: Origin");
    }
    assert_ne!(
        preflight_response.status(),
        StatusCode::NO_CONTENT,
        "no preflight is answered"
    );
}

/// Reads the `client_ip` of the access line with `request_id`.
async fn audited_client_ip(app: &TestApp, request_id: &str) -> String {
    let lines = app.audit_lines().await;
    let line = lines
        .iter()
        .find(|line| line["request_id"] == request_id && line["event_type"] == "access")
        .unwrap_or_else(|| panic!("no access line for {request_id}"));
    line["client_ip"].as_str().unwrap_or_default().to_string()
}

async fn get_forwarded(app: &TestApp, request_id: &str, forwarded_for: &str) -> Response {
    app.request(Method::GET, "/auth/me", Some(&app.admin_token))
        .header("x-request-id", request_id)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn forwarded_for_ignored_from_untrusted_peer() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "10.0.0.0/8")]).await;

    let response = get_forwarded(&app, "spoof-1", "198.51.100.7").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(audited_client_ip(&app, "spoof-1").await, "127.0.0.1");
}

#[tokio::test]
async fn forwarded_for_chain_through_trusted_proxies() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]).await;

    get_forwarded(&app, "chain-1", "1.2.3.4, 198.51.100.7, 10.1.2.3").await;

    assert_eq!(
        audited_client_ip(&app, "chain-1").await,
        "198.51.100.7",
        "rightmost address that is not a trusted proxy"
    );
}

#[tokio::test]
async fn forwarded_for_garbage_falls_back_to_peer() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let garbage = [
        ("garbage-1", "not an address"),
        ("garbage-2", "198.51.100.7, <script>"),
        ("garbage-3", "198.51.100.7:443"),
        ("garbage-4", ",,,"),
    ];

    for (request_id, value) in garbage {
        let response = get_forwarded(&app, request_id, value).await;
        assert_eq!(response.status(), StatusCode::OK, "{value}");
    }

    for (request_id, value) in garbage {
        assert_eq!(audited_client_ip(&app, request_id).await, "127.0.0.1", "{value}");
    }
}

#[tokio::test]
async fn forwarded_client_has_own_rate_limit() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1"), ("RATE_LIMIT_PER_MINUTE", "2")]).await;
    let anonymous = |forwarded_for: &'static str| {
        app.client
            .get(app.url("/api/v1/registry/entries"))
            .header("x-forwarded-for", forwarded_for)
            .send()
    };

    for _ in 0..3 {
        anonymous("198.51.100.1").await.unwrap();
    }
    let first_client = anonymous("198.51.100.1").await.unwrap();
    let second_client = anonymous("198.51.100.2").await.unwrap();

    assert_eq!(first_client.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second_client.status(), StatusCode::UNAUTHORIZED, "a separate bucket");
}

#[tokio::test]
async fn admin_allowed_from_listed_address() {
    let app = TestApp::spawn_with(&[("ADMIN_ALLOWED_CIDRS", "127.0.0.1/32, 10.0.0.0/8")]).await;

    let response = app.get("/api/v1/admin/users", &app.admin_token).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_refused_from_unlisted_address() {
    let app = TestApp::spawn_with(&[("ADMIN_ALLOWED_CIDRS", "10.0.0.0/8")]).await;

    let response = app
        .request(Method::GET, "/api/v1/admin/users", Some(&app.admin_token))
        .header("x-request-id", "admin-denied-1")
        .send()
        .await
        .unwrap();
    let anonymous = app.client.get(app.url("/api/v1/admin/roles")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(problem_code(response).await, "admin_address_not_allowed");
    assert_eq!(
        anonymous.status(),
        StatusCode::FORBIDDEN,
        "refused before authentication, so no 401"
    );
    let lines = app.audit_lines().await;
    let denied = lines
        .iter()
        .find(|line| line["event_type"] == "admin_address_denied" && line["request_id"] == "admin-denied-1")
        .expect("admin_address_denied audited");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["client_ip"], "127.0.0.1");
}

#[tokio::test]
async fn admin_refusal_leaves_other_routes() {
    let app = TestApp::spawn_with(&[("ADMIN_ALLOWED_CIDRS", "10.0.0.0/8")]).await;

    let response = app.get("/api/v1/registry/entries", &app.admin_token).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_address_from_trusted_proxy() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_ALLOWED_CIDRS", "10.20.0.0/16"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    let from = |forwarded_for: &'static str| {
        app.request(Method::GET, "/api/v1/admin/users", Some(&app.admin_token))
            .header("x-forwarded-for", forwarded_for)
            .send()
    };

    let inside = from("10.20.3.4").await.unwrap();
    let outside = from("198.51.100.7").await.unwrap();
    let spoofed = from("10.20.3.4, 198.51.100.7").await.unwrap();

    assert_eq!(inside.status(), StatusCode::OK, "forwarded address inside the list");
    assert_eq!(outside.status(), StatusCode::FORBIDDEN, "forwarded address outside");
    assert_eq!(
        spoofed.status(),
        StatusCode::FORBIDDEN,
        "a client-written address left of the real one is ignored"
    );
}

#[tokio::test]
async fn admin_refused_from_localhost_when_unlisted() {
    let app = TestApp::spawn_with(&[
        ("ADMIN_ALLOWED_CIDRS", "10.20.0.0/16"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
    ])
    .await;

    let spoof = app
        .request(Method::GET, "/api/v1/admin/users", Some(&app.admin_token))
        .header("x-forwarded-for", "10.20.3.4")
        .send()
        .await
        .unwrap();

    assert_eq!(
        spoof.status(),
        StatusCode::FORBIDDEN,
        "X-Forwarded-For from an untrusted peer does not open the admin API"
    );
}

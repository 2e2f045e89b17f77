//! Token-bucket rate limiting with `RATE_LIMIT_PER_MINUTE=60` and
//! `RATE_LIMIT_BURST=3`: a bucket has room for three requests and refills one a second.

use std::net::{IpAddr, Ipv4Addr};

use chrono::Duration;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp};

const LIMITED: [(&str, &str); 2] = [("RATE_LIMIT_PER_MINUTE", "60"), ("RATE_LIMIT_BURST", "3")];

fn header_number(response: &Response, name: &str) -> Option<i64> {
    response.headers().get(name)?.to_str().ok()?.parse().ok()
}

async fn anonymous_get(app: &TestApp, path: &str) -> Response {
    app.request(Method::GET, path, None).send().await.expect("request sent")
}

async fn key_get(app: &TestApp, key: &str, path: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn burst_then_429_with_retry_after() {
    let app = TestApp::spawn_with(&LIMITED).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(app.get("/auth/me", &app.admin_token).await.status());
    }

    let fourth = app.get("/auth/me", &app.admin_token).await;

    assert_eq!(statuses, vec![StatusCode::OK; 3], "the first three requests pass");
    assert_eq!(
        fourth.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth request gets 429"
    );
    let retry_after = header_number(&fourth, "retry-after");
    assert!(
        retry_after.is_some_and(|seconds| seconds >= 1),
        "the 429 carries Retry-After of at least 1 s, got {retry_after:?}"
    );
    assert_eq!(
        problem_code(fourth).await,
        "rate_limited",
        "the 429 has code rate_limited"
    );
}

#[tokio::test]
async fn headers_on_success_and_client_errors() {
    let app = TestApp::spawn_with(&LIMITED).await;
    let missing_entry = format!("/api/v1/registry/entries/{}", uuid::Uuid::new_v4());

    let success = app.get("/auth/me", &app.admin_token).await;
    let not_found = app.get(&missing_entry, &app.admin_token).await;
    let unauthorized = anonymous_get(&app, "/auth/me").await;

    for (case, response, status) in [
        ("200", &success, StatusCode::OK),
        ("404", &not_found, StatusCode::NOT_FOUND),
        ("401", &unauthorized, StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(response.status(), status, "the {case} case has the expected status");
        for name in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
            assert!(
                header_number(response, name).is_some(),
                "the {case} response has a numeric {name}"
            );
        }
    }
    assert_eq!(
        header_number(&success, "x-ratelimit-limit"),
        Some(60),
        "X-RateLimit-Limit is the per-minute rate"
    );
}

#[tokio::test]
async fn remaining_never_negative() {
    let app = TestApp::spawn_with(&LIMITED).await;

    for request in 1..=6 {
        let response = app.get("/auth/me", &app.admin_token).await;
        let remaining = header_number(&response, "x-ratelimit-remaining");

        assert!(
            remaining.is_some_and(|left| left >= 0),
            "request {request}: X-RateLimit-Remaining is at least 0, got {remaining:?}"
        );
    }
}

#[tokio::test]
async fn remaining_counts_down() {
    let app = TestApp::spawn_with(&LIMITED).await;
    let mut remaining = Vec::new();

    for _ in 0..3 {
        let response = app.get("/auth/me", &app.admin_token).await;
        remaining.push(header_number(&response, "x-ratelimit-remaining"));
    }

    assert_eq!(
        remaining,
        vec![Some(2), Some(1), Some(0)],
        "X-RateLimit-Remaining counts the requests left in the burst"
    );
}

#[tokio::test]
async fn reset_is_seconds_not_epoch() {
    let app = TestApp::spawn_with(&LIMITED).await;
    let mut resets = Vec::new();

    for _ in 0..4 {
        let response = app.get("/auth/me", &app.admin_token).await;
        resets.push(header_number(&response, "x-ratelimit-reset"));
    }

    for (index, reset) in resets.iter().enumerate() {
        assert!(
            reset.is_some_and(|seconds| (0..3600).contains(&seconds)),
            "request {}: X-RateLimit-Reset is a small number of seconds, got {reset:?}",
            index + 1
        );
    }
}

#[tokio::test]
async fn request_passes_after_retry_after() {
    let app = TestApp::spawn_with(&LIMITED).await;
    for _ in 0..3 {
        app.get("/auth/me", &app.admin_token).await;
    }
    let limited = app.get("/auth/me", &app.admin_token).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "the bucket is empty");
    let retry_after = header_number(&limited, "retry-after").expect("Retry-After on the 429");

    app.clock.advance(Duration::seconds(retry_after));
    let response = app.get("/auth/me", &app.admin_token).await;

    assert_eq!(
        response.status(),
        StatusCode::OK,
        "after Retry-After seconds a request passes"
    );
}

#[tokio::test]
async fn health_not_limited() {
    let app = TestApp::spawn_with(&LIMITED).await;

    for request in 1..=10 {
        let response = anonymous_get(&app, "/health").await;

        assert_eq!(
            response.status(),
            StatusCode::OK,
            "/health request {request} is never limited"
        );
        assert!(
            response.headers().get("x-ratelimit-limit").is_none(),
            "/health request {request} has no X-RateLimit-Limit"
        );
    }
}

#[tokio::test]
async fn anonymous_limited_per_ip() {
    let app = TestApp::spawn_with(&LIMITED).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(anonymous_get(&app, "/auth/me").await.status());
    }

    let fourth = anonymous_get(&app, "/auth/me").await;
    let authenticated = app.get("/auth/me", &app.admin_token).await;

    assert_eq!(
        statuses,
        vec![StatusCode::UNAUTHORIZED; 3],
        "three anonymous requests are processed"
    );
    assert_eq!(
        fourth.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth anonymous request from one IP gets 429"
    );
    assert_eq!(
        authenticated.status(),
        StatusCode::OK,
        "an authenticated user from the same IP has a bucket of their own"
    );
}

#[tokio::test]
async fn api_key_has_own_bucket() {
    // Arrange: the key creation takes one of the admin's three requests.
    let app = TestApp::spawn_with(&LIMITED).await;
    let created = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "limited", "rate_limit_per_minute": 2}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED, "key creation");
    let body: Value = created.json().await.expect("key body");
    let key = body["key"].as_str().expect("key").to_string();

    // Act
    let first = key_get(&app, &key, "/auth/me").await;
    let second = key_get(&app, &key, "/auth/me").await;
    let third = key_get(&app, &key, "/auth/me").await;
    let owner_by_token = app.get("/auth/me", &app.admin_token).await;

    // Assert
    assert_eq!(first.status(), StatusCode::OK, "the key's first request passes");
    assert_eq!(
        header_number(&first, "x-ratelimit-limit"),
        Some(2),
        "the key's X-RateLimit-Limit is its own rate"
    );
    assert_eq!(second.status(), StatusCode::OK, "the key's second request passes");
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the key's third request exceeds its burst of 2"
    );
    assert_eq!(
        owner_by_token.status(),
        StatusCode::OK,
        "the owner's bearer token still has its own bucket"
    );
}

#[tokio::test]
async fn anonymous_other_ip_own_bucket() {
    let app = TestApp::spawn_with(&LIMITED).await;
    for _ in 0..4 {
        anonymous_get(&app, "/auth/me").await;
    }
    let other_source = Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .expect("HTTP client");

    let response = other_source
        .get(app.url("/auth/me"))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "an anonymous request from another IP is not limited by the first IP's bucket"
    );
}

//! Hostile and malformed requests: broken JSON, wrong types, oversized and
//! deeply nested bodies, media types, injection payloads, request ids and
//! the headers every response carries.

use reqwest::{header, Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{list_all_entries, problem_code, TestApp};

const ENTRIES: &str = "/api/v1/registry/entries";

fn header_text(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn post_raw(app: &TestApp, token: &str, content_type: &str, body: impl Into<reqwest::Body>) -> RequestBuilder {
    app.request(Method::POST, ENTRIES, Some(token))
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
}

/// `{"level": {"level": … {"leaf": true}}}` with `depth` objects in total.
fn nested_object(depth: usize) -> Value {
    let mut value = json!({"leaf": true});
    for _ in 1..depth {
        value = json!({ "level": value });
    }
    value
}

async fn assert_health(app: &TestApp) {
    let response = app.client.get(app.url("/health")).send().await.expect("health request");
    assert_eq!(response.status(), StatusCode::OK, "server still answers /health");
}

#[tokio::test]
async fn create_malformed_json_gets_400() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let bodies = [
        "",
        "{",
        "{\"name\": ",
        "{name: \"x\", category: \"c\"}",
        "{'name': 'x'}",
        "{\"name\": \"x\", \"category\": \"c\",}",
        "{\"name\": \"x\", \"category\": \"c\"}}",
        "{\"name\": \"x\", \"category\": \"c\"} trailing",
        "not json",
        "{\"name\": \"x\\q\", \"category\": \"c\"}",
        "{\"name\": NaN, \"category\": \"c\"}",
    ];

    for body in bodies {
        let response = post_raw(&app, &token, "application/json", body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "body {body:?} status");
        assert_eq!(code, "malformed_body", "body {body:?} code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_wrong_types_gets_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let bodies = [
        json!({"name": 5, "category": "service"}),
        json!({"name": "x", "category": ["service"]}),
        json!({"name": "x", "category": "service", "tags": "python"}),
        json!({"name": "x", "category": "service", "tags": [1, 2]}),
        json!({"name": "x", "category": "service", "metadata": []}),
        json!({"name": "x", "category": "service", "metadata": "text"}),
        json!({"name": "x", "category": "service", "sensitive": 1}),
        json!({"name": "x", "category": "service", "status": true}),
        json!({"name": "x", "category": "service", "title": {"en": "x"}}),
        json!({"name": null, "category": "service"}),
        json!({"category": "service"}),
        json!([{"name": "x", "category": "service"}]),
        json!("x"),
        json!(null),
        json!(42),
    ];

    for body in bodies {
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "body {body} status");
        assert_eq!(code, "validation_failed", "body {body} code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_body_over_limit_gets_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = json!({"name": "big", "category": "service", "description": "x".repeat(3000)});

    let response = app.post_json(ENTRIES, &token, &body).await;
    let status = response.status();
    let code = problem_code(response).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "oversized body status");
    assert_eq!(code, "payload_too_large", "oversized body code");
    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn body_under_limit_accepted() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let response = app
        .post_json(
            ENTRIES,
            &token,
            &json!({"name": "small", "category": "service", "description": "x".repeat(1500)}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "a body under the limit is accepted"
    );
}

#[tokio::test]
async fn patch_body_over_limit_gets_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app
        .create_entry(&token, &json!({"name": "small", "category": "service"}))
        .await;
    let path = format!("{ENTRIES}/{}", created["id"].as_str().unwrap());

    let response = app
        .request(Method::PATCH, &path, Some(&token))
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({"description": "x".repeat(3000)}).to_string())
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let code = problem_code(response).await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "oversized patch status");
    assert_eq!(code, "payload_too_large", "oversized patch code");
    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, created, "entry unchanged");
}

#[tokio::test]
async fn create_wrong_content_type_gets_415() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = json!({"name": "typed", "category": "service"}).to_string();
    let content_types = [
        Some("text/plain"),
        Some("application/xml"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/x-ndjson"),
        Some(""),
        None,
    ];

    for content_type in content_types {
        let mut request = app.request(Method::POST, ENTRIES, Some(&token)).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?} status");
        assert_eq!(code, "unsupported_media_type", "{content_type:?} code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_json_with_charset_accepted() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let response = post_raw(
        &app,
        &token,
        "Application/JSON; charset=utf-8",
        json!({"name": "typed", "category": "service"}).to_string(),
    )
    .send()
    .await
    .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "media type parameters and case are accepted"
    );
}

#[tokio::test]
async fn create_invalid_utf8_gets_4xx() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let bodies: [&[u8]; 3] = [
        b"{\"name\": \"bad-\xff\", \"category\": \"service\"}",
        b"{\"name\": \"x\", \"category\": \"service\", \"title\": \"\xc3\x28\"}",
        b"\xef\xbb\xbf{\"name\": \"bom\", \"category\": \"service\"}",
    ];

    for body in bodies {
        let response = post_raw(&app, &token, "application/json", body.to_vec())
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let code = problem_code(response).await;
        assert!(status.is_client_error(), "body {body:?} gave {status}");
        assert!(!code.is_empty(), "body {body:?} problem code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_nul_bytes_get_422() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let bodies = [
        json!({"name": "nul\u{0}name", "category": "service"}),
        json!({"name": "x", "category": "serv\u{0}ice"}),
        json!({"name": "x", "category": "service", "title": "a\u{0}b"}),
        json!({"name": "x", "category": "service", "description": "a\u{0}b"}),
        json!({"name": "x", "category": "service", "version": "1.0\u{0}"}),
        json!({"name": "x", "category": "service", "tags": ["ok", "t\u{0}ag"]}),
        json!({"name": "x", "category": "service", "metadata": {"key": "va\u{0}lue"}}),
        json!({"name": "x", "category": "service", "metadata": {"k\u{0}ey": "value"}}),
        json!({"name": "x", "category": "service", "metadata": {"deep": [{"a": "\u{0}"}]}}),
        json!({"name": "x", "category": "service", "sensitive": {"token": "\u{0}"}}),
    ];

    for body in bodies {
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "body {body} status");
        assert_eq!(code, "validation_failed", "body {body} code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn deeply_nested_body_gets_4xx_and_server_survives() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app
        .create_entry(&token, &json!({"name": "target", "category": "service"}))
        .await;
    let path = format!("{ENTRIES}/{}", created["id"].as_str().unwrap());
    let bodies = [
        "[".repeat(200_000),
        "{\"a\":".repeat(200_000),
        format!(
            "{{\"name\": \"x\", \"category\": \"service\", \"metadata\": {}}}",
            "{\"a\":".repeat(100_000)
        ),
    ];

    for body in &bodies {
        for (method, target) in [
            (Method::POST, ENTRIES),
            (Method::PUT, path.as_str()),
            (Method::PATCH, path.as_str()),
        ] {
            let response = app
                .request(method.clone(), target, Some(&token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("request sent");
            let status = response.status();
            let code = problem_code(response).await;
            assert!(
                status.is_client_error(),
                "{method} nested body of {} bytes gave {status}",
                body.len()
            );
            assert!(!code.is_empty(), "{method} problem code");
        }
    }

    assert_health(&app).await;
    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, created, "entry unchanged");
}

#[tokio::test]
async fn sql_payload_stored_verbatim() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let payload = "'; DROP TABLE entries; --";
    let body = json!({
        "name": "sql-payload",
        "category": "service",
        "title": payload,
        "description": "x' OR '1'='1\"; SELECT * FROM users; --",
        "tags": ["' OR 1=1 --"],
        "metadata": {"q": "1; DELETE FROM entries"},
    });

    let created = app.create_entry(&token, &body).await;
    let response = app
        .get(&format!("{ENTRIES}/{}", created["id"].as_str().unwrap()), &token)
        .await;

    assert_eq!(response.status(), StatusCode::OK, "get status");
    assert_eq!(
        header_text(&response, "content-type").as_deref(),
        Some("application/json"),
        "content type"
    );
    let stored: Value = response.json().await.expect("entry body");
    for field in ["title", "description", "tags", "metadata"] {
        assert_eq!(stored[field], body[field], "{field} stored verbatim");
    }
    let tagged: Value = app
        .get(&format!("{ENTRIES}?tag=%27%20OR%201%3D1%20--"), &token)
        .await
        .json()
        .await
        .expect("list body");
    assert_eq!(
        tagged["items"].as_array().map(Vec::len),
        Some(1),
        "the tag is an ordinary value"
    );
    assert_eq!(list_all_entries(&app, &token).await.len(), 1, "entries table intact");
}

#[tokio::test]
async fn script_payload_returned_as_json() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let script = "<script>alert(1)</script>";
    let body = json!({
        "name": "xss-payload",
        "category": "service",
        "title": script,
        "description": "<img src=x onerror=alert(1)>",
        "metadata": {"html": "</script><svg onload=alert(1)>"},
    });

    let created = app.create_entry(&token, &body).await;
    let response = app
        .get(&format!("{ENTRIES}/{}", created["id"].as_str().unwrap()), &token)
        .await;

    assert_eq!(
        header_text(&response, "content-type").as_deref(),
        Some("application/json"),
        "never served as HTML"
    );
    assert_eq!(
        header_text(&response, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "no type sniffing"
    );
    let stored: Value = response.json().await.expect("entry body");
    for field in ["title", "description", "metadata"] {
        assert_eq!(stored[field], body[field], "{field} stored verbatim");
    }
}

#[tokio::test]
async fn metadata_20_levels_stored_and_exported() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let metadata = nested_object(20);

    let response = app
        .post_json(
            ENTRIES,
            &token,
            &json!({"name": "deep", "category": "service", "metadata": metadata}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED, "20 levels accepted");
    let created: Value = response.json().await.expect("entry body");
    let stored: Value = app
        .get(&format!("{ENTRIES}/{}", created["id"].as_str().unwrap()), &token)
        .await
        .json()
        .await
        .expect("entry body");
    assert_eq!(stored["metadata"], metadata, "metadata stored intact");
    let export = app.get("/api/v1/registry/export", &token).await;
    assert_eq!(export.status(), StatusCode::OK, "export status");
    let text = export.text().await.expect("export body");
    let line: Value = serde_json::from_str(text.lines().next().expect("one export line")).expect("export line is JSON");
    assert_eq!(line["metadata"], metadata, "metadata exported intact");
}

#[tokio::test]
async fn metadata_40_levels_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    for field in ["metadata", "sensitive"] {
        let mut body = json!({"name": "deep", "category": "service"});
        body[field] = nested_object(40);
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let problem: Value = response.json().await.expect("problem body");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field} of 40 levels status");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|error| error["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(fields.contains(&field), "{field} listed in errors: {problem}");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn every_response_has_request_id() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let responses = [
        (
            "health",
            app.client.get(app.url("/health")).send().await.expect("request sent"),
        ),
        ("list", app.get(ENTRIES, &token).await),
        (
            "create",
            app.post_json(ENTRIES, &token, &json!({"name": "x", "category": "service"}))
                .await,
        ),
        (
            "unauthenticated",
            app.client.get(app.url(ENTRIES)).send().await.expect("request sent"),
        ),
        ("not found", app.get("/api/v1/nowhere", &token).await),
        ("invalid", app.post_json(ENTRIES, &token, &json!({"name": 1})).await),
    ];

    for (label, response) in responses {
        let id = header_text(&response, "x-request-id").unwrap_or_default();
        assert!(!id.is_empty(), "{label} response lacks X-Request-Id");
    }
}

#[tokio::test]
async fn well_formed_request_id_echoed() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    for id in [
        "trace-0123456789abcdef",
        "a.b_c-d",
        "550e8400-e29b-41d4-a716-446655440000",
    ] {
        let ok = app
            .request(Method::GET, ENTRIES, Some(&token))
            .header("x-request-id", id)
            .send()
            .await
            .expect("request sent");
        let error = app
            .request(Method::GET, "/api/v1/nowhere", Some(&token))
            .header("x-request-id", id)
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            header_text(&ok, "x-request-id").as_deref(),
            Some(id),
            "success echoes {id}"
        );
        assert_eq!(
            header_text(&error, "x-request-id").as_deref(),
            Some(id),
            "error echoes {id}"
        );
        let problem: Value = error.json().await.expect("problem body");
        assert_eq!(problem["request_id"], id, "problem body carries {id}");
    }
}

#[tokio::test]
async fn malformed_request_id_replaced() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let long = "a".repeat(300);
    let ids = [
        "has spaces in it",
        long.as_str(),
        "<script>alert(1)</script>",
        "line\tbreak",
        "id\"quoted\"",
        "ünïcode",
    ];

    for id in ids {
        let response = app
            .request(Method::GET, ENTRIES, Some(&token))
            .header(
                "x-request-id",
                header::HeaderValue::from_bytes(id.as_bytes()).expect("header value"),
            )
            .send()
            .await
            .expect("request sent");
        let returned = header_text(&response, "x-request-id").unwrap_or_default();
        assert_eq!(response.status(), StatusCode::OK, "{id:?} does not fail the request");
        assert!(!returned.is_empty(), "{id:?} replaced by a generated id");
        assert_ne!(returned, id, "{id:?} not echoed");
    }
}

#[tokio::test]
async fn security_headers_on_success_and_error() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let responses = [
        (
            "health",
            app.client.get(app.url("/health")).send().await.expect("request sent"),
        ),
        ("list", app.get(ENTRIES, &token).await),
        (
            "create",
            app.post_json(ENTRIES, &token, &json!({"name": "x", "category": "service"}))
                .await,
        ),
        (
            "unauthenticated",
            app.client.get(app.url(ENTRIES)).send().await.expect("request sent"),
        ),
        ("unknown route", app.get("/api/v1/nowhere", &token).await),
        (
            "wrong method",
            app.request(Method::DELETE, ENTRIES, Some(&token))
                .send()
                .await
                .expect("request sent"),
        ),
        ("invalid", app.post_json(ENTRIES, &token, &json!({"name": 1})).await),
        (
            "media type",
            post_raw(&app, &token, "text/plain", "x")
                .send()
                .await
                .expect("request sent"),
        ),
    ];

    for (label, response) in responses {
        let value = |name: &str| header_text(&response, name).unwrap_or_default();
        assert_eq!(
            value("x-content-type-options"),
            "nosniff",
            "{label}: X-Content-Type-Options"
        );
        assert_eq!(value("x-frame-options"), "DENY", "{label}: X-Frame-Options");
        assert_eq!(value("referrer-policy"), "no-referrer", "{label}: Referrer-Policy");
        assert!(
            value("content-security-policy").contains("default-src 'none'"),
            "{label}: Content-Security-Policy"
        );
        assert_eq!(value("cache-control"), "no-store", "{label}: Cache-Control");
    }
}

#[tokio::test]
async fn unknown_route_gets_404_problem() {
    let app = TestApp::spawn().await;

    for path in [
        "/api/v1/nowhere",
        "/api/v1/registry/entries/a/b",
        "/api/v2/registry/entries",
        "/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let response = app.get(path, &app.admin_token).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} status");
        assert_eq!(code, "not_found", "{path} code");
    }
}

#[tokio::test]
async fn wrong_method_gets_405_problem() {
    let app = TestApp::spawn().await;
    let cases = [
        (Method::DELETE, ENTRIES),
        (Method::PUT, ENTRIES),
        (Method::POST, "/health"),
        (Method::POST, "/api/v1/registry/search"),
    ];

    for (method, path) in cases {
        let response = app
            .request(method.clone(), path, Some(&app.admin_token))
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} status");
        assert_eq!(code, "method_not_allowed", "{method} {path} code");
    }
}

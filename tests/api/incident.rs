//! Incident controls: emergency mode, the run-time log level and operator
//! events, over HTTP and from the command line against a running server.

use std::process::{Command, Output};
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{poll_until, problem_code, TestApp, ADMIN_PASSWORD, JWT_SECRET};

const EMERGENCY: &str = "/api/v1/admin/emergency";
const LOGGING: &str = "/api/v1/admin/logging";
const AUDIT_EVENTS: &str = "/api/v1/admin/audit/events";
/// Running servers re-read the shared settings every 2 seconds.
const SETTINGS_WAIT: Duration = Duration::from_secs(5);

async fn start_emergency(app: &TestApp, body: &Value) -> Response {
    app.post_json(EMERGENCY, &app.admin_token, body).await
}

async fn emergency_state(app: &TestApp) -> Value {
    let response = app.get(EMERGENCY, &app.admin_token).await;
    assert_eq!(response.status(), StatusCode::OK, "admin reads emergency mode");
    response.json().await.expect("emergency body")
}

async fn me_with_key(app: &TestApp, key: &str) -> Response {
    app.client
        .get(app.url("/auth/me"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request sent")
}

async fn anonymous(app: &TestApp) -> Response {
    app.request(Method::GET, "/auth/me", None)
        .send()
        .await
        .expect("request sent")
}

/// Asserts that `response` is a 429 with a positive `Retry-After`.
fn assert_held(response: &Response, client: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{client} is held");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{client}'s 429 has a numeric Retry-After"));
    assert!(
        (1..=60).contains(&retry_after),
        "{client} waits 1 to 60 seconds at 1 request a minute: {retry_after}"
    );
    let limit = response
        .headers()
        .get("x-ratelimit-limit")
        .and_then(|v| v.to_str().ok());
    assert_eq!(limit, Some("1"), "{client} sees the emergency limit");
}

/// Creates a viewer and, for it, an API key with `read` only. Returns the
/// viewer's id, token and key.
async fn viewer_with_key(app: &TestApp) -> (String, String, String) {
    let (viewer_id, viewer_token) = app.create_user("held-viewer", &["viewer"]).await;
    let response = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "viewer-key", "user_id": viewer_id, "permissions": ["read"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "key for the viewer");
    let body: Value = response.json().await.expect("key body");
    let key = body["key"].as_str().expect("key").to_string();
    (viewer_id, viewer_token, key)
}

fn events<'a>(lines: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event_type"] == event_type).collect()
}

#[tokio::test]
async fn emergency_holds_clients_without_security_admin() {
    let app = TestApp::spawn().await;
    let (_, viewer_token, key) = viewer_with_key(&app).await;

    let started = start_emergency(
        &app,
        &json!({"rate_limit_per_minute": 1, "reason": "credential stuffing"}),
    )
    .await;
    assert_eq!(started.status(), StatusCode::OK);

    assert_eq!(
        app.get("/auth/me", &viewer_token).await.status(),
        StatusCode::OK,
        "viewer's first request"
    );
    assert_held(&app.get("/auth/me", &viewer_token).await, "the viewer");
    // The viewer's key shares the viewer's emergency bucket: a user with
    // several keys gets no more than the emergency rate.
    assert_held(&me_with_key(&app, &key).await, "the viewer's API key");
    assert_eq!(
        anonymous(&app).await.status(),
        StatusCode::UNAUTHORIZED,
        "an anonymous request gets through to authentication once"
    );
    assert_held(&anonymous(&app).await, "an anonymous client");
    for i in 0..5 {
        let status = app.get("/auth/me", &app.admin_token).await.status();
        assert_eq!(status, StatusCode::OK, "the admin's request {i} is not held");
    }

    let state = emergency_state(&app).await;
    assert_eq!(state["active"], true);
    assert_eq!(state["rate_limit_per_minute"], 1);
    assert_eq!(state["reason"], "credential stuffing");
    assert_eq!(state["expires_at"], Value::Null, "no duration, no expiry");

    let lifted = app
        .request(Method::DELETE, EMERGENCY, Some(&app.admin_token))
        .send()
        .await
        .expect("lift sent");
    assert_eq!(lifted.status(), StatusCode::OK);
    assert_eq!(emergency_state(&app).await["active"], false);
    for i in 0..3 {
        let status = app.get("/auth/me", &viewer_token).await.status();
        assert_eq!(status, StatusCode::OK, "the viewer's request {i} after the lift");
    }

    let lines = app.audit_lines().await;
    for event_type in ["emergency_mode_enabled", "emergency_mode_disabled"] {
        let found = events(&lines, event_type);
        assert_eq!(found.len(), 1, "one {event_type} event");
        assert_eq!(found[0]["severity"], "critical", "{event_type} is critical");
    }
}

#[tokio::test]
async fn emergency_expires_after_duration() {
    let app = TestApp::spawn().await;
    let (_, viewer_token) = app.create_user("expiring-viewer", &["viewer"]).await;

    let body = json!({"rate_limit_per_minute": 1, "reason": "short hold", "duration_minutes": 10});
    let started: Value = start_emergency(&app, &body).await.json().await.expect("emergency body");
    assert!(started["expires_at"].is_string(), "an expiry is shown: {started}");
    assert_eq!(app.get("/auth/me", &viewer_token).await.status(), StatusCode::OK);
    assert_held(&app.get("/auth/me", &viewer_token).await, "the viewer");

    app.clock.advance(chrono::Duration::minutes(9));
    assert_eq!(emergency_state(&app).await["active"], true, "still on after 9 minutes");

    app.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(emergency_state(&app).await["active"], false, "off after 11 minutes");
    // Three in a row: more than the emergency rate would allow.
    for i in 0..3 {
        let status = app.get("/auth/me", &viewer_token).await.status();
        assert_eq!(status, StatusCode::OK, "the viewer's request {i} after expiry");
    }
}

#[tokio::test]
async fn emergency_bad_bodies_rejected() {
    let app = TestApp::spawn().await;
    let cases = [
        ("rate 0", json!({"rate_limit_per_minute": 0, "reason": "r"})),
        ("empty reason", json!({"rate_limit_per_minute": 1, "reason": ""})),
        ("missing reason", json!({"rate_limit_per_minute": 1})),
        (
            "unknown field",
            json!({"rate_limit_per_minute": 1, "reason": "r", "scope": "all"}),
        ),
        (
            "duration too long",
            json!({"rate_limit_per_minute": 1, "reason": "r", "duration_minutes": 10081}),
        ),
        (
            "duration 0",
            json!({"rate_limit_per_minute": 1, "reason": "r", "duration_minutes": 0}),
        ),
        ("negative rate", json!({"rate_limit_per_minute": -1, "reason": "r"})),
        (
            "control character",
            json!({"rate_limit_per_minute": 1, "reason": "a\u{7}b"}),
        ),
    ];

    for (case, body) in cases {
        let response = start_emergency(&app, &body).await;
        let status = response.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: got {status}"
        );
        problem_code(response).await;
    }
    assert_eq!(emergency_state(&app).await["active"], false, "no bad body started it");
}

#[tokio::test]
async fn incident_controls_need_security_admin() {
    let app = TestApp::spawn().await;
    let (_, viewer_token) = app.create_user("curious-viewer", &["viewer"]).await;
    let cases = [
        (Method::GET, EMERGENCY, None),
        (
            Method::POST,
            EMERGENCY,
            Some(json!({"rate_limit_per_minute": 1, "reason": "r"})),
        ),
        (Method::DELETE, EMERGENCY, None),
        (Method::GET, LOGGING, None),
        (Method::PUT, LOGGING, Some(json!({"level": "debug"}))),
        (
            Method::POST,
            AUDIT_EVENTS,
            Some(json!({"event_type": "incident_note", "severity": "low", "description": "d"})),
        ),
    ];

    for (method, path, body) in cases {
        let mut request = app.request(method.clone(), path, Some(&viewer_token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(emergency_state(&app).await["active"], false);
}

async fn log_level(app: &TestApp) -> Value {
    let response = app.get(LOGGING, &app.admin_token).await;
    assert_eq!(response.status(), StatusCode::OK, "admin reads the log level");
    response.json::<Value>().await.expect("logging body")["level"].clone()
}

#[tokio::test]
async fn log_level_changed_at_run_time() {
    let app = TestApp::spawn_with(&[("LOG_LEVEL", "warn")]).await;
    assert_eq!(log_level(&app).await, "warn", "starts at LOG_LEVEL");

    let set = app
        .request(Method::PUT, LOGGING, Some(&app.admin_token))
        .json(&json!({"level": "debug"}))
        .send()
        .await
        .expect("level sent");
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(log_level(&app).await, "debug");

    let bad = app
        .request(Method::PUT, LOGGING, Some(&app.admin_token))
        .json(&json!({"level": "verbose"}))
        .send()
        .await
        .expect("level sent");
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    problem_code(bad).await;
    assert_eq!(log_level(&app).await, "debug", "a bad level changes nothing");

    let lines = app.audit_lines().await;
    let changed = events(&lines, "log_level_changed");
    assert_eq!(changed.len(), 1, "one change recorded");
    assert!(
        changed[0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("from warn to debug")),
        "the event gives both levels: {}",
        changed[0]
    );
}

#[tokio::test]
async fn operator_event_recorded() {
    let app = TestApp::spawn().await;
    let (viewer_id, _) = app.create_user("compromised", &["viewer"]).await;
    let me: Value = app
        .get("/auth/me", &app.admin_token)
        .await
        .json()
        .await
        .expect("me body");
    let admin_id = me["id"].as_str().expect("admin id").to_string();

    let response = app
        .post_json(
            AUDIT_EVENTS,
            &app.admin_token,
            &json!({
                "event_type": "api_key_compromised",
                "severity": "high",
                "description": "key revoked due to compromise",
                "user_id": viewer_id,
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("event body");

    let lines = app.audit_lines().await;
    let recorded = lines
        .iter()
        .find(|line| line["event_id"] == created["event_id"])
        .expect("the event is in the file");
    assert_eq!(recorded["event_type"], "api_key_compromised");
    assert_eq!(recorded["severity"], "high");
    assert_eq!(
        recorded["user_id"],
        viewer_id.as_str(),
        "the event names the user it is about"
    );
    let description = recorded["description"].as_str().unwrap_or("");
    assert!(
        description.starts_with("key revoked due to compromise"),
        "{description}"
    );
    assert!(description.contains(&admin_id), "the operator is named: {description}");
}

#[tokio::test]
async fn operator_event_bad_input_rejected() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            "upper-case type",
            json!({"event_type": "Incident", "severity": "low", "description": "d"}),
        ),
        (
            "empty type",
            json!({"event_type": "", "severity": "low", "description": "d"}),
        ),
        (
            "unknown severity",
            json!({"event_type": "note", "severity": "urgent", "description": "d"}),
        ),
        (
            "empty description",
            json!({"event_type": "note", "severity": "low", "description": ""}),
        ),
        ("missing severity", json!({"event_type": "note", "description": "d"})),
        (
            "unknown field",
            json!({"event_type": "note", "severity": "low", "description": "d", "x": 1}),
        ),
    ];

    for (case, body) in cases {
        let response = app.post_json(AUDIT_EVENTS, &app.admin_token, &body).await;
        let status = response.status();
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: got {status}"
        );
        problem_code(response).await;
    }
}

/// Runs the real binary against the running `app`'s data directory and database.
fn cli(app: &TestApp, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .args(args)
        .env_clear()
        .env("DATA_DIR", app.data_dir.path())
        .env("DATABASE_URL", app.state.config.database_url.expose())
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("LOG_LEVEL", "error")
        .output()
        .expect("CLI runs");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Waits until the server's emergency state has `active` equal to `expected`.
async fn wait_for_emergency(app: &TestApp, expected: bool) {
    let seen = poll_until(SETTINGS_WAIT, || async {
        (emergency_state(app).await["active"] == expected).then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "the server sees active = {expected} within {SETTINGS_WAIT:?}"
    );
}

#[tokio::test]
async fn cli_emergency_reaches_running_server() {
    let app = TestApp::spawn().await;
    let (_, viewer_token) = app.create_user("cli-viewer", &["viewer"]).await;

    cli(
        &app,
        &[
            "emergency",
            "start",
            "--rate-limit-per-minute",
            "1",
            "--reason",
            "paged at night",
        ],
    );
    wait_for_emergency(&app, true).await;
    assert_eq!(emergency_state(&app).await["reason"], "paged at night");
    assert_eq!(app.get("/auth/me", &viewer_token).await.status(), StatusCode::OK);
    assert_held(&app.get("/auth/me", &viewer_token).await, "the viewer");

    cli(&app, &["emergency", "stop"]);
    wait_for_emergency(&app, false).await;
    assert_eq!(app.get("/auth/me", &viewer_token).await.status(), StatusCode::OK);

    let lines = app.audit_lines().await;
    for event_type in ["emergency_mode_enabled", "emergency_mode_disabled"] {
        let found = events(&lines, event_type);
        assert_eq!(found.len(), 1, "the CLI recorded {event_type} in the server's file");
        assert_eq!(found[0]["severity"], "critical");
    }
}

#[tokio::test]
async fn cli_log_level_reaches_running_server() {
    let app = TestApp::spawn().await;

    cli(&app, &["logging", "set", "debug"]);

    let seen = poll_until(SETTINGS_WAIT, || async {
        let body: Value = app.get(LOGGING, &app.admin_token).await.json().await.ok()?;
        (body["level"] == "debug").then_some(())
    })
    .await;
    assert!(seen.is_some(), "the server applies the level within {SETTINGS_WAIT:?}");
    let lines = app.audit_lines().await;
    assert_eq!(events(&lines, "log_level_changed").len(), 1, "the change is audited");
}

#[tokio::test]
async fn cli_audit_record_then_query() {
    let app = TestApp::spawn().await;

    cli(
        &app,
        &[
            "audit",
            "record",
            "--event-type",
            "incident_note",
            "--severity",
            "high",
            "--description",
            "rotated every deploy key",
        ],
    );

    let lines = app.audit_lines().await;
    let notes = events(&lines, "incident_note");
    assert_eq!(notes.len(), 1, "the note is in the server's file");
    assert_eq!(notes[0]["severity"], "high");

    let output = cli(&app, &["audit", "query", "--severity", "high"]);
    let printed: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("query prints JSON lines"))
        .collect();
    assert!(
        printed.iter().any(|event| event["event_id"] == notes[0]["event_id"]),
        "the query finds the note: {printed:?}"
    );
    assert!(
        printed
            .iter()
            .all(|event| event["severity"] == "high" || event["severity"] == "critical"),
        "only high and above: {printed:?}"
    );

    // The server appends after the CLI's line, and the chain must still hold.
    assert_eq!(app.get("/auth/me", &app.admin_token).await.status(), StatusCode::OK);
    app.audit_lines().await;
    cli(&app, &["audit", "verify"]);
}

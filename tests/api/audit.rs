//! The audit trail: one hash-chained JSON line per request and per security
//! event, greppable, free of secrets, and continued across a restart.

use std::collections::HashMap;

use hyper_registry::audit::{verify_chain, GENESIS_HASH};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{TestApp, ADMIN_PASSWORD, JWT_SECRET, USER_PASSWORD};

/// Every field that each audit line carries, null where it does not apply.
const FIELDS: [&str; 16] = [
    "timestamp",
    "event_id",
    "event_type",
    "action",
    "status",
    "severity",
    "user_id",
    "api_key_id",
    "client_ip",
    "method",
    "path",
    "http_status",
    "request_id",
    "description",
    "prev_hash",
    "hash",
];

const WRONG_PASSWORD: &str = "wrong-passphrase-for-audit";

async fn send_tagged(builder: RequestBuilder, request_id: &str) -> Response {
    builder
        .header("x-request-id", request_id)
        .send()
        .await
        .expect("request sent")
}

/// What the scenario produced, for the assertions.
struct Scenario {
    user_id: String,
    tokens: Vec<String>,
    api_key: String,
    /// Request ids this test set, each with the status it got.
    tagged: Vec<(&'static str, StatusCode)>,
}

/// Runs logins that succeed and fail, an entry creation, a 403 and a 429.
async fn run_scenario(app: &TestApp) -> Scenario {
    let (user_id, user_token) = app.create_user("audited", &["user"]).await;
    let (_, viewer_token) = app.create_user("audited-viewer", &["viewer"]).await;
    let mut tagged = Vec::new();

    let login_ok = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "audited", "password": USER_PASSWORD}));
    let login_ok = send_tagged(login_ok, "audit-login-ok").await;
    tagged.push(("audit-login-ok", login_ok.status()));
    let second_token = login_ok.json::<Value>().await.expect("login body")["access_token"]
        .as_str()
        .expect("access token")
        .to_string();

    let login_failed = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "audited", "password": WRONG_PASSWORD}));
    tagged.push((
        "audit-login-failed",
        send_tagged(login_failed, "audit-login-failed").await.status(),
    ));

    let create = app
        .request(Method::POST, "/api/v1/registry/entries", Some(&user_token))
        .json(&json!({"name": "audited-entry", "category": "audit", "sensitive": {"deploy_token": "sensitive-value-7c2e"}}));
    tagged.push((
        "audit-entry-create",
        send_tagged(create, "audit-entry-create").await.status(),
    ));

    let denied = app
        .request(Method::POST, "/api/v1/registry/entries", Some(&viewer_token))
        .json(&json!({"name": "viewer-entry", "category": "audit"}));
    tagged.push(("audit-denied", send_tagged(denied, "audit-denied").await.status()));

    let key_body = json!({"name": "audited-key", "rate_limit_per_minute": 1});
    let key_response = send_tagged(
        app.request(Method::POST, "/api/v1/keys", Some(&user_token))
            .json(&key_body),
        "audit-key-create",
    )
    .await;
    tagged.push(("audit-key-create", key_response.status()));
    let api_key = key_response.json::<Value>().await.expect("key body")["key"]
        .as_str()
        .expect("key")
        .to_string();
    for request_id in ["audit-key-use", "audit-key-limited"] {
        let builder = app.client.get(app.url("/auth/me")).header("x-api-key", &api_key);
        tagged.push((request_id, send_tagged(builder, request_id).await.status()));
    }

    Scenario {
        user_id,
        tokens: vec![app.admin_token.clone(), user_token, viewer_token, second_token],
        api_key,
        tagged,
    }
}

fn find_line<'a>(lines: &'a [Value], request_id: &str, event_type: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|line| line["request_id"] == request_id && line["event_type"] == event_type)
}

#[tokio::test]
async fn scenario_statuses_as_planned() {
    // The other audit tests rely on the scenario producing these statuses.
    let app = TestApp::spawn().await;

    let scenario = run_scenario(&app).await;

    let expected = [
        ("audit-login-ok", StatusCode::OK),
        ("audit-login-failed", StatusCode::UNAUTHORIZED),
        ("audit-entry-create", StatusCode::CREATED),
        ("audit-denied", StatusCode::FORBIDDEN),
        ("audit-key-create", StatusCode::CREATED),
        ("audit-key-use", StatusCode::OK),
        ("audit-key-limited", StatusCode::TOO_MANY_REQUESTS),
    ];
    for (request_id, status) in expected {
        let got = scenario
            .tagged
            .iter()
            .find(|(id, _)| *id == request_id)
            .map(|(_, status)| *status);
        assert_eq!(got, Some(status), "request {request_id} got the planned status");
    }
}

#[tokio::test]
async fn one_access_line_per_request() {
    let app = TestApp::spawn().await;
    let scenario = run_scenario(&app).await;

    let lines = app.audit_lines().await;

    let mut access_per_request: HashMap<String, usize> = HashMap::new();
    for line in lines.iter().filter(|line| line["event_type"] == "access") {
        let request_id = line["request_id"].as_str().unwrap_or("").to_string();
        *access_per_request.entry(request_id).or_insert(0) += 1;
    }
    for (request_id, count) in &access_per_request {
        assert_eq!(*count, 1, "request {request_id} has exactly one access line");
    }
    for (request_id, _) in &scenario.tagged {
        assert_eq!(
            access_per_request.get(*request_id),
            Some(&1),
            "request {request_id} has an access line"
        );
    }
    // Harness: the admin login, two user creations with a login each. Scenario: seven tagged requests.
    assert_eq!(
        access_per_request.len(),
        5 + scenario.tagged.len(),
        "every request, and only those, has an access line"
    );
}

#[tokio::test]
async fn every_line_has_all_fields() {
    let app = TestApp::spawn().await;
    run_scenario(&app).await;

    let lines = app.audit_lines().await;

    assert!(!lines.is_empty(), "the scenario wrote audit lines");
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        for field in FIELDS {
            assert!(line.get(field).is_some(), "line {number} has `{field}`: {line}");
        }
        let timestamp = line["timestamp"].as_str().unwrap_or("");
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "line {number}: timestamp is RFC 3339, got {timestamp:?}"
        );
        assert!(
            timestamp.ends_with('Z'),
            "line {number}: timestamp is in UTC with Z, got {timestamp:?}"
        );
        let status = line["status"].as_str().unwrap_or("");
        assert!(
            ["success", "failed", "denied"].contains(&status),
            "line {number}: status is known, got {status:?}"
        );
        let severity = line["severity"].as_str().unwrap_or("");
        assert!(
            ["info", "low", "medium", "high", "critical"].contains(&severity),
            "line {number}: severity is known, got {severity:?}"
        );
    }
}

#[tokio::test]
async fn scenario_events_recorded() {
    let app = TestApp::spawn().await;
    let scenario = run_scenario(&app).await;

    let lines = app.audit_lines().await;

    let login_ok = find_line(&lines, "audit-login-ok", "login_success");
    assert!(
        login_ok.is_some_and(|line| line["user_id"] == scenario.user_id.as_str()),
        "the successful login is recorded with its user"
    );
    let login_failed = find_line(&lines, "audit-login-failed", "login_failed");
    assert!(
        login_failed.is_some_and(|line| line["status"] == "failed"),
        "the failed login is recorded with status failed"
    );
    let denied = find_line(&lines, "audit-denied", "permission_denied");
    assert!(denied.is_some(), "the 403 is recorded as permission_denied");
    let limited = find_line(&lines, "audit-key-limited", "rate_limit_exceeded");
    assert!(limited.is_some(), "the 429 is recorded as rate_limit_exceeded");
    let key_created = lines.iter().find(|line| line["event_type"] == "api_key_created");
    assert!(key_created.is_some(), "the key creation is recorded");
    let create_access = find_line(&lines, "audit-entry-create", "access");
    assert!(
        create_access.is_some_and(|line| line["http_status"] == 201),
        "the entry creation's access line has http_status 201"
    );
}

#[tokio::test]
async fn grep_patterns_find_lines() {
    let app = TestApp::spawn().await;
    let scenario = run_scenario(&app).await;

    let text = app.audit_text().await;

    let user_pattern = format!("\"user_id\": \"{}\"", scenario.user_id);
    let user_lines: Vec<Value> = text
        .lines()
        .filter(|line| line.contains(&user_pattern))
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .collect();
    assert!(!user_lines.is_empty(), "grep for {user_pattern} finds lines");
    for line in &user_lines {
        assert_eq!(
            line["user_id"],
            scenario.user_id.as_str(),
            "every line grep finds for the user is theirs: {line}"
        );
    }
    assert!(
        find_line(&user_lines, "audit-login-failed", "login_failed").is_some(),
        "grep by user_id finds the user's failed login"
    );
    assert!(
        find_line(&user_lines, "audit-entry-create", "access").is_some(),
        "grep by user_id finds the entry creation"
    );

    let failed_lines: Vec<Value> = text
        .lines()
        .filter(|line| line.contains("\"status\": \"failed\""))
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .collect();
    for line in &failed_lines {
        assert_eq!(
            line["status"], "failed",
            "every line grep finds for status failed has it: {line}"
        );
    }
    assert!(
        find_line(&failed_lines, "audit-login-failed", "login_failed").is_some(),
        "grep for status failed finds the failed login"
    );
}

#[tokio::test]
async fn no_secrets_in_audit_file() {
    let app = TestApp::spawn().await;
    let scenario = run_scenario(&app).await;

    let text = app.audit_text().await;

    let key_secret = &scenario.api_key[scenario.api_key.len() - 38..];
    let mut secrets: Vec<(&str, &str)> = vec![
        ("the admin password", ADMIN_PASSWORD),
        ("the user password", USER_PASSWORD),
        ("the wrong password", WRONG_PASSWORD),
        ("the JWT secret", JWT_SECRET),
        ("the API key", &scenario.api_key),
        ("the API key's secret part", key_secret),
        ("a sensitive value", "sensitive-value-7c2e"),
        ("an Authorization header", "Bearer "),
    ];
    for token in &scenario.tokens {
        secrets.push(("an access token", token));
        // The signature alone would be enough to replay a token whose other parts are public.
        secrets.push(("an access token's signature", token.rsplit('.').next().unwrap_or(token)));
    }
    for (what, secret) in secrets {
        assert!(!text.contains(secret), "the audit file does not contain {what}");
    }
}

#[tokio::test]
async fn chain_verifies() {
    let app = TestApp::spawn().await;
    run_scenario(&app).await;

    let text = app.audit_text().await;
    let result = verify_chain(text.lines(), GENESIS_HASH);

    let line_count = text.lines().count();
    assert_eq!(
        result.map(|(count, _)| count),
        Ok(line_count),
        "the chain over all {line_count} lines verifies"
    );
}

#[tokio::test]
async fn chain_detects_edited_line() {
    let app = TestApp::spawn().await;
    run_scenario(&app).await;
    let text = app.audit_text().await;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();

    lines[2] = lines[2].replacen("\"description\": \"", "\"description\": \"edited ", 1);
    let result = verify_chain(lines.iter().map(String::as_str), GENESIS_HASH);

    assert_eq!(
        result.map_err(|error| error.line),
        Err(3),
        "the edited third line is reported"
    );
}

#[tokio::test]
async fn chain_detects_deleted_line() {
    let app = TestApp::spawn().await;
    run_scenario(&app).await;
    let text = app.audit_text().await;
    let mut lines: Vec<&str> = text.lines().collect();

    lines.remove(2);
    let result = verify_chain(lines.iter().copied(), GENESIS_HASH);

    assert_eq!(
        result.map_err(|error| error.line),
        Err(3),
        "the line after the deleted one is reported"
    );
}

#[tokio::test]
async fn chain_continues_after_restart() {
    // Arrange: a first run that writes some lines, then a clean stop.
    let app = TestApp::spawn().await;
    run_scenario(&app).await;
    let data_dir = app.stop().await;
    let audit_path = data_dir.path().join("audit.log");
    let before = std::fs::read_to_string(&audit_path).expect("audit file after the first run");
    let before_count = before.lines().count();
    let last_hash_before =
        serde_json::from_str::<Value>(before.lines().last().expect("a last line")).expect("JSON")["hash"].clone();

    // Act: a second run on the same data directory.
    let data_path = data_dir.path().to_string_lossy().to_string();
    let restarted = TestApp::spawn_with(&[("DATA_DIR", data_path.as_str())]).await;
    let status = restarted.get("/auth/me", &restarted.admin_token).await.status();
    restarted.stop().await;
    let after = std::fs::read_to_string(&audit_path).expect("audit file after the second run");

    // Assert
    assert_eq!(status, StatusCode::OK, "the restarted server serves requests");
    let after_count = after.lines().count();
    assert!(
        after_count > before_count,
        "the second run appended lines: {before_count} then {after_count}"
    );
    let first_new: Value = serde_json::from_str(after.lines().nth(before_count).expect("a new line")).expect("JSON");
    assert_eq!(
        first_new["prev_hash"], last_hash_before,
        "the first new line links to the last line of the first run"
    );
    let result = verify_chain(after.lines(), GENESIS_HASH);
    assert_eq!(
        result.map(|(count, _)| count),
        Ok(after_count),
        "the chain over both runs verifies"
    );
}

#[tokio::test]
async fn revoked_key_use_audited_high() {
    // Arrange
    let app = TestApp::spawn().await;
    let created = app
        .post_json("/api/v1/keys", &app.admin_token, &json!({"name": "revoked-then-used"}))
        .await;
    let created: Value = created.json().await.expect("key body");
    let key = created["key"].as_str().expect("key").to_string();
    let key_id = created["id"].as_str().expect("key id").to_string();
    let revoke = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{key_id}"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .expect("request sent");
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT, "revoking the key");

    // Act
    let use_after_revoke = app.client.get(app.url("/auth/me")).header("x-api-key", &key);
    let status = send_tagged(use_after_revoke, "audit-revoked-key").await.status();
    let lines = app.audit_lines().await;

    // Assert
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the revoked key is rejected");
    let high_event = lines
        .iter()
        .find(|line| line["request_id"] == "audit-revoked-key" && line["severity"] == "high");
    assert!(
        high_event.is_some(),
        "the use of a revoked key is a high-severity event"
    );
    assert!(
        high_event.is_some_and(|line| line["api_key_id"] == key_id.as_str()),
        "the high-severity event names the revoked key's id"
    );
}

//! The detectors over HTTP: each raises its alarm once per subject per
//! window, not once per event, and again in the next window.

use chrono::Duration;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{TestApp, USER_PASSWORD};

/// Longer than the default 5-minute detector window.
fn next_window() -> Duration {
    Duration::minutes(6)
}

/// Lockout and the login rate limit are set out of the way, so that only the
/// detectors react to failed logins.
const QUIET_LOGIN_LIMITS: [(&str, &str); 2] = [
    ("LOGIN_MAX_FAILED_ATTEMPTS", "1000"),
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "1000000"),
];

fn events<'a>(lines: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event_type"] == event_type).collect()
}

async fn alarms(app: &TestApp, event_type: &str) -> Vec<Value> {
    let lines = app.audit_lines().await;
    events(&lines, event_type).into_iter().cloned().collect()
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> StatusCode {
    app.client
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login sent")
        .status()
}

/// Fails `count` logins, each with an unknown username of its own.
async fn fail_unknown_logins(app: &TestApp, tag: &str, count: usize) {
    for i in 0..count {
        let status = login_status(app, &format!("unknown-{tag}-{i}"), "wrong-passphrase").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "unknown user {i} is rejected");
    }
}

async fn fail_logins_as(app: &TestApp, username: &str, count: usize) {
    for i in 0..count {
        let status = login_status(app, username, "wrong-passphrase").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong password {i} is rejected");
    }
}

fn by_address(alarm: &&Value) -> bool {
    alarm["description"]
        .as_str()
        .unwrap_or("")
        .contains("from address 127.0.0.1")
}

fn by_account(alarm: &&Value) -> bool {
    alarm["description"]
        .as_str()
        .unwrap_or("")
        .contains("against one account")
}

async fn key_request(app: &TestApp, key: &str) -> Response {
    app.client
        .get(app.url("/auth/me"))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn failed_logins_from_address_alarm_once_per_window() {
    let app = TestApp::spawn_with(&QUIET_LOGIN_LIMITS).await;

    fail_unknown_logins(&app, "a", 9).await;
    assert!(
        alarms(&app, "brute_force_suspected").await.is_empty(),
        "9 failures stay below the threshold of 10"
    );

    fail_unknown_logins(&app, "b", 6).await;
    let first = alarms(&app, "brute_force_suspected").await;
    assert_eq!(first.len(), 1, "15 failures raise one alarm: {first:?}");
    assert_eq!(first[0]["severity"], "critical");
    assert_eq!(first[0]["status"], "denied");
    assert_eq!(first[0]["client_ip"], "127.0.0.1");
    assert!(by_address(&&first[0]), "the alarm names the address: {}", first[0]);

    app.clock.advance(next_window());
    fail_unknown_logins(&app, "c", 10).await;
    let second = alarms(&app, "brute_force_suspected").await;
    assert_eq!(second.len(), 2, "the next window raises again: {second:?}");
    assert!(second.iter().all(|alarm| by_address(&alarm)), "no account reached 10");
}

#[tokio::test]
async fn configured_threshold_and_window_honored() {
    let app = TestApp::spawn_with(&[
        QUIET_LOGIN_LIMITS[0],
        QUIET_LOGIN_LIMITS[1],
        ("DETECTOR_FAILED_LOGINS", "3"),
        ("DETECTOR_WINDOW_MINUTES", "1"),
    ])
    .await;

    fail_unknown_logins(&app, "a", 2).await;
    assert!(alarms(&app, "brute_force_suspected").await.is_empty(), "2 stay below 3");
    fail_unknown_logins(&app, "b", 1).await;
    let first = alarms(&app, "brute_force_suspected").await;
    assert_eq!(first.len(), 1, "the third failure raises: {first:?}");
    assert!(
        first[0]["description"]
            .as_str()
            .unwrap_or("")
            .starts_with("3 failed logins"),
        "the description gives the threshold: {}",
        first[0]
    );

    app.clock.advance(Duration::minutes(2));
    fail_unknown_logins(&app, "c", 3).await;
    assert_eq!(
        alarms(&app, "brute_force_suspected").await.len(),
        2,
        "a 1-minute window ends after 2 minutes"
    );
}

#[tokio::test]
async fn failed_logins_against_account_alarm_once_per_window() {
    let app = TestApp::spawn_with(&QUIET_LOGIN_LIMITS).await;
    let (target_id, _) = app.create_user("target", &["viewer"]).await;

    // The address alarm fires first on unknown names, so that the failures
    // against `target` below raise only the account alarm.
    fail_unknown_logins(&app, "spray", 10).await;
    fail_logins_as(&app, "target", 15).await;

    let first = alarms(&app, "brute_force_suspected").await;
    assert_eq!(
        first.iter().filter(by_address).count(),
        1,
        "one address alarm: {first:?}"
    );
    let account: Vec<&Value> = first.iter().filter(by_account).collect();
    assert_eq!(account.len(), 1, "15 failures raise one account alarm: {first:?}");
    assert_eq!(account[0]["severity"], "critical");
    assert_eq!(account[0]["user_id"], target_id.as_str(), "the alarm names the account");

    app.clock.advance(next_window());
    fail_logins_as(&app, "target", 10).await;
    let second = alarms(&app, "brute_force_suspected").await;
    assert_eq!(
        second.iter().filter(by_account).count(),
        2,
        "the next window raises the account alarm again: {second:?}"
    );
    assert_eq!(
        second.iter().filter(by_address).count(),
        2,
        "and the address alarm, from the same address"
    );
    assert_eq!(
        login_status(&app, "target", USER_PASSWORD).await,
        StatusCode::OK,
        "the detector does not lock the account"
    );
}

async fn deny_entry_creation(app: &TestApp, viewer_token: &str, count: usize) {
    for _ in 0..count {
        let response = app
            .post_json(
                "/api/v1/registry/entries",
                viewer_token,
                &json!({"name": "forbidden", "category": "test"}),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "a viewer cannot create entries"
        );
    }
}

#[tokio::test]
async fn permission_denials_alarm_once_per_window() {
    let app = TestApp::spawn().await;
    let (viewer_id, viewer_token) = app.create_user("denied-viewer", &["viewer"]).await;

    deny_entry_creation(&app, &viewer_token, 19).await;
    assert!(
        alarms(&app, "permission_denial_burst").await.is_empty(),
        "19 denials stay below the threshold of 20"
    );
    deny_entry_creation(&app, &viewer_token, 6).await;
    let first = alarms(&app, "permission_denial_burst").await;
    assert_eq!(first.len(), 1, "25 denials raise one alarm: {first:?}");
    assert_eq!(first[0]["severity"], "high");
    assert_eq!(first[0]["user_id"], viewer_id.as_str(), "the alarm names the principal");

    app.clock.advance(next_window());
    deny_entry_creation(&app, &viewer_token, 20).await;
    assert_eq!(
        alarms(&app, "permission_denial_burst").await.len(),
        2,
        "the next window raises again"
    );
}

/// Sends `count` anonymous requests and returns how many got 429.
async fn anonymous_requests(app: &TestApp, count: usize) -> usize {
    let mut rejected = 0;
    for _ in 0..count {
        let response = app.request(Method::GET, "/auth/me", None).send().await.expect("sent");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            rejected += 1;
        }
    }
    rejected
}

#[tokio::test]
async fn rate_limit_rejections_alarm_once_per_window() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "1"), ("DETECTOR_RATE_LIMIT_REJECTIONS", "5")]).await;

    assert_eq!(anonymous_requests(&app, 5).await, 4, "one request a minute is served");
    assert!(
        alarms(&app, "rate_limit_abuse").await.is_empty(),
        "4 rejections stay below 5"
    );

    assert_eq!(anonymous_requests(&app, 10).await, 10);
    let first = alarms(&app, "rate_limit_abuse").await;
    assert_eq!(first.len(), 1, "14 rejections raise one alarm: {first:?}");
    assert_eq!(first[0]["severity"], "high");
    assert_eq!(first[0]["client_ip"], "127.0.0.1");

    app.clock.advance(next_window());
    assert_eq!(
        anonymous_requests(&app, 6).await,
        5,
        "the bucket refilled to its burst of 1"
    );
    assert_eq!(
        alarms(&app, "rate_limit_abuse").await.len(),
        2,
        "the next window raises again"
    );
}

#[tokio::test]
async fn rate_limit_abuse_at_default_threshold() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "1")]).await;

    assert_eq!(anonymous_requests(&app, 50).await, 49);
    assert!(
        alarms(&app, "rate_limit_abuse").await.is_empty(),
        "49 rejections stay below 50"
    );

    assert_eq!(anonymous_requests(&app, 20).await, 20);
    let raised = alarms(&app, "rate_limit_abuse").await;
    assert_eq!(raised.len(), 1, "69 rejections raise one alarm: {raised:?}");
    assert!(
        raised[0]["description"].as_str().unwrap_or("").starts_with("50 "),
        "the description gives the threshold: {}",
        raised[0]
    );
}

async fn refresh(app: &TestApp, refresh_token: &str) -> StatusCode {
    app.client
        .post(app.url("/auth/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .expect("refresh sent")
        .status()
}

#[tokio::test]
async fn refresh_token_reuse_raises_high_event() {
    let app = TestApp::spawn().await;
    let (user_id, _) = app.create_user("reused", &["viewer"]).await;
    let login: Value = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "reused", "password": USER_PASSWORD}))
        .send()
        .await
        .expect("login sent")
        .json()
        .await
        .expect("login body");
    let stolen = login["refresh_token"].as_str().expect("refresh token").to_string();

    assert_eq!(refresh(&app, &stolen).await, StatusCode::OK, "first use rotates");
    assert!(
        alarms(&app, "refresh_token_reused").await.is_empty(),
        "a rotation is no reuse"
    );
    // Past the window in which a second use counts as a concurrent request.
    app.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(
        refresh(&app, &stolen).await,
        StatusCode::UNAUTHORIZED,
        "second use is rejected"
    );

    let reused = alarms(&app, "refresh_token_reused").await;
    assert_eq!(reused.len(), 1, "one event for one reuse: {reused:?}");
    assert_eq!(reused[0]["severity"], "high");
    assert_eq!(reused[0]["status"], "denied");
    assert_eq!(reused[0]["user_id"], user_id.as_str());
}

#[tokio::test]
async fn revoked_key_alarm_once_per_key_per_window() {
    let app = TestApp::spawn().await;
    let created: Value = app
        .post_json("/api/v1/keys", &app.admin_token, &json!({"name": "leaked"}))
        .await
        .json()
        .await
        .expect("key body");
    let key = created["key"].as_str().expect("key").to_string();
    let key_id = created["id"].as_str().expect("key id").to_string();
    let revoked = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{key_id}"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .expect("revocation sent");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    for _ in 0..5 {
        assert_eq!(key_request(&app, &key).await.status(), StatusCode::UNAUTHORIZED);
    }
    let lines = app.audit_lines().await;
    assert_eq!(events(&lines, "revoked_api_key_used").len(), 5, "each use is recorded");
    let first = events(&lines, "revoked_api_key_alarm");
    assert_eq!(first.len(), 1, "five uses raise one alarm: {first:?}");
    assert_eq!(first[0]["severity"], "high");
    assert_eq!(first[0]["api_key_id"], key_id.as_str(), "the alarm names the key");

    app.clock.advance(next_window());
    assert_eq!(key_request(&app, &key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        alarms(&app, "revoked_api_key_alarm").await.len(),
        2,
        "the next window raises again"
    );
}

async fn send_invalid_keys(app: &TestApp, count: usize) {
    for i in 0..count {
        let response = key_request(app, &format!("hrk_{i:012}_not-a-key")).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "invalid key {i} is rejected"
        );
    }
}

#[tokio::test]
async fn invalid_key_burst_alarm_once_per_window() {
    let app = TestApp::spawn().await;

    send_invalid_keys(&app, 19).await;
    assert!(alarms(&app, "api_key_burst").await.is_empty(), "19 keys stay below 20");
    send_invalid_keys(&app, 10).await;
    let first = alarms(&app, "api_key_burst").await;
    assert_eq!(first.len(), 1, "29 invalid keys raise one alarm: {first:?}");
    assert_eq!(first[0]["severity"], "high");
    assert_eq!(first[0]["client_ip"], "127.0.0.1");

    app.clock.advance(next_window());
    send_invalid_keys(&app, 20).await;
    assert_eq!(
        alarms(&app, "api_key_burst").await.len(),
        2,
        "the next window raises again"
    );
}

/// Runs the real `grep` with `pattern` on `path` and returns the lines it printed.
fn grep(pattern: &str, path: &std::path::Path) -> Vec<String> {
    let output = std::process::Command::new("grep")
        .arg("--")
        .arg(pattern)
        .arg(path)
        .output()
        .expect("grep runs");
    assert!(
        output.status.code().is_some_and(|code| code <= 1),
        "grep failed: {output:?}"
    );
    String::from_utf8(output.stdout)
        .expect("grep output is UTF-8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn grep_finds_exactly_matching_events() {
    let app = TestApp::spawn_with(&QUIET_LOGIN_LIMITS).await;
    let (user_id, user_token) = app.create_user("grepped", &["viewer"]).await;
    fail_logins_as(&app, "grepped", 10).await;
    let denied = app
        .post_json(
            "/api/v1/registry/entries",
            &user_token,
            &json!({"name": "x", "category": "y"}),
        )
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let missing = app.get("/api/v1/registry/entries/no-such-entry", &user_token).await;
    assert!(missing.status().is_client_error(), "a missing entry is a client error");
    let data_dir = app.stop().await;

    let path = data_dir.path().join("audit.log");
    let text = std::fs::read_to_string(&path).expect("audit log");
    let parsed: Vec<(String, Value)> = text
        .lines()
        .map(|line| (line.to_string(), serde_json::from_str(line).expect("JSON line")))
        .collect();
    let cases = [
        (format!("\"user_id\": \"{user_id}\""), "user_id", user_id.as_str()),
        ("\"status\": \"failed\"".to_string(), "status", "failed"),
        ("\"severity\": \"critical\"".to_string(), "severity", "critical"),
    ];
    for (pattern, field, value) in cases {
        let expected: Vec<String> = parsed
            .iter()
            .filter(|(_, event)| event[field] == value)
            .map(|(line, _)| line.clone())
            .collect();
        assert!(
            !expected.is_empty(),
            "the scenario produced events with {field} {value}"
        );
        assert_eq!(
            grep(&pattern, &path),
            expected,
            "grep '{pattern}' finds exactly those events"
        );
    }
}

//! The fourteen items of the hardening guide's Security Testing Checklist,
//! each tested against the real server. Test names start with the item.
//! Other modules test most items in more depth, and
//! docs/security-testing.md maps every item to its tests there as well.
//!
//! The injection tests are table-driven: every hostile string goes into
//! every string field of an entry and every query parameter of the API.
//! Each request must either store and return the string exactly, as JSON,
//! or reject it with a 4xx problem document and leave the database as it
//! was. A 5xx or an HTML response fails the test.

use chrono::Duration;
use hyper_registry::crypto::{key_id, AesGcmCipher, Cipher};
use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Map, Value};

use crate::helpers::{
    count_rows, import_ndjson, list_all_entries, poll_until, problem_code, raw_entry_sensitive, TestApp,
    ADMIN_PASSWORD, ADMIN_USERNAME, USER_PASSWORD,
};
use crate::tls::support::{
    client_config, connect, fetch, fixture, get, path_str, read_certificates, served_chain, TestCa, TlsTestServer,
    BOTH_VERSIONS,
};

const ENTRIES: &str = "/api/v1/registry/entries";
const SEARCH: &str = "/api/v1/registry/search";

/// An encryption key known to the test, so it can check the stored bytes.
const ENCRYPTION_KEY_BASE64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Strings that mean something to SQL, FTS, HTML, template engines, URL
/// decoding, path handling or Unicode processing.
const HOSTILE_STRINGS: &[&str] = &[
    "'; DROP TABLE entries;--",
    "\" OR 1=1 --",
    "' OR '1'='1",
    "1; DELETE FROM users WHERE '1'='1",
    "' UNION SELECT password_hash FROM users --",
    "admin'/*",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "</script><svg onload=alert(1)>",
    "javascript:alert(document.cookie)",
    "{{7*7}}",
    "${7*7}",
    "<%= 7*7 %>",
    "%00",
    "%27%20OR%201%3D1--",
    "\u{0}",
    "before\u{0}after",
    "\u{202e}fdp.exe",
    "\u{feff}byte-order-mark",
    "zero\u{200b}width",
    "e\u{301}\u{301}\u{301}",
    "\u{85}next-line",
    "😀𝕏\u{10ffff}",
    "\\u0000 \\x00 \\",
    "../../etc/passwd",
    "NEAR(a b) OR \"c\" * -d :e ^f (",
];

fn header_text(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn send(builder: RequestBuilder) -> Response {
    builder.send().await.expect("request sent")
}

/// Sends `builder` with `X-Request-Id: request_id`, so its audit events can
/// be found.
async fn send_tagged(builder: RequestBuilder, request_id: &str) -> Response {
    send(builder.header("x-request-id", request_id)).await
}

fn events_of<'a>(lines: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event_type"] == event_type).collect()
}

fn event_of_request<'a>(lines: &'a [Value], request_id: &str, event_type: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|line| line["request_id"] == request_id && line["event_type"] == event_type)
}

fn entry_path(entry: &Value) -> String {
    format!("{ENTRIES}/{}", entry["id"].as_str().expect("entry id"))
}

/// Asserts that a response is not HTML and cannot be sniffed into HTML.
fn assert_not_html(response: &Response, label: &str) {
    let content_type = header_text(response, "content-type").to_ascii_lowercase();
    assert!(
        !content_type.contains("html"),
        "{label}: content type {content_type:?} is HTML"
    );
    assert_eq!(
        header_text(response, "x-content-type-options"),
        "nosniff",
        "{label}: X-Content-Type-Options"
    );
}

/// The outcome of a request that carried a hostile string.
enum Outcome {
    /// 2xx with this JSON body.
    Accepted(Value),
    /// 4xx with a problem document.
    Rejected(StatusCode),
}

/// Checks the status and headers of a response to a hostile request and
/// returns its outcome. Fails on a 5xx, a non-JSON success or an error that
/// is not a problem document.
async fn outcome_of(response: Response, label: &str) -> Outcome {
    let status = response.status();
    assert!(!status.is_server_error(), "{label}: server error {status}");
    assert_not_html(&response, label);
    if status.is_success() {
        assert_eq!(
            header_text(&response, "content-type"),
            "application/json",
            "{label}: content type of {status}"
        );
        Outcome::Accepted(response.json().await.expect("JSON body"))
    } else {
        assert!(status.is_client_error(), "{label}: unexpected status {status}");
        let code = problem_code(response).await;
        assert!(!code.is_empty(), "{label}: problem code");
        Outcome::Rejected(status)
    }
}

// ---------------------------------------------------------------------------
// 1. JWT token expiration

#[tokio::test]
async fn token_expiry_rejects_an_expired_access_token() {
    let app = TestApp::spawn_with(&[("JWT_EXPIRE_MINUTES", "5")]).await;
    app.create_user("expiring", &["viewer"]).await;
    let login = send(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "expiring", "password": USER_PASSWORD})),
    )
    .await;
    let pair: Value = login.json().await.expect("login body");
    let token = pair["access_token"].as_str().expect("access token").to_string();
    assert_eq!(pair["expires_in"], 300, "expires_in follows JWT_EXPIRE_MINUTES");

    // The default leeway is 30 seconds.
    app.clock.advance(Duration::minutes(5) + Duration::seconds(29));
    let inside_leeway = app.get(ENTRIES, &token).await.status();
    app.clock.advance(Duration::seconds(2));
    let expired = send_tagged(app.request(Method::GET, ENTRIES, Some(&token)), "expired-token").await;

    assert_eq!(inside_leeway, StatusCode::OK, "the token works until exp plus leeway");
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED, "the expired token gets 401");
    assert!(
        header_text(&expired, "www-authenticate").starts_with("Bearer"),
        "the 401 carries a Bearer challenge"
    );
    assert_eq!(problem_code(expired).await, "token_expired");
    let lines = app.audit_lines_on_disk();
    let event = event_of_request(&lines, "expired-token", "authentication_failed");
    assert!(
        event.is_some(),
        "the rejected token is audited as authentication_failed"
    );
}

#[tokio::test]
async fn token_expiry_refresh_works_until_lifetime() {
    let app = TestApp::spawn_with(&[("JWT_EXPIRE_MINUTES", "5"), ("JWT_REFRESH_EXPIRE_DAYS", "1")]).await;
    app.create_user("refreshing", &["viewer"]).await;
    let pair: Value = send(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "refreshing", "password": USER_PASSWORD})),
    )
    .await
    .json()
    .await
    .expect("login body");

    // The access token has expired, but the refresh token still works.
    app.clock.advance(Duration::hours(1));
    let refreshed = send(
        app.client
            .post(app.url("/auth/refresh"))
            .json(&json!({"refresh_token": pair["refresh_token"]})),
    )
    .await;
    assert_eq!(refreshed.status(), StatusCode::OK, "refresh inside its lifetime");
    let renewed: Value = refreshed.json().await.expect("refresh body");
    let renewed_access = renewed["access_token"].as_str().expect("access token");
    assert_eq!(app.get("/auth/me", renewed_access).await.status(), StatusCode::OK);

    // Past the refresh lifetime, the newest refresh token is rejected too.
    app.clock.advance(Duration::days(1) + Duration::seconds(1));
    let late = send(
        app.client
            .post(app.url("/auth/refresh"))
            .json(&json!({"refresh_token": renewed["refresh_token"]})),
    )
    .await;
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED, "refresh past its lifetime");
    assert_eq!(problem_code(late).await, "token_expired");
}

// ---------------------------------------------------------------------------
// 2. API key revocation

#[tokio::test]
async fn key_revocation_rejects_key_at_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("key-owner", &["user"]).await;
    let created = app.create_api_key(&token, &json!({"name": "to-revoke"})).await;
    let key = created["key"].as_str().expect("key");
    let key_id = created["id"].as_str().expect("key id");
    let before = send(app.request_with_key(Method::GET, ENTRIES, key)).await.status();

    let revoke = send(app.request(Method::DELETE, &format!("/api/v1/keys/{key_id}"), Some(&token))).await;
    let after = send_tagged(app.request_with_key(Method::GET, ENTRIES, key), "revoked-key-use").await;

    assert_eq!(before, StatusCode::OK, "the key works before revocation");
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT, "revocation gives 204");
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "the revoked key gets 401");
    assert_eq!(problem_code(after).await, "api_key_revoked");
    let listed: Value = app.get("/api/v1/keys", &token).await.json().await.expect("key list");
    let revoked_at = listed["items"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["id"] == key_id))
        .map(|item| item["revoked_at"].clone());
    assert!(
        revoked_at.as_ref().is_some_and(Value::is_string),
        "the listing shows revoked_at: {revoked_at:?}"
    );
    let lines = app.audit_lines_on_disk();
    let revoked = events_of(&lines, "api_key_revoked");
    assert!(
        revoked.iter().any(|event| event["severity"] == "medium"),
        "the revocation is audited: {revoked:?}"
    );
    let used = event_of_request(&lines, "revoked-key-use", "revoked_api_key_used");
    assert!(
        used.is_some_and(|event| event["api_key_id"] == key_id),
        "the use of the revoked key is audited with its id: {used:?}"
    );
    let alarm = event_of_request(&lines, "revoked-key-use", "revoked_api_key_alarm");
    assert!(
        alarm.is_some_and(|event| event["severity"] == "high"),
        "the use of a revoked key raises a high event: {alarm:?}"
    );
}

#[tokio::test]
async fn key_revocation_ends_grace_period() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("rotating-owner", &["user"]).await;
    let created = app.create_api_key(&token, &json!({"name": "rotating"})).await;
    let old_key = created["key"].as_str().expect("key");
    let key_id = created["id"].as_str().expect("key id");
    let rotated = send(
        app.request(Method::POST, &format!("/api/v1/keys/{key_id}/rotate"), Some(&token))
            .json(&json!({"grace_period_hours": 24})),
    )
    .await;
    assert_eq!(rotated.status(), StatusCode::CREATED, "rotation gives 201");
    let rotated: Value = rotated.json().await.expect("rotation body");
    let new_key = rotated["key"].as_str().expect("new key");
    let in_grace = send(app.request_with_key(Method::GET, "/auth/me", old_key))
        .await
        .status();

    let revoke = send(app.request(Method::DELETE, &format!("/api/v1/keys/{key_id}"), Some(&token))).await;
    let old_after = send(app.request_with_key(Method::GET, "/auth/me", old_key)).await;
    let new_after = send(app.request_with_key(Method::GET, "/auth/me", new_key))
        .await
        .status();

    assert_eq!(in_grace, StatusCode::OK, "the old key works during the grace period");
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT, "revoking the old key");
    assert_eq!(
        old_after.status(),
        StatusCode::UNAUTHORIZED,
        "revocation ends the grace period"
    );
    assert_eq!(problem_code(old_after).await, "api_key_revoked");
    assert_eq!(new_after, StatusCode::OK, "the replacement keeps working");
}

#[tokio::test]
async fn key_revocation_by_other_user_rejected() {
    let app = TestApp::spawn().await;
    let (_, owner_token) = app.create_user("key-holder", &["user"]).await;
    let (_, other_token) = app.create_user("key-thief", &["user"]).await;
    let created = app.create_api_key(&owner_token, &json!({"name": "not-yours"})).await;
    let key = created["key"].as_str().expect("key");
    let key_id = created["id"].as_str().expect("key id");

    let revoke = send(app.request(Method::DELETE, &format!("/api/v1/keys/{key_id}"), Some(&other_token))).await;
    let rotate = send(app.request(
        Method::POST,
        &format!("/api/v1/keys/{key_id}/rotate"),
        Some(&other_token),
    ))
    .await;
    let still_works = send(app.request_with_key(Method::GET, "/auth/me", key)).await.status();

    assert_eq!(
        revoke.status(),
        StatusCode::NOT_FOUND,
        "another user's key is not found"
    );
    assert_eq!(rotate.status(), StatusCode::NOT_FOUND, "nor can it be rotated");
    assert_eq!(still_works, StatusCode::OK, "the key still works");
}

// ---------------------------------------------------------------------------
// 3. Rate limiting

#[tokio::test]
async fn rate_limiting_429_after_burst() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "60"), ("RATE_LIMIT_BURST", "2")]).await;
    let (_, token) = app.create_user("limited", &["viewer"]).await;

    let first = app.get(ENTRIES, &token).await;
    let second = app.get(ENTRIES, &token).await;
    let third = send_tagged(app.request(Method::GET, ENTRIES, Some(&token)), "over-limit").await;

    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(header_text(&first, "x-ratelimit-limit"), "60", "limit per minute");
    assert_eq!(header_text(&first, "x-ratelimit-remaining"), "1", "one request left");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(header_text(&second, "x-ratelimit-remaining"), "0", "none left");
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the third request gets 429"
    );
    let retry_after: i64 = header_text(&third, "retry-after")
        .parse()
        .expect("Retry-After is a number");
    assert!(retry_after >= 1, "Retry-After is at least 1 s, got {retry_after}");
    assert_eq!(problem_code(third).await, "rate_limited");
    let lines = app.audit_lines_on_disk();
    let event = event_of_request(&lines, "over-limit", "rate_limit_exceeded");
    assert!(
        event.is_some_and(|event| event["http_status"] == 429),
        "the 429 is audited: {event:?}"
    );

    app.clock.advance(Duration::seconds(retry_after));
    assert_eq!(
        app.get(ENTRIES, &token).await.status(),
        StatusCode::OK,
        "after Retry-After the bucket has refilled"
    );
}

#[tokio::test]
async fn rate_limiting_api_key_own_bucket() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "60")]).await;
    let (_, token) = app.create_user("key-limited", &["user"]).await;
    let created = app
        .create_api_key(&token, &json!({"name": "slow", "rate_limit_per_minute": 1}))
        .await;
    let key = created["key"].as_str().expect("key");

    let first = send(app.request_with_key(Method::GET, ENTRIES, key)).await;
    let second = send(app.request_with_key(Method::GET, ENTRIES, key)).await;
    let owner = app.get(ENTRIES, &token).await;

    assert_eq!(first.status(), StatusCode::OK, "the key's first request passes");
    assert_eq!(header_text(&first, "x-ratelimit-limit"), "1", "the key's own limit");
    assert_eq!(
        second.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the key's second request gets 429"
    );
    assert_eq!(owner.status(), StatusCode::OK, "the owner's bucket is separate");
    assert_eq!(
        header_text(&owner, "x-ratelimit-limit"),
        "60",
        "the owner has the default limit"
    );
}

#[tokio::test]
async fn rate_limiting_login_per_address() {
    let app = TestApp::spawn_with(&[("LOGIN_RATE_LIMIT_PER_MINUTE", "3")]).await;
    // Refill the bucket that the administrator's login at start-up used.
    app.clock.advance(Duration::minutes(1));
    let mut statuses = Vec::new();
    for index in 0..3 {
        let response = send(app.client.post(app.url("/auth/login")).json(&json!({
            "username": format!("guess-{index}"),
            "password": "wrong-passphrase-1",
        })))
        .await;
        statuses.push(response.status());
    }

    let fourth = send(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})),
    )
    .await;

    assert_eq!(statuses, vec![StatusCode::UNAUTHORIZED; 3], "three guesses get 401");
    assert_eq!(
        fourth.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth login from the address gets 429, even with the right password"
    );
    assert!(
        !header_text(&fourth, "retry-after").is_empty(),
        "the 429 carries Retry-After"
    );
    assert_eq!(problem_code(fourth).await, "rate_limited");
}

// ---------------------------------------------------------------------------
// 4. Permission denial

#[tokio::test]
async fn permission_denial_viewer_writes_get_403() {
    let app = TestApp::spawn().await;
    let entry = app
        .create_entry(&app.admin_token, &json!({"name": "guarded", "category": "service"}))
        .await;
    let (viewer_id, viewer) = app.create_user("read-only", &["viewer"]).await;
    let path = entry_path(&entry);
    let attempts = [
        (
            "create",
            app.request(Method::POST, ENTRIES, Some(&viewer))
                .json(&json!({"name": "sneaky", "category": "service"})),
            "write",
        ),
        (
            "patch",
            app.request(Method::PATCH, &path, Some(&viewer))
                .json(&json!({"title": "changed"})),
            "write",
        ),
        ("delete", app.request(Method::DELETE, &path, Some(&viewer)), "delete"),
        (
            "create key",
            app.request(Method::POST, "/api/v1/keys", Some(&viewer))
                .json(&json!({"name": "k"})),
            "keys:manage",
        ),
        (
            "analytics",
            app.request(Method::GET, "/api/v1/registry/analytics", Some(&viewer)),
            "analytics:read",
        ),
        (
            "list users",
            app.request(Method::GET, "/api/v1/admin/users", Some(&viewer)),
            "users:admin",
        ),
        (
            "read audit",
            app.request(Method::GET, "/api/v1/admin/audit", Some(&viewer)),
            "audit:read",
        ),
    ];

    for (index, (label, builder, permission)) in attempts.into_iter().enumerate() {
        let request_id = format!("denied-{index}");
        let response = send_tagged(builder, &request_id).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{label}: status");
        let problem: Value = response.json().await.expect("problem body");
        assert_eq!(problem["code"], "permission_denied", "{label}: code");
        assert!(
            problem["detail"].as_str().unwrap_or("").contains(permission),
            "{label}: the detail names `{permission}`: {problem}"
        );
        let lines = app.audit_lines_on_disk();
        let event = event_of_request(&lines, &request_id, "permission_denied");
        assert!(
            event.is_some_and(|event| event["user_id"] == viewer_id.as_str()),
            "{label}: the denial is audited with the user id: {event:?}"
        );
    }

    assert_eq!(
        app.get(ENTRIES, &viewer).await.status(),
        StatusCode::OK,
        "reads are allowed"
    );
    let stored: Value = app.get(&path, &app.admin_token).await.json().await.expect("entry body");
    assert_eq!(stored, entry, "the entry is unchanged");
    assert_eq!(count_rows(&app, "entries").await, 1, "nothing was created");
}

#[tokio::test]
async fn permission_denial_key_limited_to_permissions() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("key-scoper", &["user"]).await;
    let created = app
        .create_api_key(&token, &json!({"name": "read-only", "permissions": ["read"]}))
        .await;
    let key = created["key"].as_str().expect("key");

    let list = send(app.request_with_key(Method::GET, ENTRIES, key)).await.status();
    let search = send(app.request_with_key(Method::GET, &format!("{SEARCH}?q=x"), key)).await;
    let create = send(
        app.request_with_key(Method::POST, ENTRIES, key)
            .json(&json!({"name": "via-key", "category": "service"})),
    )
    .await;

    assert_eq!(list, StatusCode::OK, "the key may read");
    assert_eq!(
        search.status(),
        StatusCode::FORBIDDEN,
        "search is not among its permissions"
    );
    assert_eq!(problem_code(search).await, "permission_denied");
    assert_eq!(
        create.status(),
        StatusCode::FORBIDDEN,
        "write is not among its permissions"
    );
    assert_eq!(problem_code(create).await, "permission_denied");
    assert_eq!(count_rows(&app, "entries").await, 0, "nothing was created");
}

// ---------------------------------------------------------------------------
// 5. SSL/TLS connection

#[tokio::test]
async fn tls_connection_serves_configured_chain() {
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("fullchain.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("privkey.pem"))),
    ])
    .await;
    let roots = read_certificates(&fixture("ca.pem"));

    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config(&roots, None, &[version]);
        let mut stream = connect(server.address, config)
            .await
            .unwrap_or_else(|error| panic!("{version:?}: handshake failed: {error}"));
        let health = get(&mut stream, "/health").await.expect("health response");
        let entries = get(&mut stream, ENTRIES).await.expect("entries response");

        assert_eq!(health.status, 200, "{version:?}: /health over TLS");
        assert_eq!(
            served_chain(&stream).len(),
            2,
            "{version:?}: leaf and intermediate served"
        );
        assert_eq!(entries.status, 401, "{version:?}: authentication still applies");
        assert_eq!(
            entries.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{version:?}: HSTS over TLS"
        );
        assert_eq!(entries.header("x-content-type-options"), Some("nosniff"));
    }
}

#[tokio::test]
async fn tls_connection_rejects_plain_http_and_unknown_ca() {
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("fullchain.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("privkey.pem"))),
    ])
    .await;

    // Plain HTTP on the HTTPS port gets no HTTP response.
    let mut plain = tokio::net::TcpStream::connect(server.address)
        .await
        .expect("TCP connect");
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request written");
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut received),
    )
    .await;
    assert!(
        !received.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer ({read:?}): {:?}",
        String::from_utf8_lossy(&received)
    );

    // A client that does not trust the server's CA rejects the handshake.
    let stranger = TestCa::new("Stranger CA");
    let result = fetch(
        server.address,
        client_config(&stranger.roots(), None, BOTH_VERSIONS),
        "/health",
    )
    .await;
    let error = result
        .err()
        .expect("an untrusted certificate gives no response")
        .to_string();
    assert!(
        error.contains("UnknownIssuer"),
        "rejected for the unknown issuer: {error}"
    );
}

#[tokio::test]
async fn tls_connection_requires_client_certificate() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server_ca = TestCa::new("Server CA");
    let client_ca = TestCa::new("Client CA");
    let (cert, key) = server_ca.server("localhost").write(dir.path(), "server");
    let client_ca_file = client_ca.write(dir.path());
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&cert)),
        ("SSL_KEY_FILE", path_str(&key)),
        ("SSL_CLIENT_CA_FILE", path_str(&client_ca_file)),
    ])
    .await;
    let identity = client_ca.client("build-agent", "Example").identity();
    let foreign = TestCa::new("Foreign CA").client("intruder", "Elsewhere").identity();

    let with_certificate = fetch(
        server.address,
        client_config(&server_ca.roots(), Some(identity), BOTH_VERSIONS),
        "/health",
    )
    .await;
    let without = fetch(
        server.address,
        client_config(&server_ca.roots(), None, BOTH_VERSIONS),
        "/health",
    )
    .await;
    let with_foreign = fetch(
        server.address,
        client_config(&server_ca.roots(), Some(foreign), BOTH_VERSIONS),
        "/health",
    )
    .await;

    assert_eq!(
        with_certificate
            .expect("a certificate from the client CA is accepted")
            .status,
        200
    );
    assert!(without.is_err(), "no client certificate, no response");
    assert!(with_foreign.is_err(), "a certificate from another CA, no response");
}

#[tokio::test]
async fn tls_connection_https_only_needs_certificate() {
    let dir = tempfile::tempdir().expect("temporary directory");

    let error = crate::tls::support::build(dir.path(), &[("HTTPS_ONLY", "true")])
        .await
        .err()
        .expect("HTTPS_ONLY without a certificate stops start-up");

    assert!(error.contains("HTTPS_ONLY"), "the message names the variable: {error}");
}

// ---------------------------------------------------------------------------
// 6. Encryption and decryption

fn encryption_key() -> [u8; 32] {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(ENCRYPTION_KEY_BASE64)
        .expect("base64 key")
        .try_into()
        .expect("32-byte key")
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Builds the associated data that binds an entry's `sensitive` ciphertext
/// to the entry, as src/registry/service.rs does.
fn sensitive_context(entry_id: &str) -> Vec<u8> {
    format!("entry:{entry_id}:sensitive").into_bytes()
}

#[tokio::test]
async fn encryption_stores_sensitive_fields_as_ciphertext() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", ENCRYPTION_KEY_BASE64)]).await;
    let (_, token) = app.create_user("secret-keeper", &["user"]).await;
    let sensitive = json!({"deploy_token": "canary-token-7c41", "nested": {"password": "canary-password-93be"}});
    let entry = app
        .create_entry(
            &token,
            &json!({"name": "vault", "category": "service", "sensitive": sensitive}),
        )
        .await;
    let other = app
        .create_entry(&token, &json!({"name": "other", "category": "service"}))
        .await;
    let id = entry["id"].as_str().expect("entry id");

    let stored = raw_entry_sensitive(&app, id).await.expect("a stored ciphertext");

    for plaintext in ["canary-token-7c41", "canary-password-93be", "deploy_token"] {
        assert!(
            !contains_bytes(&stored, plaintext.as_bytes()),
            "`{plaintext}` is in the stored bytes"
        );
    }
    assert!(
        serde_json::from_slice::<Value>(&stored).is_err(),
        "the stored value is not JSON"
    );
    let key = encryption_key();
    assert_eq!(
        stored[..8],
        key_id(&key)[..],
        "the ciphertext names the key that made it"
    );
    let cipher = AesGcmCipher::new(&key, &[]);
    let decrypted = cipher
        .decrypt(&stored, &sensitive_context(id))
        .expect("the configured key decrypts the value");
    let decrypted: Value = serde_json::from_slice(&decrypted).expect("the plaintext is JSON");
    assert_eq!(decrypted, sensitive, "the ciphertext holds the sensitive object");
    let other_id = other["id"].as_str().expect("entry id");
    assert!(
        cipher.decrypt(&stored, &sensitive_context(other_id)).is_err(),
        "the ciphertext is bound to its entry"
    );
    assert_eq!(
        raw_entry_sensitive(&app, other_id).await,
        None,
        "no sensitive, no ciphertext"
    );

    // A change is encrypted again, under a fresh nonce.
    let patched = send(
        app.request(Method::PATCH, &entry_path(&entry), Some(&token))
            .header("content-type", "application/merge-patch+json")
            .body(json!({"sensitive": {"deploy_token": "canary-rotated-0d2e"}}).to_string()),
    )
    .await;
    assert_eq!(patched.status(), StatusCode::OK, "patching sensitive");
    let restored = raw_entry_sensitive(&app, id).await.expect("a stored ciphertext");
    assert_ne!(restored, stored, "a new ciphertext");
    assert!(
        !contains_bytes(&restored, b"canary-rotated-0d2e"),
        "no plaintext after the change"
    );
    let decrypted: Value = serde_json::from_slice(
        &cipher
            .decrypt(&restored, &sensitive_context(id))
            .expect("the new value decrypts"),
    )
    .expect("the plaintext is JSON");
    assert_eq!(
        decrypted,
        json!({"deploy_token": "canary-rotated-0d2e", "nested": {"password": "canary-password-93be"}}),
        "merge patch applied before encryption"
    );
}

#[tokio::test]
async fn encryption_plaintext_for_permitted_roles_only() {
    let app = TestApp::spawn().await;
    let secret = "canary-secret-51af";
    let (_, owner) = app.create_user("owner", &["user"]).await;
    let (_, other_user) = app.create_user("neighbour", &["user"]).await;
    let (_, viewer) = app.create_user("onlooker", &["viewer"]).await;
    let role = app
        .post_json(
            "/api/v1/admin/roles",
            &app.admin_token,
            &json!({"name": "curator", "permissions": ["read", "entries:manage"]}),
        )
        .await;
    assert_eq!(role.status(), StatusCode::CREATED, "creating the curator role");
    let (_, curator) = app.create_user("curator", &["curator"]).await;
    let entry = app
        .create_entry(
            &owner,
            &json!({"name": "secret-holder", "category": "service", "description": "holds a secret",
                    "sensitive": {"api_token": secret}}),
        )
        .await;
    let owner_key = app.create_api_key(&owner, &json!({"name": "owner-key"})).await;
    let other_key = app.create_api_key(&other_user, &json!({"name": "other-key"})).await;
    let path = entry_path(&entry);

    let permitted = [
        ("owner", app.request(Method::GET, &path, Some(&owner))),
        (
            "owner's key",
            app.request_with_key(Method::GET, &path, owner_key["key"].as_str().unwrap()),
        ),
        ("admin", app.request(Method::GET, &path, Some(&app.admin_token))),
        ("entries:manage", app.request(Method::GET, &path, Some(&curator))),
    ];
    for (label, builder) in permitted {
        let response = send(builder).await;
        assert_eq!(response.status(), StatusCode::OK, "{label}: status");
        let body: Value = response.json().await.expect("entry body");
        assert_eq!(
            body["sensitive"]["api_token"], secret,
            "{label} sees the decrypted value"
        );
    }

    let other_key = other_key["key"].as_str().unwrap();
    let not_permitted = [
        ("another user", app.request(Method::GET, &path, Some(&other_user))),
        ("a viewer", app.request(Method::GET, &path, Some(&viewer))),
        (
            "another user's key",
            app.request_with_key(Method::GET, &path, other_key),
        ),
        (
            "list as another user",
            app.request(Method::GET, ENTRIES, Some(&other_user)),
        ),
        (
            "search as a viewer",
            app.request(Method::GET, &format!("{SEARCH}?q=secret"), Some(&viewer)),
        ),
        (
            "export as another user",
            app.request(Method::GET, "/api/v1/registry/export", Some(&other_user)),
        ),
        (
            "export with another user's key",
            app.request_with_key(Method::GET, "/api/v1/registry/export", other_key),
        ),
    ];
    for (label, builder) in not_permitted {
        let response = send(builder).await;
        assert_eq!(response.status(), StatusCode::OK, "{label}: status");
        let text = response.text().await.expect("body");
        assert!(text.contains("secret-holder"), "{label}: the entry itself is visible");
        assert!(!text.contains(secret), "{label}: the secret is not");
        assert!(!text.contains("\"sensitive\""), "{label}: no sensitive field at all");
    }
}

// ---------------------------------------------------------------------------
// 7. Audit logging

fn run_audit_verify(data_dir: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .args(["audit", "verify", path_str(file)])
        .env_clear()
        .env("DATA_DIR", data_dir)
        .env("LOG_LEVEL", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("audit verify runs")
}

#[tokio::test]
async fn audit_logging_records_requests_without_secrets() {
    let app = TestApp::spawn().await;
    let (viewer_id, viewer) = app.create_user("audited-viewer", &["viewer"]).await;
    let created_key = app.create_api_key(&app.admin_token, &json!({"name": "audited"})).await;
    let api_key = created_key["key"].as_str().expect("key").to_string();
    let secret = "canary-audit-secret-e4";
    let login = send_tagged(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "audited-viewer", "password": USER_PASSWORD})),
        "audit-login",
    )
    .await;
    let tokens: Value = login.json().await.expect("login body");
    let failed = send_tagged(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": "audited-viewer", "password": "wrong-passphrase-typed"})),
        "audit-failed-login",
    )
    .await;
    let created = send_tagged(
        app.request(Method::POST, ENTRIES, Some(&app.admin_token))
            .json(&json!({"name": "audited", "category": "service", "sensitive": {"token": secret}})),
        "audit-create",
    )
    .await;
    let denied = send_tagged(
        app.request(
            Method::DELETE,
            &entry_path(&created.json::<Value>().await.unwrap()),
            Some(&viewer),
        ),
        "audit-denied",
    )
    .await;
    let anonymous = send_tagged(app.request(Method::GET, ENTRIES, None), "audit-anonymous").await;
    let with_key = send_tagged(app.request_with_key(Method::GET, ENTRIES, &api_key), "audit-key").await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_key.status(), StatusCode::OK);

    let data_dir = app.stop().await;
    let log = data_dir.path().join("audit.log");
    let text = std::fs::read_to_string(&log).expect("audit log read");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
        .collect();

    let expected = [
        ("audit-login", "access", 200),
        ("audit-failed-login", "access", 401),
        ("audit-create", "access", 201),
        ("audit-denied", "access", 403),
        ("audit-anonymous", "access", 401),
        ("audit-key", "access", 200),
    ];
    for (request_id, event_type, http_status) in expected {
        let event = event_of_request(&lines, request_id, event_type);
        assert!(
            event.is_some_and(|event| event["http_status"] == http_status),
            "{request_id}: one {event_type} line with status {http_status}: {event:?}"
        );
    }
    let security_events = [
        ("audit-login", "login_success", "success"),
        ("audit-failed-login", "login_failed", "failed"),
        ("audit-denied", "permission_denied", "denied"),
    ];
    for (request_id, event_type, status) in security_events {
        let event = event_of_request(&lines, request_id, event_type);
        assert!(
            event.is_some_and(|event| event["status"] == status && event["user_id"] == viewer_id.as_str()),
            "{request_id}: {event_type} with status {status} for the viewer: {event:?}"
        );
    }
    let key_event = event_of_request(&lines, "audit-key", "access");
    assert_eq!(
        key_event.map(|event| event["api_key_id"].clone()),
        Some(created_key["id"].clone()),
        "the key's request names the key id"
    );
    let forbidden_strings = [
        ("a password", USER_PASSWORD),
        ("a mistyped password", "wrong-passphrase-typed"),
        ("an access token", tokens["access_token"].as_str().unwrap()),
        ("a refresh token", tokens["refresh_token"].as_str().unwrap()),
        ("an API key", api_key.as_str()),
        ("a sensitive value", secret),
    ];
    for (label, value) in forbidden_strings {
        assert!(!text.contains(value), "the audit log contains {label}");
    }

    let verified = run_audit_verify(data_dir.path(), &log);
    assert!(
        verified.status.success(),
        "the chain verifies: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let tampered = text.replacen("\"http_status\": 403", "\"http_status\": 200", 1);
    assert_ne!(tampered, text, "a line was edited");
    std::fs::write(&log, tampered).expect("audit log rewritten");
    let verified = run_audit_verify(data_dir.path(), &log);
    assert!(!verified.status.success(), "an edited line breaks the chain");
}

#[tokio::test]
async fn audit_logging_database_copy_filters() {
    let app = TestApp::spawn().await;
    let (viewer_id, viewer) = app.create_user("filtered", &["viewer"]).await;
    let denied = app
        .post_json(ENTRIES, &viewer, &json!({"name": "nope", "category": "service"}))
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    // A revoked key in use raises a high event, so that severity=high has
    // something to return.
    let created = app.create_api_key(&app.admin_token, &json!({"name": "revoked"})).await;
    let key_id = created["id"].as_str().expect("key id");
    let revoke = send(app.request(
        Method::DELETE,
        &format!("/api/v1/keys/{key_id}"),
        Some(&app.admin_token),
    ))
    .await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let used = send(app.request_with_key(Method::GET, ENTRIES, created["key"].as_str().unwrap())).await;
    assert_eq!(used.status(), StatusCode::UNAUTHORIZED);

    // The database copy is written in the background, in batches, so each
    // query is repeated until the expected event has arrived.
    let fetch_items = |path: String, expected_event_type: &'static str| {
        let app = &app;
        async move {
            poll_until(std::time::Duration::from_secs(30), || async {
                let page: Value = app.get(&path, &app.admin_token).await.json().await.ok()?;
                let items = page["items"].as_array()?.clone();
                let arrived = items.iter().any(|item| item["event_type"] == expected_event_type);
                arrived.then_some(items)
            })
            .await
            .unwrap_or_else(|| panic!("{path} never listed {expected_event_type}"))
        }
    };
    let denials = fetch_items(
        format!("/api/v1/admin/audit?user_id={viewer_id}&event_type=permission_denied"),
        "permission_denied",
    )
    .await;
    let high = fetch_items(
        "/api/v1/admin/audit?severity=high&limit=100".to_string(),
        "revoked_api_key_alarm",
    )
    .await;
    let as_viewer = app.get("/api/v1/admin/audit", &viewer).await.status();

    assert!(
        denials
            .iter()
            .all(|item| item["user_id"] == viewer_id.as_str() && item["event_type"] == "permission_denied"),
        "the filters apply: {denials:?}"
    );
    assert!(denials[0]["hash"].is_string(), "items carry their chain hash");
    assert!(
        high.iter()
            .all(|item| item["severity"] == "high" || item["severity"] == "critical"),
        "severity=high returns high and critical only: {high:?}"
    );
    assert_eq!(as_viewer, StatusCode::FORBIDDEN, "reading the trail needs audit:read");
}

// ---------------------------------------------------------------------------
// 8. Failed authentication attempts

async fn login_attempt(app: &TestApp, username: &str, password: &str) -> Response {
    send(
        app.client
            .post(app.url("/auth/login"))
            .json(&json!({"username": username, "password": password})),
    )
    .await
}

#[tokio::test]
async fn failed_authentication_unknown_user_looks_alike() {
    let app = TestApp::spawn().await;
    app.create_user("real-user", &["viewer"]).await;

    let unknown = login_attempt(&app, "no-such-user", "wrong-passphrase-1").await;
    let wrong = login_attempt(&app, "real-user", "wrong-passphrase-1").await;

    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(header_text(&unknown, "set-cookie").is_empty(), "no cookie on failure");
    let mut unknown_body: Value = unknown.json().await.expect("problem body");
    let mut wrong_body: Value = wrong.json().await.expect("problem body");
    assert_eq!(unknown_body["code"], "invalid_credentials");
    unknown_body.as_object_mut().unwrap().remove("request_id");
    wrong_body.as_object_mut().unwrap().remove("request_id");
    assert_eq!(unknown_body, wrong_body, "the bodies differ only in request_id");
    let lines = app.audit_lines_on_disk();
    let failures = events_of(&lines, "login_failed");
    assert_eq!(failures.len(), 2, "both failures are audited: {failures:?}");
    assert!(
        failures
            .iter()
            .all(|event| event["severity"] == "medium" && event["status"] == "failed"),
        "login failures are medium and failed: {failures:?}"
    );
}

#[tokio::test]
async fn failed_authentication_locks_account() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "3"), ("LOGIN_LOCKOUT_MINUTES", "15")]).await;
    let (user_id, _) = app.create_user("guessed", &["viewer"]).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(login_attempt(&app, "guessed", "wrong-passphrase-1").await.status());
    }

    let locked = login_attempt(&app, "guessed", USER_PASSWORD).await;

    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::LOCKED],
        "the failure that reaches the maximum locks the account"
    );

    assert_eq!(locked.status(), StatusCode::LOCKED, "even the right password gets 423");
    assert!(
        !header_text(&locked, "retry-after").is_empty(),
        "the 423 carries Retry-After"
    );
    assert_eq!(problem_code(locked).await, "account_locked");
    let lines = app.audit_lines_on_disk();
    let lock = events_of(&lines, "account_locked");
    assert!(
        lock.iter()
            .any(|event| event["severity"] == "high" && event["user_id"] == user_id.as_str()),
        "the lockout is a high event: {lock:?}"
    );
    app.clock.advance(Duration::minutes(15) + Duration::seconds(1));
    assert_eq!(
        login_attempt(&app, "guessed", USER_PASSWORD).await.status(),
        StatusCode::OK,
        "the lockout ends after LOGIN_LOCKOUT_MINUTES"
    );
}

#[tokio::test]
async fn failed_authentication_hostile_usernames_get_401() {
    let app = TestApp::spawn().await;
    let long_name = "a".repeat(300);
    let mut usernames: Vec<String> = HOSTILE_STRINGS.iter().map(|text| text.to_string()).collect();
    usernames.extend([
        format!("{ADMIN_USERNAME}' --"),
        format!("{ADMIN_USERNAME}' OR '1'='1"),
        format!("{ADMIN_USERNAME}\u{0}"),
        ADMIN_USERNAME.to_uppercase(),
        format!(" {ADMIN_USERNAME}"),
        long_name,
    ]);
    let users_before = count_rows(&app, "users").await;

    for username in &usernames {
        let response = login_attempt(&app, username, ADMIN_PASSWORD).await;
        let label = format!("username {username:?}");
        match outcome_of(response, &label).await {
            Outcome::Accepted(body) => panic!("{label}: logged in as {body}"),
            Outcome::Rejected(status) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}"),
        }
    }

    assert_eq!(count_rows(&app, "users").await, users_before, "no user was created");
    let lines = app.audit_lines_on_disk();
    assert_eq!(
        events_of(&lines, "login_success").len(),
        1,
        "only the administrator's login at start-up succeeded"
    );
}

#[tokio::test]
async fn failed_authentication_rejects_malformed_credentials() {
    let app = TestApp::spawn().await;
    let admin_token = app.admin_token.clone();
    let segments: Vec<&str> = admin_token.split('.').collect();
    let (header, claims) = (segments[0], segments[1]);
    let unsigned = format!("{header}.{claims}.");
    let none_header = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    };
    let alg_none = format!("{none_header}.{claims}.");
    let cases = [
        ("an empty bearer token", "Bearer ".to_string()),
        ("a bare scheme", "Bearer".to_string()),
        ("a garbage token", "Bearer not-a-token".to_string()),
        ("three empty segments", "Bearer ..".to_string()),
        ("a token without signature", format!("Bearer {unsigned}")),
        ("alg none", format!("Bearer {alg_none}")),
        (
            "a truncated token",
            format!("Bearer {}", &admin_token[..admin_token.len() - 4]),
        ),
        ("a token with a suffix", format!("Bearer {admin_token}x")),
        (
            "the Basic scheme",
            "Basic YWRtaW46dGVzdC1hZG1pbi1wYXNzcGhyYXNlLTE=".to_string(),
        ),
        ("the token without a scheme", admin_token.clone()),
        ("an SQL payload", "Bearer ' OR 1=1 --".to_string()),
    ];

    for (label, authorization) in cases {
        let response = send(
            app.client
                .get(app.url("/auth/me"))
                .header("authorization", authorization),
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}: status");
        assert!(
            header_text(&response, "www-authenticate").starts_with("Bearer"),
            "{label}: Bearer challenge"
        );
        let code = problem_code(response).await;
        assert_eq!(code, "invalid_token", "{label}: code");
    }

    let both = send(
        app.client
            .get(app.url("/auth/me"))
            .bearer_auth(&admin_token)
            .header("x-api-key", "hrk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbcccccc"),
    )
    .await;
    assert_eq!(both.status(), StatusCode::UNAUTHORIZED, "two credentials are rejected");
    let non_ascii = send(app.client.get(app.url("/auth/me")).header(
        "authorization",
        HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("header value"),
    ))
    .await;
    assert_eq!(non_ascii.status(), StatusCode::UNAUTHORIZED, "a non-ASCII header value");
}

// ---------------------------------------------------------------------------
// 9. Invalid API keys

#[tokio::test]
async fn invalid_keys_rejected_and_audited() {
    let app = TestApp::spawn().await;
    let created = app.create_api_key(&app.admin_token, &json!({"name": "genuine"})).await;
    let key = created["key"].as_str().expect("key").to_string();
    let key_id = created["id"].as_str().expect("key id");
    let position = key.len() - 10;
    let flipped = if key.as_bytes()[position] == b'a' { 'b' } else { 'a' };
    let mistyped = format!("{}{flipped}{}", &key[..position], &key[position + 1..]);
    let other_id = format!("hrk_zzzzzzzzzzzz_{}", &key[4 + 12 + 1..]);
    let cases = [
        ("an empty key", String::new()),
        ("a random string", "not-a-key".to_string()),
        ("the prefix alone", "hrk_".to_string()),
        (
            "a made-up key",
            "hrk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbcccccc".to_string(),
        ),
        ("a mistyped key", mistyped),
        ("a truncated key", key[..key.len() - 1].to_string()),
        ("a key with a suffix", format!("{key}0")),
        ("the secret under another id", other_id),
        ("an uppercased key", key.to_uppercase()),
        ("the key id alone", format!("hrk_{key_id}_")),
        ("an SQL payload", "hrk_' OR 1=1 --".to_string()),
        ("a bearer token as a key", app.admin_token.clone()),
    ];

    for (index, (label, candidate)) in cases.into_iter().enumerate() {
        let request_id = format!("invalid-key-{index}");
        let response = send_tagged(app.request_with_key(Method::GET, ENTRIES, &candidate), &request_id).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}: status");
        assert!(
            header_text(&response, "www-authenticate").starts_with("Bearer"),
            "{label}: challenge"
        );
        assert_eq!(problem_code(response).await, "invalid_api_key", "{label}: code");
        let lines = app.audit_lines_on_disk();
        assert!(
            event_of_request(&lines, &request_id, "invalid_api_key_used").is_some(),
            "{label}: audited as invalid_api_key_used"
        );
    }
    let non_ascii = send(
        app.client
            .get(app.url(ENTRIES))
            .header("x-api-key", HeaderValue::from_bytes(b"hrk_\xff").expect("header value")),
    )
    .await;
    assert_eq!(non_ascii.status(), StatusCode::UNAUTHORIZED, "a non-ASCII key");
    assert_eq!(
        send(app.request_with_key(Method::GET, ENTRIES, &key)).await.status(),
        StatusCode::OK,
        "the genuine key still works"
    );
}

#[tokio::test]
async fn invalid_keys_expired_key_rejected() {
    let app = TestApp::spawn().await;
    let created = app
        .create_api_key(&app.admin_token, &json!({"name": "short-lived", "expires_in_days": 1}))
        .await;
    let key = created["key"].as_str().expect("key");

    app.clock.advance(Duration::days(1) + Duration::seconds(1));
    let response = send_tagged(app.request_with_key(Method::GET, ENTRIES, key), "expired-key").await;

    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "an expired key gets 401");
    assert_eq!(problem_code(response).await, "api_key_expired");
    let lines = app.audit_lines_on_disk();
    let event = event_of_request(&lines, "expired-key", "expired_api_key_used");
    assert!(
        event.is_some_and(|event| event["severity"] == "medium"),
        "the expired key's use is audited: {event:?}"
    );
}

// ---------------------------------------------------------------------------
// 10. Privilege escalation protection

#[tokio::test]
async fn privilege_escalation_via_user_admin_rejected() {
    let app = TestApp::spawn().await;
    let role = app
        .post_json(
            "/api/v1/admin/roles",
            &app.admin_token,
            &json!({"name": "user-manager", "permissions": ["users:admin", "read"]}),
        )
        .await;
    assert_eq!(role.status(), StatusCode::CREATED, "creating user-manager");
    let (manager_id, manager) = app.create_user("manager", &["user-manager"]).await;
    let users_before = count_rows(&app, "users").await;

    let own_roles = send(
        app.request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{manager_id}"),
            Some(&manager),
        )
        .json(&json!({"roles": ["admin"]})),
    )
    .await;
    let new_admin = app
        .post_json(
            "/api/v1/admin/users",
            &manager,
            &json!({"username": "minion", "password": USER_PASSWORD, "roles": ["admin"]}),
        )
        .await;
    let new_role = app
        .post_json(
            "/api/v1/admin/roles",
            &manager,
            &json!({"name": "everything", "permissions": ["*"]}),
        )
        .await;
    let key_beyond = app
        .post_json(
            "/api/v1/keys",
            &manager,
            &json!({"name": "escalate", "permissions": ["users:admin", "roles:admin"]}),
        )
        .await;

    assert_eq!(own_roles.status(), StatusCode::FORBIDDEN, "changing one's own roles");
    assert_eq!(new_admin.status(), StatusCode::FORBIDDEN, "creating an administrator");
    assert_eq!(
        new_role.status(),
        StatusCode::FORBIDDEN,
        "creating a role without roles:admin"
    );
    assert_eq!(key_beyond.status(), StatusCode::FORBIDDEN, "a key without keys:manage");
    assert_eq!(count_rows(&app, "users").await, users_before, "no user was created");
    let me: Value = app.get("/auth/me", &manager).await.json().await.expect("me body");
    assert_eq!(me["roles"], json!(["user-manager"]), "the roles are unchanged");
    assert!(
        !me["permissions"].as_array().unwrap().iter().any(|p| p == "*"),
        "no wildcard was gained: {me}"
    );
}

#[tokio::test]
async fn privilege_escalation_via_api_keys_rejected() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("key-escalator", &["user"]).await;
    let (other_id, _) = app.create_user("key-victim", &["user"]).await;
    let narrow = app
        .create_api_key(
            &token,
            &json!({"name": "narrow", "permissions": ["read", "keys:manage"]}),
        )
        .await;
    let narrow_key = narrow["key"].as_str().expect("key");

    let beyond_owner = app
        .post_json(
            "/api/v1/keys",
            &token,
            &json!({"name": "admin", "permissions": ["users:admin"]}),
        )
        .await;
    let wildcard = app
        .post_json("/api/v1/keys", &token, &json!({"name": "all", "permissions": ["*"]}))
        .await;
    let for_other = app
        .post_json("/api/v1/keys", &token, &json!({"name": "theirs", "user_id": other_id}))
        .await;
    let broader_from_key = send(
        app.request_with_key(Method::POST, "/api/v1/keys", narrow_key)
            .json(&json!({"name": "broader", "permissions": ["read", "write"]})),
    )
    .await;
    let raise_rate = app
        .post_json(
            "/api/v1/keys",
            &token,
            &json!({"name": "fast", "rate_limit_per_minute": 1_000_000}),
        )
        .await;
    let password_by_key = send(
        app.request_with_key(Method::POST, "/auth/password", narrow_key)
            .json(&json!({"current_password": USER_PASSWORD, "new_password": "another-passphrase-2"})),
    )
    .await;

    assert_eq!(
        beyond_owner.status(),
        StatusCode::FORBIDDEN,
        "a permission the owner lacks"
    );
    assert_eq!(wildcard.status(), StatusCode::FORBIDDEN, "the wildcard");
    assert_eq!(for_other.status(), StatusCode::FORBIDDEN, "a key for another user");
    assert_eq!(
        broader_from_key.status(),
        StatusCode::FORBIDDEN,
        "a key minting a broader key"
    );
    assert_eq!(raise_rate.status(), StatusCode::FORBIDDEN, "a rate above the default");
    assert_eq!(
        password_by_key.status(),
        StatusCode::FORBIDDEN,
        "a key changing the password"
    );
    let listed: Value = app
        .get(&format!("/api/v1/keys?user_id={user_id}"), &app.admin_token)
        .await
        .json()
        .await
        .expect("key list");
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "only the narrow key exists"
    );
}

#[tokio::test]
async fn privilege_escalation_via_server_fields_rejected() {
    let app = TestApp::spawn().await;
    let (owner_id, owner) = app.create_user("entry-owner", &["user"]).await;
    let (attacker_id, attacker) = app.create_user("entry-attacker", &["user"]).await;
    let entry = app
        .create_entry(
            &owner,
            &json!({"name": "owned", "category": "service", "title": "original"}),
        )
        .await;
    let path = entry_path(&entry);

    let create_as_other = app
        .post_json(
            ENTRIES,
            &attacker,
            &json!({"name": "planted", "category": "service", "owner_id": owner_id}),
        )
        .await;
    let take_over = send(
        app.request(Method::PATCH, &path, Some(&owner))
            .json(&json!({"owner_id": attacker_id})),
    )
    .await;
    let bump_revision = send(
        app.request(Method::PATCH, &path, Some(&owner))
            .json(&json!({"revision": 99})),
    )
    .await;
    let foreign_patch = send(
        app.request(Method::PATCH, &path, Some(&attacker))
            .json(&json!({"title": "defaced"})),
    )
    .await;
    let foreign_put = send(
        app.request(Method::PUT, &path, Some(&attacker))
            .json(&json!({"name": "owned", "category": "service", "title": "defaced"})),
    )
    .await;
    let foreign_delete = send(app.request(Method::DELETE, &path, Some(&attacker))).await;
    let login_with_roles = send(app.client.post(app.url("/auth/login")).json(&json!({
        "username": "entry-attacker", "password": USER_PASSWORD, "roles": ["admin"],
    })))
    .await;

    assert_eq!(
        create_as_other.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "owner_id on create"
    );
    assert_eq!(
        take_over.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "owner_id on patch"
    );
    assert_eq!(
        bump_revision.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "revision on patch"
    );
    assert_eq!(
        foreign_patch.status(),
        StatusCode::FORBIDDEN,
        "patching another user's entry"
    );
    assert_eq!(
        foreign_put.status(),
        StatusCode::FORBIDDEN,
        "replacing another user's entry"
    );
    assert_eq!(
        foreign_delete.status(),
        StatusCode::FORBIDDEN,
        "deleting another user's entry"
    );
    assert_eq!(
        login_with_roles.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "roles in a login body"
    );
    let stored: Value = app.get(&path, &owner).await.json().await.expect("entry body");
    assert_eq!(stored, entry, "the entry is unchanged");
    assert_eq!(count_rows(&app, "entries").await, 1, "nothing was planted");
}

#[tokio::test]
async fn privilege_escalation_forged_tokens_rejected() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};

    let app = TestApp::spawn().await;
    let (_, viewer) = app.create_user("forger", &["viewer"]).await;
    let admin_me: Value = app
        .get("/auth/me", &app.admin_token)
        .await
        .json()
        .await
        .expect("me body");
    let admin_id = admin_me["id"].as_str().expect("admin id");
    let viewer_parts: Vec<&str> = viewer.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(viewer_parts[0]).unwrap()).unwrap();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(viewer_parts[1]).unwrap()).unwrap();
    claims["sub"] = json!(admin_id);
    let encoded_header = URL_SAFE_NO_PAD.encode(header.to_string());
    let encoded_claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{encoded_header}.{encoded_claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"a-guessed-secret-that-is-long-enough!!").unwrap();
    mac.update(signing_input.as_bytes());
    let guessed_key = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    // The viewer's own signature over claims that now name the administrator.
    let swapped_claims = format!("{signing_input}.{}", viewer_parts[2]);

    for (label, token) in [("a guessed key", guessed_key), ("a reused signature", swapped_claims)] {
        let response = app.get("/api/v1/admin/users", &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}: status");
        assert_eq!(problem_code(response).await, "invalid_token", "{label}: code");
    }
}

// ---------------------------------------------------------------------------
// 11. SQL injection prevention (and, with the same table, XSS payloads)

/// Where a hostile string goes in an entry, by label.
const ENTRY_FIELDS: [&str; 9] = [
    "title",
    "description",
    "version",
    "tags",
    "metadata key",
    "metadata value",
    "nested metadata value",
    "sensitive key",
    "sensitive value",
];

/// Returns the top-level field that `label` puts `payload` in, the value
/// sent, and the value the server must return if it accepts it.
fn field_with_payload(label: &str, payload: &str) -> (&'static str, Value, Value) {
    let single = |key: &str, value: Value| {
        let mut object = Map::new();
        object.insert(key.to_string(), value);
        Value::Object(object)
    };
    let (field, sent) = match label {
        "title" => ("title", json!(payload)),
        "description" => ("description", json!(payload)),
        "version" => ("version", json!(payload)),
        "tags" => ("tags", json!(["plain", payload])),
        "metadata key" => ("metadata", single(payload, json!("value"))),
        "metadata value" => ("metadata", single("key", json!(payload))),
        "nested metadata value" => ("metadata", json!({"outer": {"list": [payload, {"inner": payload}]}})),
        "sensitive key" => ("sensitive", single(payload, json!("value"))),
        "sensitive value" => ("sensitive", single("token", json!(payload))),
        other => panic!("unknown entry field {other}"),
    };
    // Tags are trimmed of Unicode whitespace (U+0085 included) before they
    // are checked, the one change the server makes to a value it stores.
    let expected = if field == "tags" {
        json!(["plain", payload.trim()])
    } else {
        sent.clone()
    };
    (field, sent, expected)
}

#[tokio::test]
async fn sql_injection_entry_fields_verbatim_or_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("payload-writer", &["user"]).await;
    let users_before = count_rows(&app, "users").await;
    let mut accepted = 0;

    for (payload_index, payload) in HOSTILE_STRINGS.iter().enumerate() {
        for (field_index, label) in ENTRY_FIELDS.iter().enumerate() {
            let (field, sent, expected) = field_with_payload(label, payload);
            let mut body = json!({"name": format!("probe-{payload_index}-{field_index}"), "category": "injection"});
            body[field] = sent;
            let case = format!("{label} = {payload:?}");
            let rows_before = count_rows(&app, "entries").await;

            let response = app.post_json(ENTRIES, &token, &body).await;

            match outcome_of(response, &case).await {
                Outcome::Accepted(created) => {
                    accepted += 1;
                    assert_eq!(created[field], expected, "{case}: returned verbatim on create");
                    let read = app.get(&entry_path(&created), &token).await;
                    match outcome_of(read, &case).await {
                        Outcome::Accepted(stored) => {
                            assert_eq!(stored[field], expected, "{case}: returned verbatim on read")
                        }
                        Outcome::Rejected(status) => panic!("{case}: reading it back gave {status}"),
                    }
                    assert_eq!(count_rows(&app, "entries").await, rows_before + 1, "{case}: one row");
                }
                Outcome::Rejected(status) => {
                    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: status");
                    assert_eq!(
                        count_rows(&app, "entries").await,
                        rows_before,
                        "{case}: nothing written"
                    );
                }
            }
        }
    }

    assert!(
        accepted > HOSTILE_STRINGS.len(),
        "most payloads are ordinary text, {accepted} stored"
    );
    assert_eq!(
        count_rows(&app, "users").await,
        users_before,
        "the users table is unchanged"
    );
}

#[tokio::test]
async fn sql_injection_slug_fields_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("name-prober", &["user"]).await;
    let valid = app
        .create_entry(&token, &json!({"name": "valid", "category": "injection"}))
        .await;

    for payload in HOSTILE_STRINGS {
        for (field, value) in [
            ("name", payload.to_string()),
            ("name", format!("@scope/{payload}")),
            ("name", format!("valid{payload}")),
            ("category", payload.to_string()),
        ] {
            let mut body = json!({"name": "probe", "category": "injection"});
            body[field] = json!(value);
            let case = format!("{field} = {value:?}");

            let created = app.post_json(ENTRIES, &token, &body).await;
            let replaced = send(app.request(Method::PUT, &entry_path(&valid), Some(&token)).json(&body)).await;

            for (verb, response) in [("create", created), ("replace", replaced)] {
                assert_eq!(
                    response.status(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "{verb} {case}: status"
                );
                assert_eq!(problem_code(response).await, "validation_failed", "{verb} {case}: code");
            }
        }
    }

    assert_eq!(count_rows(&app, "entries").await, 1, "nothing was written");
    let stored: Value = app.get(&entry_path(&valid), &token).await.json().await.expect("entry");
    assert_eq!(stored, valid, "the existing entry is unchanged");
}

/// Every query parameter of the API with the path that takes it. The
/// search path carries a valid `q` of its own unless `q` is the one tested.
const QUERY_PARAMETERS: &[(&str, &str)] = &[
    (ENTRIES, "category"),
    (ENTRIES, "status"),
    (ENTRIES, "tag"),
    (ENTRIES, "owner_id"),
    (ENTRIES, "limit"),
    (ENTRIES, "cursor"),
    (SEARCH, "q"),
    (SEARCH, "category"),
    (SEARCH, "status"),
    (SEARCH, "tag"),
    (SEARCH, "owner_id"),
    (SEARCH, "limit"),
    (SEARCH, "cursor"),
    ("/api/v1/admin/audit", "severity"),
    ("/api/v1/admin/audit", "user_id"),
    ("/api/v1/admin/audit", "action"),
    ("/api/v1/admin/audit", "event_type"),
    ("/api/v1/admin/audit", "status"),
    ("/api/v1/admin/audit", "since"),
    ("/api/v1/admin/audit", "until"),
    ("/api/v1/admin/audit", "limit"),
    ("/api/v1/admin/audit", "cursor"),
    ("/api/v1/admin/users", "limit"),
    ("/api/v1/admin/users", "cursor"),
    ("/api/v1/keys", "user_id"),
];

/// Every path that reads query parameters, including those that accept none.
const QUERY_PATHS: [&str; 7] = [
    ENTRIES,
    SEARCH,
    "/api/v1/admin/audit",
    "/api/v1/admin/users",
    "/api/v1/keys",
    "/api/v1/registry/export",
    "/api/v1/registry/analytics",
];

/// Parameters that match stored values exactly, so a hostile value must
/// match nothing.
const EXACT_MATCH_PARAMETERS: [&str; 4] = ["tag", "user_id", "action", "event_type"];

async fn table_counts(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["entries", "users", "api_keys", "roles"] {
        counts.push(count_rows(app, table).await);
    }
    counts
}

#[tokio::test]
async fn sql_injection_query_parameters_change_nothing() {
    let app = TestApp::spawn().await;
    let sample: String = crate::helpers::PYPI_SAMPLE
        .lines()
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    let imported = import_ndjson(&app, &app.admin_token, "", sample).await;
    assert_eq!(imported.status(), StatusCode::OK, "importing the sample");
    let entries_before = list_all_entries(&app, &app.admin_token).await;
    let counts_before = table_counts(&app).await;

    for payload in HOSTILE_STRINGS {
        for (path, parameter) in QUERY_PARAMETERS {
            let mut query: Vec<(&str, &str)> = Vec::new();
            if *path == SEARCH && *parameter != "q" {
                query.push(("q", "python"));
            }
            query.push((parameter, payload));
            let case = format!("{path}?{parameter}={payload:?}");

            let response = send(app.request(Method::GET, path, Some(&app.admin_token)).query(&query)).await;

            if let Outcome::Accepted(page) = outcome_of(response, &case).await {
                let items = page["items"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{case}: items: {page}"));
                if EXACT_MATCH_PARAMETERS.contains(parameter) {
                    assert!(
                        items.is_empty(),
                        "{case}: a hostile value matched {} items",
                        items.len()
                    );
                }
            }
        }

        // The hostile string as a parameter name is an unknown parameter.
        for path in QUERY_PATHS {
            let case = format!("{path}?{payload:?}=1");
            let response = send(
                app.request(Method::GET, path, Some(&app.admin_token))
                    .query(&[(payload, "1")]),
            )
            .await;
            match outcome_of(response, &case).await {
                Outcome::Accepted(page) => panic!("{case}: an unknown parameter was accepted: {page}"),
                Outcome::Rejected(status) => assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}"),
            }
        }

        let case = format!("import ?on_conflict={payload:?}");
        let response = send(
            app.request(Method::POST, "/api/v1/registry/import", Some(&app.admin_token))
                .query(&[("on_conflict", payload)])
                .header("content-type", "application/x-ndjson")
                .body(""),
        )
        .await;
        match outcome_of(response, &case).await {
            Outcome::Accepted(report) => panic!("{case}: accepted: {report}"),
            Outcome::Rejected(status) => assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}"),
        }
    }

    assert_eq!(table_counts(&app).await, counts_before, "no table changed size");
    assert_eq!(
        list_all_entries(&app, &app.admin_token).await,
        entries_before,
        "every entry is unchanged"
    );
}

#[tokio::test]
async fn sql_injection_search_syntax_never_errors() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("searcher", &["user"]).await;
    app.create_entry(
        &token,
        &json!({"name": "syntax-target", "category": "injection",
                "title": "NEAR( \"quoted\" OR -minus col:umn * (unbalanced",
                "description": "findme"}),
    )
    .await;
    let counts_before = table_counts(&app).await;
    let long_parens = "(".repeat(256);
    let mut queries: Vec<String> = [
        "\"",
        "\"\"",
        "\"findme",
        "findme\"",
        "*",
        "findme*",
        "*findme",
        "NEAR(",
        "NEAR(findme",
        "NEAR(findme quoted, 2)",
        "OR",
        "AND",
        "NOT",
        "findme OR",
        "OR findme",
        "findme AND NOT quoted",
        "-",
        "-findme",
        "findme -quoted",
        ":",
        "title:findme",
        "{title description}: findme",
        "^findme",
        "(",
        ")",
        "((findme",
        "findme))",
        "(findme OR (quoted",
        "+findme",
        "findme + quoted",
        "'",
        "\\",
        "%",
        "_",
        "?",
        "!findme",
        "findme & quoted | x",
        "findme <-> quoted",
        "findme:*",
        "!!",
        "'':*",
        "\u{0}",
        "findme\u{0}",
    ]
    .iter()
    .map(|text| text.to_string())
    .collect();
    queries.extend(HOSTILE_STRINGS.iter().map(|text| text.to_string()));
    queries.push(long_parens);

    for text in &queries {
        let response = send(app.request(Method::GET, SEARCH, Some(&token)).query(&[("q", text)])).await;
        let status = response.status();
        let case = format!("q = {text:?}");
        assert!(
            status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{case}: status {status}"
        );
        if let Outcome::Accepted(page) = outcome_of(response, &case).await {
            assert!(page["items"].is_array(), "{case}: items array");
        }
    }

    let found: Value = app
        .get(&format!("{SEARCH}?q=findme%20NEAR(%22"), &token)
        .await
        .json()
        .await
        .expect("search body");
    let names: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert_eq!(names, vec!["syntax-target"], "syntax is searched as words");
    assert_eq!(table_counts(&app).await, counts_before, "no table changed size");
}

#[tokio::test]
async fn sql_injection_path_ids_and_login_rejected() {
    let app = TestApp::spawn().await;
    let entry = app
        .create_entry(&app.admin_token, &json!({"name": "target", "category": "service"}))
        .await;
    let id = entry["id"].as_str().expect("entry id");
    let counts_before = table_counts(&app).await;
    let ids = [
        format!("{id}' OR '1'='1"),
        format!("{id}; DROP TABLE entries"),
        "1 OR 1=1".to_string(),
        "' UNION SELECT * FROM users --".to_string(),
        "%27%20OR%201%3D1".to_string(),
        format!("{id}%00"),
    ];

    for raw in &ids {
        for method in [Method::GET, Method::PATCH, Method::DELETE] {
            let mut builder = app.request(method.clone(), &format!("{ENTRIES}/{raw}"), Some(&app.admin_token));
            if method == Method::PATCH {
                builder = builder.json(&json!({"title": "changed"}));
            }
            let response = send(builder).await;
            let case = format!("{method} id {raw:?}");
            match outcome_of(response, &case).await {
                Outcome::Accepted(body) => panic!("{case}: accepted: {body}"),
                Outcome::Rejected(status) => assert_eq!(status, StatusCode::NOT_FOUND, "{case}"),
            }
        }
        let response = app.get(&format!("/api/v1/admin/users/{raw}"), &app.admin_token).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "user id {raw:?}");
        let response = app.get(&format!("/api/v1/admin/roles/{raw}"), &app.admin_token).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "role name {raw:?}");
        let response = send(app.request(Method::DELETE, &format!("/api/v1/keys/{raw}"), Some(&app.admin_token))).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "key id {raw:?}");
    }

    let login = login_attempt(&app, &format!("{ADMIN_USERNAME}' --"), "anything-at-all").await;
    assert_eq!(
        login.status(),
        StatusCode::UNAUTHORIZED,
        "a commented-out password check"
    );
    assert_eq!(table_counts(&app).await, counts_before, "no table changed size");
    let stored: Value = app
        .get(&entry_path(&entry), &app.admin_token)
        .await
        .json()
        .await
        .expect("entry");
    assert_eq!(stored, entry, "the entry is unchanged");
}

// ---------------------------------------------------------------------------
// 12. XSS prevention

#[tokio::test]
async fn xss_payloads_returned_as_json() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("script-writer", &["user"]).await;
    let script = "<script>alert(1)</script>";
    let body = json!({
        "name": "xss-probe",
        "category": "injection",
        "title": script,
        "description": "\"><img src=x onerror=alert(1)>",
        "tags": ["<svg onload=alert(1)>"],
        "metadata": {"<b>key</b>": "javascript:alert(1)"},
    });
    let created = app.create_entry(&token, &body).await;

    let responses = [
        ("read", app.get(&entry_path(&created), &token).await),
        ("list", app.get(ENTRIES, &token).await),
        ("search", app.get(&format!("{SEARCH}?q=script%20alert"), &token).await),
        (
            "tag filter",
            app.get(&format!("{ENTRIES}?tag=%3Csvg%20onload%3Dalert(1)%3E"), &token)
                .await,
        ),
    ];

    for (label, response) in responses {
        assert_eq!(response.status(), StatusCode::OK, "{label}: status");
        assert_eq!(header_text(&response, "content-type"), "application/json", "{label}");
        assert_not_html(&response, label);
        assert!(
            header_text(&response, "content-security-policy").contains("default-src 'none'"),
            "{label}: CSP"
        );
        let text = response.text().await.expect("body");
        assert!(
            text.contains(script),
            "{label}: the payload is returned as sent, not rewritten"
        );
        let parsed: Value = serde_json::from_str(&text).expect("the body is JSON");
        let entry = parsed.get("items").and_then(|items| items.get(0)).unwrap_or(&parsed);
        for field in ["title", "description", "tags", "metadata"] {
            assert_eq!(entry[field], body[field], "{label}: {field} verbatim");
        }
    }

    let export = app.get("/api/v1/registry/export", &token).await;
    assert_not_html(&export, "export");
    assert!(
        header_text(&export, "content-type").starts_with("application/x-ndjson"),
        "export content type"
    );
}

#[tokio::test]
async fn xss_no_response_served_as_html() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app.create_user("browser", &["viewer"]).await;
    let entry = app
        .create_entry(&app.admin_token, &json!({"name": "page", "category": "service"}))
        .await;
    let entry_id = entry["id"].as_str().expect("entry id");
    let admin_me: Value = app
        .get("/auth/me", &app.admin_token)
        .await
        .json()
        .await
        .expect("me body");
    let admin_id = admin_me["id"].as_str().expect("admin id");
    let routes = [
        "/health".to_string(),
        "/ready".to_string(),
        "/auth/login".to_string(),
        "/auth/refresh".to_string(),
        "/auth/me".to_string(),
        "/auth/password".to_string(),
        "/auth/mfa/setup".to_string(),
        "/auth/mfa/confirm".to_string(),
        "/auth/mfa/disable".to_string(),
        ENTRIES.to_string(),
        format!("{ENTRIES}/{entry_id}"),
        format!("{SEARCH}?q=page"),
        "/api/v1/registry/analytics".to_string(),
        "/api/v1/registry/import".to_string(),
        "/api/v1/registry/export".to_string(),
        "/api/v1/keys".to_string(),
        "/api/v1/keys/aaaaaaaaaaaa".to_string(),
        "/api/v1/keys/aaaaaaaaaaaa/rotate".to_string(),
        "/api/v1/admin/users".to_string(),
        format!("/api/v1/admin/users/{admin_id}"),
        "/api/v1/admin/roles".to_string(),
        "/api/v1/admin/roles/viewer".to_string(),
        "/api/v1/admin/audit".to_string(),
        "/api/v1/admin/audit/events".to_string(),
        "/api/v1/admin/emergency".to_string(),
        "/api/v1/admin/logging".to_string(),
        "/".to_string(),
        "/index.html".to_string(),
        "/<script>alert(1)</script>".to_string(),
        format!("{ENTRIES}/<img src=x onerror=alert(1)>"),
        "/api/v1/registry/entries?<script>=1".to_string(),
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    // Sent anonymously and as a viewer, who can change nothing on these
    // routes but a pending MFA setup. /auth/logout is sent anonymously only,
    // after the loop, because it would end the viewer's session.
    let credentials: [(&str, Option<&str>); 2] = [("anonymous", None), ("viewer", Some(viewer.as_str()))];
    let mut checked = 0;

    for (who, token) in credentials {
        for route in &routes {
            for method in &methods {
                let response = send(
                    app.request(method.clone(), route, token)
                        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
                        .header("content-type", "text/html")
                        .body("<html><body><script>alert(1)</script></body></html>"),
                )
                .await;
                let label = format!("{who} {method} {route}");
                assert!(!response.status().is_server_error(), "{label}: {}", response.status());
                assert_not_html(&response, &label);
                assert!(header_text(&response, "set-cookie").is_empty(), "{label}: Set-Cookie");
                checked += 1;
            }
        }
    }
    let logout = send(
        app.request(Method::POST, "/auth/logout", None)
            .header("accept", "text/html"),
    )
    .await;
    assert_not_html(&logout, "anonymous logout");

    // Successful responses of the admin, with JSON bodies.
    let admin_reads = [
        ENTRIES.to_string(),
        format!("{ENTRIES}/{entry_id}"),
        "/api/v1/admin/users".to_string(),
        "/api/v1/admin/audit".to_string(),
        "/api/v1/admin/roles".to_string(),
        "/api/v1/admin/emergency".to_string(),
        "/api/v1/admin/logging".to_string(),
        "/api/v1/keys".to_string(),
    ];
    for route in &admin_reads {
        let response = send(
            app.request(Method::GET, route, Some(&app.admin_token))
                .header("accept", "text/html"),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "admin GET {route}");
        assert_eq!(
            header_text(&response, "content-type"),
            "application/json",
            "admin GET {route}"
        );
        assert_not_html(&response, route);
        checked += 1;
    }
    assert!(checked > 400, "{checked} responses checked");
}

// ---------------------------------------------------------------------------
// 13. CSRF protection

#[tokio::test]
async fn csrf_cookies_never_authenticate() {
    let app = TestApp::spawn().await;
    let entry = app
        .create_entry(
            &app.admin_token,
            &json!({"name": "cookie-target", "category": "service"}),
        )
        .await;
    let path = entry_path(&entry);
    let token = app.admin_token.clone();
    let cookie =
        format!("session={token}; access_token={token}; token={token}; Authorization=Bearer%20{token}; hrk_session=1");
    let attempts = [
        ("read identity", app.client.get(app.url("/auth/me"))),
        ("list", app.client.get(app.url(ENTRIES))),
        (
            "create",
            app.client
                .post(app.url(ENTRIES))
                .json(&json!({"name": "forged", "category": "service"})),
        ),
        (
            "patch",
            app.client.patch(app.url(&path)).json(&json!({"title": "forged"})),
        ),
        ("delete", app.client.delete(app.url(&path))),
        (
            "create key",
            app.client
                .post(app.url("/api/v1/keys"))
                .json(&json!({"name": "forged"})),
        ),
        (
            "create user",
            app.client.post(app.url("/api/v1/admin/users")).json(&json!({
                "username": "forged", "password": USER_PASSWORD, "roles": ["admin"],
            })),
        ),
    ];

    for (label, builder) in attempts {
        let response = send(builder.header("cookie", &cookie)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}: status");
        assert!(header_text(&response, "set-cookie").is_empty(), "{label}: Set-Cookie");
        assert_eq!(problem_code(response).await, "missing_credentials", "{label}: code");
    }

    assert_eq!(count_rows(&app, "entries").await, 1, "no entry was created or deleted");
    let stored: Value = app.get(&path, &app.admin_token).await.json().await.expect("entry");
    assert_eq!(stored, entry, "the entry is unchanged");
    let users: Value = app
        .get("/api/v1/admin/users", &app.admin_token)
        .await
        .json()
        .await
        .expect("users");
    assert_eq!(users["items"].as_array().map(Vec::len), Some(1), "no user was created");
}

#[tokio::test]
async fn csrf_server_never_sets_cookies() {
    let app = TestApp::spawn().await;
    app.create_user("cookie-free", &["user"]).await;
    let login = login_attempt(&app, "cookie-free", USER_PASSWORD).await;
    assert!(header_text(&login, "set-cookie").is_empty(), "login: Set-Cookie");
    let pair: Value = login.json().await.expect("login body");
    let refresh = send(
        app.client
            .post(app.url("/auth/refresh"))
            .json(&json!({"refresh_token": pair["refresh_token"]})),
    )
    .await;
    assert!(header_text(&refresh, "set-cookie").is_empty(), "refresh: Set-Cookie");
    let pair: Value = refresh.json().await.expect("refresh body");
    let access = pair["access_token"].as_str().expect("access token");
    let created = app
        .create_entry(access, &json!({"name": "cookie-free", "category": "service"}))
        .await;

    let responses = [
        ("me", app.get("/auth/me", access).await),
        ("read", app.get(&entry_path(&created), access).await),
        (
            "key",
            app.post_json("/api/v1/keys", access, &json!({"name": "k"})).await,
        ),
        (
            "failed login",
            login_attempt(&app, "cookie-free", "wrong-passphrase-1").await,
        ),
        ("not found", app.get("/api/v1/nowhere", access).await),
        ("health", send(app.request(Method::GET, "/health", None)).await),
        (
            "logout",
            send(app.request(Method::POST, "/auth/logout", Some(access))).await,
        ),
    ];

    for (label, response) in responses {
        assert!(
            response.status().is_success() || response.status().is_client_error(),
            "{label}: {}",
            response.status()
        );
        assert!(header_text(&response, "set-cookie").is_empty(), "{label}: Set-Cookie");
    }
}

#[tokio::test]
async fn csrf_form_content_types_rejected() {
    let app = TestApp::spawn().await;
    // The three content types a cross-site HTML form can send without a
    // preflight.
    let form_types = [
        ("application/x-www-form-urlencoded", "username=admin&password=x"),
        (
            "multipart/form-data; boundary=x",
            "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n",
        ),
        ("text/plain", "{\"username\": \"admin\", \"password\": \"x\"}"),
    ];

    for (content_type, body) in form_types {
        let login = send(
            app.client
                .post(app.url("/auth/login"))
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        let create = send(
            app.request(Method::POST, ENTRIES, Some(&app.admin_token))
                .header("content-type", content_type)
                .body(body),
        )
        .await;
        assert_eq!(
            login.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "login as {content_type}"
        );
        assert_eq!(
            create.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "create as {content_type}"
        );
    }
    assert_eq!(count_rows(&app, "entries").await, 0, "nothing was created");
}

#[tokio::test]
async fn csrf_no_cors_headers_by_default() {
    let app = TestApp::spawn().await;

    let preflight = send(
        app.request(Method::OPTIONS, ENTRIES, None)
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type"),
    )
    .await;
    let simple = send(
        app.request(Method::GET, ENTRIES, Some(&app.admin_token))
            .header("origin", "https://evil.example"),
    )
    .await;

    for (label, response) in [("preflight", &preflight), ("request", &simple)] {
        let cors: Vec<&str> = response
            .headers()
            .keys()
            .map(|name| name.as_str())
            .filter(|name| name.starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{label}: CORS headers {cors:?}");
    }
    assert!(!preflight.status().is_success(), "the preflight is not approved");
}

#[tokio::test]
async fn csrf_cors_echoes_exact_origin_only() {
    const ALLOWED: &str = "https://allowed.example";
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", ALLOWED)]).await;
    let preflight = |origin: &str| {
        app.request(Method::OPTIONS, ENTRIES, None)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
    };

    let allowed_preflight = send(preflight(ALLOWED)).await;
    let allowed_request = send(
        app.request(Method::GET, ENTRIES, Some(&app.admin_token))
            .header("origin", ALLOWED),
    )
    .await;
    for (label, response) in [("preflight", &allowed_preflight), ("request", &allowed_request)] {
        assert!(
            response.status().is_success(),
            "{label} from {ALLOWED}: {}",
            response.status()
        );
        assert_eq!(
            header_text(response, "access-control-allow-origin"),
            ALLOWED,
            "{label}: the origin is echoed exactly"
        );
        assert!(
            header_text(response, "access-control-allow-credentials").is_empty(),
            "{label}: credentials are never allowed"
        );
    }
    assert!(
        header_text(&allowed_request, "vary")
            .to_ascii_lowercase()
            .contains("origin"),
        "the response varies by Origin"
    );

    let variants = [
        "https://allowed.example.evil",
        "https://evil-allowed.example",
        "https://evilallowed.example",
        "https://sub.allowed.example",
        "http://allowed.example",
        "https://allowed.example:8443",
        "https://allowed.example/",
        "https://ALLOWED.example",
        "https://allowed.example, https://evil.example",
        "null",
        "*",
    ];
    for origin in variants {
        let rejected_preflight = send(preflight(origin)).await;
        let rejected_request = send(
            app.request(Method::GET, ENTRIES, Some(&app.admin_token))
                .header("origin", origin),
        )
        .await;
        assert_eq!(
            rejected_preflight.status(),
            StatusCode::FORBIDDEN,
            "preflight from {origin:?}"
        );
        for (label, response) in [("preflight", &rejected_preflight), ("request", &rejected_request)] {
            let echoed = header_text(response, "access-control-allow-origin");
            assert!(
                echoed.is_empty(),
                "{label} from {origin:?}: Access-Control-Allow-Origin {echoed:?}"
            );
            assert!(
                header_text(response, "access-control-allow-credentials").is_empty(),
                "{label} from {origin:?}: credentials"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 14. Unauthorized access detection

#[tokio::test]
async fn unauthorized_access_detection_failed_logins() {
    let app = TestApp::spawn_with(&[("DETECTOR_FAILED_LOGINS", "3"), ("LOGIN_MAX_FAILED_ATTEMPTS", "100")]).await;
    let (user_id, _) = app.create_user("targeted", &["viewer"]).await;

    for _ in 0..2 {
        login_attempt(&app, "targeted", "wrong-passphrase-1").await;
    }
    let below = events_of(&app.audit_lines_on_disk(), "brute_force_suspected").len();
    login_attempt(&app, "targeted", "wrong-passphrase-1").await;
    let lines = app.audit_lines_on_disk();
    let alarms: Vec<Value> = events_of(&lines, "brute_force_suspected")
        .into_iter()
        .cloned()
        .collect();
    for _ in 0..3 {
        login_attempt(&app, "targeted", "wrong-passphrase-1").await;
    }
    let same_window = events_of(&app.audit_lines_on_disk(), "brute_force_suspected").len();

    assert_eq!(below, 0, "two failures stay below the threshold");
    assert_eq!(
        alarms.len(),
        2,
        "the third failure raises one alarm per address and per account: {alarms:?}"
    );
    assert!(
        alarms.iter().all(|alarm| alarm["severity"] == "critical"),
        "critical: {alarms:?}"
    );
    assert!(
        alarms.iter().any(|alarm| alarm["user_id"] == user_id.as_str()),
        "the account alarm names the user: {alarms:?}"
    );
    assert_eq!(same_window, 2, "no further alarm in the same window");
}

#[tokio::test]
async fn unauthorized_access_detection_permission_denials() {
    let app = TestApp::spawn_with(&[("DETECTOR_PERMISSION_DENIALS", "3")]).await;
    let (viewer_id, viewer) = app.create_user("prober", &["viewer"]).await;
    let probes = [
        "/api/v1/admin/users",
        "/api/v1/admin/audit",
        "/api/v1/registry/analytics",
    ];

    for path in probes {
        assert_eq!(app.get(path, &viewer).await.status(), StatusCode::FORBIDDEN, "{path}");
    }

    let lines = app.audit_lines_on_disk();
    let alarms = events_of(&lines, "permission_denial_burst");
    assert_eq!(alarms.len(), 1, "one alarm: {alarms:?}");
    assert_eq!(alarms[0]["severity"], "high");
    assert_eq!(
        alarms[0]["user_id"],
        viewer_id.as_str(),
        "the alarm names the principal"
    );
}

#[tokio::test]
async fn unauthorized_access_detection_invalid_keys() {
    let app = TestApp::spawn_with(&[("DETECTOR_INVALID_API_KEYS", "3")]).await;

    for index in 0..3 {
        let guess = format!("hrk_guess{index:07}_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbcccccc");
        let response = send(app.request_with_key(Method::GET, ENTRIES, &guess)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {index}");
    }

    let lines = app.audit_lines_on_disk();
    let alarms = events_of(&lines, "api_key_burst");
    assert_eq!(alarms.len(), 1, "one alarm: {alarms:?}");
    assert_eq!(alarms[0]["severity"], "high");
    assert_eq!(alarms[0]["client_ip"], "127.0.0.1", "the alarm names the address");
}

#[tokio::test]
async fn unauthorized_access_detection_rate_limit_abuse() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_PER_MINUTE", "60"),
        ("RATE_LIMIT_BURST", "1"),
        ("DETECTOR_RATE_LIMIT_REJECTIONS", "3"),
    ])
    .await;
    let mut rejected = 0;

    for _ in 0..4 {
        let response = send(app.request(Method::GET, ENTRIES, None)).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            rejected += 1;
        }
    }

    assert_eq!(rejected, 3, "the burst of one lets one request through");
    let lines = app.audit_lines_on_disk();
    let alarms = events_of(&lines, "rate_limit_abuse");
    assert_eq!(alarms.len(), 1, "one alarm: {alarms:?}");
    assert_eq!(alarms[0]["severity"], "high");
}

#[tokio::test]
async fn unauthorized_access_detection_in_audit_api() {
    let app = TestApp::spawn_with(&[("DETECTOR_PERMISSION_DENIALS", "2")]).await;
    let (viewer_id, viewer) = app.create_user("watched", &["viewer"]).await;
    for _ in 0..2 {
        app.get("/api/v1/admin/users", &viewer).await;
    }

    let path = "/api/v1/admin/audit?severity=high&event_type=permission_denial_burst";
    let alarms = poll_until(std::time::Duration::from_secs(30), || async {
        let page: Value = app.get(path, &app.admin_token).await.json().await.ok()?;
        let items = page["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })
    .await
    .expect("the alarm reaches the database copy");

    assert_eq!(alarms.len(), 1, "one alarm: {alarms:?}");
    assert_eq!(alarms[0]["user_id"], viewer_id.as_str());
    assert_eq!(alarms[0]["status"], "denied");
}

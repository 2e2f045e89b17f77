//! `POST /auth/login`: the success shape, failures that reveal nothing,
//! disabled and locked accounts, the login rate limit and password handling.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp, ADMIN_PASSWORD, ADMIN_USERNAME, USER_PASSWORD};

async fn attempt_login(app: &TestApp, username: &str, password: &str) -> Response {
    app.client
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login sent")
}

/// Sends a login from another loopback source address, so that it counts
/// against another per-IP budget.
async fn attempt_login_from(app: &TestApp, source: Ipv4Addr, username: &str, password: &str) -> Response {
    let client = Client::builder()
        .local_address(IpAddr::V4(source))
        .build()
        .expect("HTTP client");
    client
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login sent")
}

/// Creates a user with `password` through the admin API.
async fn create_user_with_password(app: &TestApp, username: &str, password: &str) -> String {
    let response = app
        .post_json(
            "/api/v1/admin/users",
            &app.admin_token,
            &json!({"username": username, "password": password, "roles": ["viewer"]}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "creating {username} with a chosen password"
    );
    let body: Value = response.json().await.expect("user body");
    body["id"].as_str().expect("user id").to_string()
}

async fn set_disabled(app: &TestApp, user_id: &str, disabled: bool) {
    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"disabled": disabled}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "setting disabled={disabled} on {user_id}"
    );
}

fn header_text(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

#[tokio::test]
async fn login_success_returns_bearer_token() {
    let app = TestApp::spawn().await;

    let response = attempt_login(&app, ADMIN_USERNAME, ADMIN_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK, "the right password logs in");
    let cache_control = header_text(&response, "cache-control");
    assert_eq!(
        cache_control.as_deref(),
        Some("no-store"),
        "a response carrying a token has Cache-Control: no-store"
    );
    let body: Value = response.json().await.expect("login body");
    let access_token = body["access_token"].as_str().unwrap_or("");
    assert_eq!(
        access_token.split('.').count(),
        3,
        "access_token is a compact JWT, got {body}"
    );
    assert_eq!(body["token_type"], "bearer", "token_type is bearer");
    assert_eq!(
        body["expires_in"], 3600,
        "expires_in is JWT_EXPIRE_MINUTES (60) in seconds"
    );
}

#[tokio::test]
async fn login_returns_refresh_token() {
    let app = TestApp::spawn().await;

    let response = attempt_login(&app, ADMIN_USERNAME, ADMIN_PASSWORD).await;

    assert_eq!(response.status(), StatusCode::OK, "the right password logs in");
    let body: Value = response.json().await.expect("login body");
    assert!(
        body["refresh_token"].is_string(),
        "the login response carries refresh_token, got {body}"
    );
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_alike() {
    let app = TestApp::spawn().await;

    let unknown = attempt_login(&app, "nobody-by-this-name", "some-wrong-passphrase").await;
    let wrong_password = attempt_login(&app, ADMIN_USERNAME, "some-wrong-passphrase").await;

    assert_eq!(
        unknown.status(),
        StatusCode::UNAUTHORIZED,
        "an unknown username gives 401"
    );
    assert_eq!(
        wrong_password.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong password gives 401"
    );
    let mut unknown_body: Value = unknown.json().await.expect("problem body");
    let mut wrong_body: Value = wrong_password.json().await.expect("problem body");
    assert_eq!(
        unknown_body["code"], "invalid_credentials",
        "an unknown username has code invalid_credentials"
    );
    unknown_body
        .as_object_mut()
        .expect("problem object")
        .remove("request_id");
    wrong_body.as_object_mut().expect("problem object").remove("request_id");
    assert_eq!(
        unknown_body, wrong_body,
        "both failures have the same body apart from request_id"
    );
}

#[tokio::test]
async fn disabled_user_login_outcomes() {
    let app = TestApp::spawn().await;
    let (user_id, _) = app.create_user("disabled-login", &["viewer"]).await;
    set_disabled(&app, &user_id, true).await;

    let right_password = attempt_login(&app, "disabled-login", USER_PASSWORD).await;
    let wrong_password = attempt_login(&app, "disabled-login", "not-the-passphrase-1").await;

    assert_eq!(
        right_password.status(),
        StatusCode::FORBIDDEN,
        "the right password of a disabled account gives 403"
    );
    assert_eq!(
        problem_code(right_password).await,
        "account_disabled",
        "the 403 has code account_disabled"
    );
    assert_eq!(
        wrong_password.status(),
        StatusCode::UNAUTHORIZED,
        "a wrong password of a disabled account gives the usual 401"
    );
    assert_eq!(
        problem_code(wrong_password).await,
        "invalid_credentials",
        "the 401 has code invalid_credentials"
    );
}

#[tokio::test]
async fn lockout_after_max_failed_attempts() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "3")]).await;
    app.create_user("lockout-target", &["viewer"]).await;
    for _ in 0..3 {
        attempt_login(&app, "lockout-target", "wrong-passphrase-x").await;
    }

    let response = attempt_login(&app, "lockout-target", USER_PASSWORD).await;

    assert_eq!(
        response.status(),
        StatusCode::LOCKED,
        "after 3 failures even the right password gives 423"
    );
    let retry_after: Option<u64> = header_text(&response, "retry-after").and_then(|text| text.parse().ok());
    assert!(
        retry_after.is_some_and(|seconds| seconds > 0 && seconds <= 15 * 60),
        "Retry-After is 1..=900 s, got {retry_after:?}"
    );
    assert_eq!(
        problem_code(response).await,
        "account_locked",
        "the 423 has code account_locked"
    );
}

#[tokio::test]
async fn lockout_same_for_unknown_username() {
    // Arrange: the same wrong attempts against an existing and a missing account.
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "3")]).await;
    app.create_user("existing-account", &["viewer"]).await;
    let mut existing_statuses = Vec::new();
    let mut unknown_statuses = Vec::new();

    // Act
    for _ in 0..4 {
        existing_statuses.push(
            attempt_login(&app, "existing-account", "wrong-passphrase-x")
                .await
                .status(),
        );
        unknown_statuses.push(
            attempt_login(&app, "missing-account", "wrong-passphrase-x")
                .await
                .status(),
        );
    }
    let unknown_locked = attempt_login(&app, "missing-account", "wrong-passphrase-x").await;

    // Assert
    assert_eq!(
        existing_statuses, unknown_statuses,
        "an unknown username goes through the same statuses as an existing one"
    );
    assert_eq!(
        unknown_locked.status(),
        StatusCode::LOCKED,
        "an unknown username is locked after 3 failures"
    );
    let retry_after = header_text(&unknown_locked, "retry-after");
    assert!(retry_after.is_some(), "the unknown username's 423 carries Retry-After");
    assert_eq!(
        problem_code(unknown_locked).await,
        "account_locked",
        "the unknown username's 423 has code account_locked"
    );
}

#[tokio::test]
async fn lockout_ends_after_lockout_minutes() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "3"), ("LOGIN_LOCKOUT_MINUTES", "15")]).await;
    app.create_user("lockout-expiry", &["viewer"]).await;
    for _ in 0..3 {
        attempt_login(&app, "lockout-expiry", "wrong-passphrase-x").await;
    }

    app.clock.advance(Duration::minutes(14));
    let before_expiry = attempt_login(&app, "lockout-expiry", USER_PASSWORD).await.status();
    app.clock.advance(Duration::minutes(1) + Duration::seconds(1));
    let after_expiry = attempt_login(&app, "lockout-expiry", USER_PASSWORD).await.status();

    assert_eq!(
        before_expiry,
        StatusCode::LOCKED,
        "14 minutes in, the account is still locked"
    );
    assert_eq!(
        after_expiry,
        StatusCode::OK,
        "past 15 minutes the right password logs in again"
    );
}

#[tokio::test]
async fn login_rate_limit_per_ip() {
    // Arrange: the harness's own admin login has already used one of the three.
    let app = TestApp::spawn_with(&[("LOGIN_RATE_LIMIT_PER_MINUTE", "3")]).await;

    // Act: distinct usernames, so only the per-IP budget applies.
    let first = attempt_login(&app, "rate-one", "wrong-passphrase-x").await.status();
    let second = attempt_login(&app, "rate-two", "wrong-passphrase-x").await.status();
    let third = attempt_login(&app, "rate-three", "wrong-passphrase-x").await;

    // Assert
    assert_eq!(
        first,
        StatusCode::UNAUTHORIZED,
        "the second login of the minute is processed"
    );
    assert_eq!(
        second,
        StatusCode::UNAUTHORIZED,
        "the third login of the minute is processed"
    );
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth login from one IP within a minute gives 429"
    );
    assert!(
        header_text(&third, "retry-after").is_some(),
        "the 429 carries Retry-After"
    );
}

#[tokio::test]
async fn login_rate_limit_per_username() {
    // Arrange: each attempt comes from its own loopback address, so only the
    // per-username budget is shared. The harness's admin login used one.
    let app = TestApp::spawn_with(&[("LOGIN_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let mut statuses = Vec::new();

    // Act
    for last_octet in 2..=4u8 {
        let source = Ipv4Addr::new(127, 0, 0, last_octet);
        statuses.push(
            attempt_login_from(&app, source, ADMIN_USERNAME, "wrong-passphrase-x")
                .await
                .status(),
        );
    }

    // Assert
    assert_eq!(
        statuses[0],
        StatusCode::UNAUTHORIZED,
        "the second login for admin within a minute is processed"
    );
    assert_eq!(
        statuses[1],
        StatusCode::UNAUTHORIZED,
        "the third login for admin within a minute is processed"
    );
    assert_eq!(
        statuses[2],
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth login for one username within a minute gives 429, from any IP"
    );
}

#[tokio::test]
async fn login_rate_limit_refills() {
    let app = TestApp::spawn_with(&[("LOGIN_RATE_LIMIT_PER_MINUTE", "3")]).await;
    for name in ["refill-one", "refill-two"] {
        attempt_login(&app, name, "wrong-passphrase-x").await;
    }
    let limited = attempt_login(&app, "refill-three", "wrong-passphrase-x").await.status();

    app.clock.advance(Duration::minutes(1));
    let after_a_minute = attempt_login(&app, "refill-four", "wrong-passphrase-x").await.status();

    assert_eq!(limited, StatusCode::TOO_MANY_REQUESTS, "the budget is spent");
    assert_eq!(
        after_a_minute,
        StatusCode::UNAUTHORIZED,
        "a minute later the login is processed again"
    );
}

/// Returns the shortest of three timed login attempts, and the last response.
async fn fastest_of_three(app: &TestApp, username: &str, password: &str) -> (StdDuration, Response) {
    let mut fastest = StdDuration::MAX;
    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let response = attempt_login(app, username, password).await;
        fastest = fastest.min(started.elapsed());
        last = Some(response);
    }
    (fastest, last.expect("three attempts made"))
}

#[tokio::test]
async fn overlong_password_rejected_quickly() {
    // Arrange: a normal wrong password is the baseline, since it pays for one
    // Argon2 verification (about 40 ms on the development machine).
    let app = TestApp::spawn().await;
    let (baseline_time, baseline) = fastest_of_three(&app, ADMIN_USERNAME, "wrong-passphrase-x").await;
    assert_eq!(
        baseline.status(),
        StatusCode::UNAUTHORIZED,
        "the baseline wrong password gives 401"
    );
    let overlong = format!("{ADMIN_PASSWORD}{}", "x".repeat(600));

    // Act
    let (overlong_time, response) = fastest_of_three(&app, ADMIN_USERNAME, &overlong).await;

    // Assert
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a password over 512 bytes gives 401"
    );
    assert_eq!(
        problem_code(response).await,
        "invalid_credentials",
        "the 401 has code invalid_credentials"
    );
    assert!(
        overlong_time * 4 < baseline_time,
        "the over-long password is rejected before hashing: {overlong_time:?} against {baseline_time:?} for a hashed one"
    );
}

#[tokio::test]
async fn passwords_sharing_72_byte_prefix_differ() {
    // Arrange: bcrypt would see only the first 72 bytes of these passwords.
    let app = TestApp::spawn().await;
    let prefix = "long-shared-prefix-".repeat(4);
    let prefix = &prefix[..72];
    create_user_with_password(&app, "long-password", &format!("{prefix}-first")).await;

    // Act
    let other_suffix = attempt_login(&app, "long-password", &format!("{prefix}-other")).await;
    let right = attempt_login(&app, "long-password", &format!("{prefix}-first")).await;

    // Assert
    assert_eq!(
        other_suffix.status(),
        StatusCode::UNAUTHORIZED,
        "a password differing only after byte 72 is wrong"
    );
    assert_eq!(right.status(), StatusCode::OK, "the exact long password logs in");
}

#[tokio::test]
async fn multibyte_password_round_trips() {
    let app = TestApp::spawn().await;
    let password = "pässwörd-日本語-🔑-ключ";
    create_user_with_password(&app, "multibyte", password).await;

    let right = attempt_login(&app, "multibyte", password).await;
    let near_miss = attempt_login(&app, "multibyte", "passwörd-日本語-🔑-ключ").await;

    assert_eq!(right.status(), StatusCode::OK, "the multi-byte password logs in");
    assert_eq!(
        near_miss.status(),
        StatusCode::UNAUTHORIZED,
        "one letter without its umlaut is a wrong password"
    );
}

#[tokio::test]
async fn blank_or_control_passwords_rejected() {
    let app = TestApp::spawn().await;
    let cases = [
        ("spaces", " ".repeat(8)),
        ("nul", "\0".repeat(8)),
        ("tab", "tab\tinside-password".to_string()),
    ];

    for (label, password) in cases {
        let response = app
            .post_json(
                "/api/v1/admin/users",
                &app.admin_token,
                &json!({"username": format!("weak-{label}"), "password": password, "roles": ["user"]}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{label}");
        assert_eq!(problem_code(response).await, "invalid_parameter", "{label}");
    }

    let with_spaces = app
        .post_json(
            "/api/v1/admin/users",
            &app.admin_token,
            &json!({"username": "spaced", "password": "correct horse battery staple", "roles": ["user"]}),
        )
        .await;
    assert_eq!(
        with_spaces.status(),
        StatusCode::CREATED,
        "spaces inside a password are allowed"
    );
}

/// Sends a user creation request with the test password.
async fn try_create_user(app: &TestApp, username: &str) -> Response {
    app.post_json(
        "/api/v1/admin/users",
        &app.admin_token,
        &json!({"username": username, "password": USER_PASSWORD, "roles": ["user"]}),
    )
    .await
}

#[tokio::test]
async fn username_taken_ignoring_case() {
    let app = TestApp::spawn().await;
    assert_eq!(try_create_user(&app, "carol").await.status(), StatusCode::CREATED);

    for variant in ["Carol", "CAROL", "carol"] {
        let response = try_create_user(&app, variant).await;
        assert_eq!(response.status(), StatusCode::CONFLICT, "{variant}");
        assert_eq!(problem_code(response).await, "username_taken", "{variant}");
    }
    let admin_variant = try_create_user(&app, "Admin").await;
    assert_eq!(admin_variant.status(), StatusCode::CONFLICT, "the built-in admin too");
}

#[tokio::test]
async fn look_alike_usernames_rejected() {
    let app = TestApp::spawn().await;
    let cases = [
        "c\u{430}rol",
        "caf\u{e9}",
        "\u{ff41}dmin",
        "with space",
        "user+tag@example.com",
    ];

    for username in cases {
        let response = try_create_user(&app, username).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{username:?}");
        let problem: Value = response.json().await.expect("problem body");
        assert_eq!(problem["code"], "invalid_parameter", "{username:?}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("ASCII letter"), "the detail states the rule: {detail}");
    }
    let too_long = try_create_user(&app, &"x".repeat(65)).await;
    assert_eq!(too_long.status(), StatusCode::UNPROCESSABLE_ENTITY, "65 characters");
    let longest = try_create_user(&app, &"x".repeat(64)).await;
    assert_eq!(longest.status(), StatusCode::CREATED, "64 characters");
}

#[tokio::test]
async fn legacy_usernames_still_sign_in() {
    // Accounts stored before the username rule: outside the character set,
    // and two that differ only in case.
    let app = TestApp::spawn().await;
    let now = hyper_registry::clock::Clock::now(app.clock.as_ref());
    let legacy = ["José Ünïcode", "Dave", "dave"];
    for username in legacy {
        let user = hyper_registry::storage::User {
            id: uuid::Uuid::new_v4(),
            username: username.to_string(),
            password_hash: hyper_registry::auth::password::hash_password(USER_PASSWORD).unwrap(),
            roles: vec!["user".into()],
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            mfa_enabled: false,
            tokens_valid_after: hyper_registry::app::users::whole_second(now),
            created_at: now,
            updated_at: now,
        };
        app.state.store.insert_user(&user).await.expect("legacy user stored");
    }

    for username in legacy {
        let response = attempt_login(&app, username, USER_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "{username} signs in");
    }
}

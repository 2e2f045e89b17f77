//! Refresh-token rotation and reuse, logout, password change and MFA.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp, USER_PASSWORD};

async fn login_pair(app: &TestApp, username: &str, password: &str) -> Value {
    let response = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login of {username}");
    response.json().await.unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/refresh"))
        .json(&json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap()
}

fn totp_now(app: &TestApp, secret_base32: &str, offset_steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).unwrap();
    let now = app.state.clock.now().timestamp() + offset_steps * 30;
    totp.generate(now as u64)
}

#[tokio::test]
async fn login_returns_refresh_token() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;

    let pair = login_pair(&app, "alice", USER_PASSWORD).await;

    assert!(
        pair["refresh_token"].as_str().is_some_and(|t| t.len() >= 32),
        "refresh token present: {pair}"
    );
    assert_eq!(pair["token_type"], "bearer");
}

#[tokio::test]
async fn refresh_rotates_token() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let pair = login_pair(&app, "alice", USER_PASSWORD).await;

    let response = refresh(&app, pair["refresh_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let next: Value = response.json().await.unwrap();
    assert_ne!(
        next["refresh_token"], pair["refresh_token"],
        "a new refresh token is issued"
    );
    let me = app.get("/auth/me", next["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200, "the new access token works");
}

#[tokio::test]
async fn refresh_token_reused_revokes_family() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let first = login_pair(&app, "alice", USER_PASSWORD).await;
    let other_device = login_pair(&app, "alice", USER_PASSWORD).await;
    let stolen = first["refresh_token"].as_str().unwrap().to_string();
    let second: Value = refresh(&app, &stolen).await.json().await.unwrap();
    app.clock.advance(Duration::seconds(3));

    let reuse = refresh(&app, &stolen).await;

    assert_eq!(reuse.status(), 401);
    assert_eq!(problem_code(reuse).await, "refresh_token_reused");
    let descendant = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(descendant.status(), 401, "the family's newest token is revoked too");
    let other = refresh(&app, other_device["refresh_token"].as_str().unwrap()).await;
    assert_eq!(other.status(), 200, "another sign-in of the same user is untouched");
    let audit = app.audit_text().await;
    assert!(audit.contains("\"event_type\": \"refresh_token_reused\", \"action\": \"refresh_token_reused\", \"status\": \"denied\", \"severity\": \"high\""), "high audit event written");
}

#[tokio::test]
async fn a_second_use_within_two_seconds_is_a_race_not_reuse() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let first = login_pair(&app, "alice", USER_PASSWORD).await;
    let token = first["refresh_token"].as_str().unwrap().to_string();
    let winner: Value = refresh(&app, &token).await.json().await.unwrap();
    app.clock.advance(Duration::seconds(1));

    let retry = refresh(&app, &token).await;

    assert_eq!(retry.status(), 401);
    assert_eq!(problem_code(retry).await, "invalid_token");
    let next = refresh(&app, winner["refresh_token"].as_str().unwrap()).await;
    assert_eq!(next.status(), 200, "the winner's sign-in stays valid");
}

#[tokio::test]
async fn concurrent_refreshes_have_one_winner() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let pair = login_pair(&app, "alice", USER_PASSWORD).await;
    let token = pair["refresh_token"].as_str().unwrap().to_string();

    let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));

    let statuses = [a.status().as_u16(), b.status().as_u16()];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one winner: {statuses:?}"
    );
}

#[tokio::test]
async fn refresh_token_rejected_as_access_token() {
    let app = TestApp::spawn().await;
    let pair = login_pair(&app, "admin", crate::helpers::ADMIN_PASSWORD).await;

    let response = app.get("/auth/me", pair["refresh_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn access_token_rejected_as_refresh_token() {
    let app = TestApp::spawn().await;

    let response = refresh(&app, &app.admin_token).await;

    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn refresh_token_expires() {
    let app = TestApp::spawn_with(&[("JWT_REFRESH_EXPIRE_DAYS", "1")]).await;
    let pair = login_pair(&app, "admin", crate::helpers::ADMIN_PASSWORD).await;
    app.clock
        .advance(chrono::Duration::days(1) + chrono::Duration::seconds(1));

    let response = refresh(&app, pair["refresh_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), 401);
    assert_eq!(problem_code(response).await, "token_expired");
}

#[tokio::test]
async fn logout_revokes_token_and_family() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let pair = login_pair(&app, "alice", USER_PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();

    let response = app
        .request(Method::POST, "/auth/logout", Some(access))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get("/auth/me", access).await.status(),
        401,
        "the access token is revoked"
    );
    let after = refresh(&app, pair["refresh_token"].as_str().unwrap()).await;
    assert_eq!(after.status(), 401, "the refresh family is revoked");
}

#[tokio::test]
async fn password_change_revokes_other_sessions() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let current = login_pair(&app, "alice", USER_PASSWORD).await;
    let other = login_pair(&app, "alice", USER_PASSWORD).await;
    let body = json!({"current_password": USER_PASSWORD, "new_password": "a brand new passphrase"});

    let response = app
        .request(
            Method::POST,
            "/auth/password",
            Some(current["access_token"].as_str().unwrap()),
        )
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let fresh: Value = response.json().await.unwrap();
    assert_eq!(
        app.get("/auth/me", fresh["access_token"].as_str().unwrap())
            .await
            .status(),
        200,
        "the new token works"
    );
    assert_eq!(
        app.get("/auth/me", other["access_token"].as_str().unwrap())
            .await
            .status(),
        401,
        "other access tokens are revoked"
    );
    assert_eq!(
        refresh(&app, other["refresh_token"].as_str().unwrap()).await.status(),
        401,
        "other refresh tokens are revoked"
    );
    login_pair(&app, "alice", "a brand new passphrase").await;
}

#[tokio::test]
async fn password_change_wrong_current_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = json!({"current_password": "not my password", "new_password": "a brand new passphrase"});

    let response = app
        .request(Method::POST, "/auth/password", Some(&token))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(app.get("/auth/me", &token).await.status(), 200, "nothing was revoked");
}

#[tokio::test]
async fn password_change_common_password_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = json!({"current_password": USER_PASSWORD, "new_password": "password123"});

    let response = app
        .request(Method::POST, "/auth/password", Some(&token))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 422);
}

/// Enrols `token`'s user in MFA; returns the base32 secret and recovery codes.
async fn enrol(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let setup: Value = app
        .request(Method::POST, "/auth/mfa/setup", Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_string();
    assert!(
        setup["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"),
        "{setup}"
    );
    let code = totp_now(app, &secret, 0);
    let confirm = app
        .post_json("/auth/mfa/confirm", token, &json!({ "code": code }))
        .await;
    assert_eq!(confirm.status(), 200, "confirm");
    let body: Value = confirm.json().await.unwrap();
    let codes: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

#[tokio::test]
async fn mfa_login_requires_code() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, codes) = enrol(&app, &token).await;
    assert_eq!(codes.len(), 10, "ten recovery codes");
    app.clock.advance(chrono::Duration::seconds(30));

    let without = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    assert_eq!(problem_code(without).await, "mfa_required");

    let code = totp_now(&app, &secret, 0);
    let with = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD, "totp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200, "login with a TOTP code");

    let replay = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD, "totp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401, "the same code is not accepted twice");
}

#[tokio::test]
async fn mfa_recovery_code_single_use() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (_, codes) = enrol(&app, &token).await;
    let body = json!({"username": "alice", "password": USER_PASSWORD, "recovery_code": codes[3]});

    let first = app
        .client
        .post(app.url("/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let second = app
        .client
        .post(app.url("/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(first.status(), 200, "a recovery code signs in once");
    assert_eq!(second.status(), 401, "and never again");
}

#[tokio::test]
async fn mfa_wrong_code_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, _) = enrol(&app, &token).await;
    let wrong = if totp_now(&app, &secret, 5) == "000000" {
        "000001"
    } else {
        "000000"
    };

    let response = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD, "totp_code": wrong}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn mfa_disable_needs_password_and_code() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, _) = enrol(&app, &token).await;
    app.clock.advance(chrono::Duration::seconds(30));

    let wrong_password = app
        .post_json(
            "/auth/mfa/disable",
            &token,
            &json!({"password": "nope nope nope", "code": totp_now(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(wrong_password.status(), 401, "wrong password");

    let response = app
        .post_json(
            "/auth/mfa/disable",
            &token,
            &json!({"password": USER_PASSWORD, "code": totp_now(&app, &secret, 0)}),
        )
        .await;
    assert_eq!(response.status(), 204, "disabled");
    login_pair(&app, "alice", USER_PASSWORD).await;
}

#[tokio::test]
async fn mfa_required_role_limited_until_enrolled() {
    let app = TestApp::spawn_with(&[("MFA_REQUIRED_ROLES", "user")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let blocked = app.get("/api/v1/registry/entries", &token).await;
    assert_eq!(blocked.status(), 403);
    assert_eq!(problem_code(blocked).await, "mfa_enrollment_required");
    assert_eq!(
        app.get("/auth/me", &token).await.status(),
        200,
        "/auth/me stays reachable"
    );

    enrol(&app, &token).await;
    assert_eq!(
        app.get("/api/v1/registry/entries", &token).await.status(),
        200,
        "enrolled users get through"
    );
}

#[tokio::test]
async fn totp_secret_not_stored_in_plaintext() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, codes) = enrol(&app, &token).await;
    let stopped = app.stop().await;

    let raw_secret = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    for file in ["hyper_registry.db", "hyper_registry.db-wal", "audit.log"] {
        let bytes = std::fs::read(stopped.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "base32 secret in {file}"
        );
        assert!(
            !bytes.windows(raw_secret.len()).any(|w| w == raw_secret.as_slice()),
            "raw secret in {file}"
        );
        assert!(
            !bytes.windows(codes[0].len()).any(|w| w == codes[0].as_bytes()),
            "recovery code in {file}"
        );
    }
}

#[tokio::test]
async fn mfa_confirm_code_not_replayed_at_login() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, _) = enrol(&app, &token).await;
    let confirm_code = totp_now(&app, &secret, 0);

    let body = json!({"username": "alice", "password": USER_PASSWORD, "totp_code": confirm_code});
    let response = app
        .client
        .post(app.url("/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401, "the code that confirmed set-up is spent");
}

#[tokio::test]
async fn mfa_racing_logins_accept_code_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let (secret, _) = enrol(&app, &token).await;
    app.clock.advance(chrono::Duration::seconds(30));
    let body = json!({"username": "alice", "password": USER_PASSWORD, "totp_code": totp_now(&app, &secret, 0)});

    let attempts = (0..4).map(|_| app.client.post(app.url("/auth/login")).json(&body).send());
    let responses = futures::future::join_all(attempts).await;

    let accepted = responses.iter().filter(|r| r.as_ref().unwrap().status() == 200).count();
    assert_eq!(accepted, 1, "one code, one login");
}

#[tokio::test]
async fn refresh_reuse_revokes_family_access_tokens() {
    let app = TestApp::spawn().await;
    app.create_user("alice", &["user"]).await;
    let first = login_pair(&app, "alice", USER_PASSWORD).await;
    let stolen = first["refresh_token"].as_str().unwrap().to_string();
    let second: Value = refresh(&app, &stolen).await.json().await.unwrap();
    let access = second["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/auth/me", &access).await.status(), 200);
    app.clock.advance(Duration::seconds(3));

    refresh(&app, &stolen).await;

    assert_eq!(
        app.get("/auth/me", &access).await.status(),
        401,
        "access tokens of the revoked sign-in stop too"
    );
    let first_access = first["access_token"].as_str().unwrap();
    assert_eq!(
        app.get("/auth/me", first_access).await.status(),
        401,
        "including the first one"
    );
}

#[tokio::test]
async fn failed_logins_do_not_undo_disable() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "1000")]).await;
    let (id, token) = app.create_user("mallory", &["user"]).await;
    let wrong = json!({"username": "mallory", "password": "wrong wrong wrong"});
    let failures = (0..8).map(|_| app.client.post(app.url("/auth/login")).json(&wrong).send());
    let disable = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"disabled": true}))
        .send();

    let (_, disabled) = tokio::join!(futures::future::join_all(failures), disable);

    assert_eq!(disabled.unwrap().status(), 200);
    assert_eq!(app.get("/auth/me", &token).await.status(), 401, "the disable stands");
    let user: Value = app
        .get(&format!("/api/v1/admin/users/{id}"), &app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["disabled"], true, "no failed login wrote the old row back");
}

#[tokio::test]
async fn password_change_guesses_count_toward_lockout() {
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILED_ATTEMPTS", "3")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let guess = json!({"current_password": "guess guess guess", "new_password": "a brand new passphrase"});

    for _ in 0..3 {
        let response = app
            .request(Method::POST, "/auth/password", Some(&token))
            .json(&guess)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "wrong current password");
    }

    let locked = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), 423, "three wrong guesses lock the account");
}

//! API keys: creation, the key format, listing, permission limits, lifetime,
//! revocation, rotation and the intersection with the owner's permissions.

use chrono::Duration;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp, USER_PASSWORD};

async fn key_request(app: &TestApp, method: Method, path: &str, key: &str) -> Response {
    app.client
        .request(method, app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request sent")
}

/// Creates a key as `token` and returns the creation response body.
async fn create_key(app: &TestApp, token: &str, body: &Value) -> Value {
    let response = app.post_json("/api/v1/keys", token, body).await;
    assert_eq!(response.status(), StatusCode::CREATED, "creating key {body}");
    response.json().await.expect("key body")
}

fn key_of(body: &Value) -> String {
    body["key"].as_str().expect("key in the creation response").to_string()
}

async fn me_with_key(app: &TestApp, key: &str) -> Response {
    key_request(app, Method::GET, "/auth/me", key).await
}

#[tokio::test]
async fn created_key_authenticates() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let response = app
        .post_json("/api/v1/keys", &app.admin_token, &json!({"name": "ci"}))
        .await;

    // Assert
    assert_eq!(response.status(), StatusCode::CREATED, "key creation gives 201");
    let cache_control = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(
        cache_control.as_deref(),
        Some("no-store"),
        "the response carrying the key has Cache-Control: no-store"
    );
    let body: Value = response.json().await.expect("key body");
    let key = key_of(&body);
    let key_id = body["id"].as_str().expect("key id");
    assert!(
        key.starts_with(&format!("hrk_{key_id}_")),
        "the key reads hrk_<key id>_…, got {key}"
    );
    assert!(
        key.len() >= "hrk_".len() + key_id.len() + 1 + 22,
        "the secret part has at least 22 alphanumerics (128 bits), got a key of {} characters",
        key.len()
    );
    assert_eq!(body["prefix"], format!("hrk_{key_id}"), "prefix is hrk_ and the key id");
    let me = me_with_key(&app, &key).await;
    assert_eq!(me.status(), StatusCode::OK, "the key works in X-API-Key");
    let me: Value = me.json().await.expect("me body");
    assert_eq!(me["api_key_id"], key_id, "/auth/me names the key");
}

#[tokio::test]
async fn listing_never_shows_key() {
    let app = TestApp::spawn().await;
    let created = create_key(&app, &app.admin_token, &json!({"name": "listed"})).await;
    let key = key_of(&created);

    let response = app.get("/api/v1/keys", &app.admin_token).await;

    assert_eq!(response.status(), StatusCode::OK, "listing keys");
    let text = response.text().await.expect("list text");
    let secret_part = &key[key.len() - 38..];
    assert!(!text.contains(&key), "the list does not contain the key");
    assert!(
        !text.contains(secret_part),
        "the list does not contain the key's secret part"
    );
    let body: Value = serde_json::from_str(&text).expect("list body");
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "the list has the one key");
    assert!(
        items[0].get("key").is_none(),
        "a listed key has no `key` field: {}",
        items[0]
    );
    assert_eq!(items[0]["id"], created["id"], "the listed key is the created one");
}

#[tokio::test]
async fn viewer_cannot_create_key() {
    // The viewer role lacks `keys:manage`, so the request fails on that
    // permission before the requested `write` is compared with the owner's.
    let app = TestApp::spawn().await;
    let (_, viewer_token) = app.create_user("key-viewer", &["viewer"]).await;

    let response = app
        .post_json(
            "/api/v1/keys",
            &viewer_token,
            &json!({"name": "wants-write", "permissions": ["write"]}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a viewer asking for a key with write gets 403"
    );
    assert_eq!(
        problem_code(response).await,
        "permission_denied",
        "the 403 names the missing permission"
    );
}

#[tokio::test]
async fn key_permissions_subset_of_owner() {
    let app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("key-user", &["user"]).await;

    let response = app
        .post_json(
            "/api/v1/keys",
            &user_token,
            &json!({"name": "too-much", "permissions": ["read", "users:admin"]}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a user asking for users:admin on a key gets 403"
    );
}

#[tokio::test]
async fn admin_key_for_viewer_limited_to_viewer() {
    // An admin may create keys for others, but not with more than the owner holds.
    let app = TestApp::spawn().await;
    let (viewer_id, _) = app.create_user("key-owner-viewer", &["viewer"]).await;

    let response = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "for-viewer", "user_id": viewer_id, "permissions": ["read", "write"]}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a key with write for a viewer-owned account gets 403"
    );
}

#[tokio::test]
async fn unknown_permission_rejected() {
    let app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("key-typo", &["user"]).await;

    let response = app
        .post_json(
            "/api/v1/keys",
            &user_token,
            &json!({"name": "typo", "permissions": ["read", "raed"]}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "an unknown permission name gives 422"
    );
}

#[tokio::test]
async fn lifetime_over_maximum_rejected() {
    // API_KEY_MAX_EXPIRE_DAYS is left at its default of 730.
    let app = TestApp::spawn().await;

    let over = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "too-long", "expires_in_days": 731}),
        )
        .await;
    let zero = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "zero", "expires_in_days": 0}),
        )
        .await;
    let at_maximum = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "at-max", "expires_in_days": 730}),
        )
        .await;

    assert_eq!(
        over.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "731 days with a 730-day maximum gives 422"
    );
    assert_eq!(zero.status(), StatusCode::UNPROCESSABLE_ENTITY, "0 days gives 422");
    assert_eq!(
        at_maximum.status(),
        StatusCode::CREATED,
        "exactly the maximum is accepted"
    );
}

#[tokio::test]
async fn revoked_key_rejected() {
    let app = TestApp::spawn().await;
    let created = create_key(&app, &app.admin_token, &json!({"name": "to-revoke"})).await;
    let key = key_of(&created);
    let id = created["id"].as_str().expect("key id");

    let revoke = app
        .request(Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&app.admin_token))
        .send()
        .await
        .expect("request sent");
    let response = me_with_key(&app, &key).await;

    assert_eq!(revoke.status(), StatusCode::NO_CONTENT, "revocation gives 204");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "a revoked key gives 401");
    assert_eq!(
        problem_code(response).await,
        "api_key_revoked",
        "the 401 has code api_key_revoked"
    );
}

#[tokio::test]
async fn expired_key_rejected() {
    let app = TestApp::spawn().await;
    let created = create_key(
        &app,
        &app.admin_token,
        &json!({"name": "short-lived", "expires_in_days": 1}),
    )
    .await;
    let key = key_of(&created);

    app.clock.advance(Duration::hours(23));
    let before_expiry = me_with_key(&app, &key).await.status();
    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let response = me_with_key(&app, &key).await;

    assert_eq!(before_expiry, StatusCode::OK, "the key works before it expires");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "an expired key gives 401");
    assert_eq!(
        problem_code(response).await,
        "api_key_expired",
        "the 401 has code api_key_expired"
    );
}

#[tokio::test]
async fn mistyped_key_rejected() {
    let app = TestApp::spawn().await;
    let key = key_of(&create_key(&app, &app.admin_token, &json!({"name": "typo-target"})).await);
    // Change one character of the secret part, keeping it alphanumeric.
    let position = key.len() - 10;
    let original = key.as_bytes()[position];
    let replacement = if original == b'a' { 'b' } else { 'a' };
    let mistyped = format!("{}{replacement}{}", &key[..position], &key[position + 1..]);
    let truncated = &key[..key.len() - 1];

    let mistyped_response = me_with_key(&app, &mistyped).await;
    let truncated_response = me_with_key(&app, truncated).await;

    assert_eq!(
        mistyped_response.status(),
        StatusCode::UNAUTHORIZED,
        "a mistyped key gives 401"
    );
    assert_eq!(
        problem_code(mistyped_response).await,
        "invalid_api_key",
        "the mistyped key has code invalid_api_key"
    );
    assert_eq!(
        truncated_response.status(),
        StatusCode::UNAUTHORIZED,
        "a truncated key gives 401"
    );
    assert_eq!(
        problem_code(truncated_response).await,
        "invalid_api_key",
        "the truncated key has code invalid_api_key"
    );
}

#[tokio::test]
async fn rotation_grace_period() {
    // Arrange
    let app = TestApp::spawn().await;
    let created = create_key(&app, &app.admin_token, &json!({"name": "rotating"})).await;
    let old_key = key_of(&created);
    let id = created["id"].as_str().expect("key id");

    // Act
    let rotated = app
        .post_json(
            &format!("/api/v1/keys/{id}/rotate"),
            &app.admin_token,
            &json!({"grace_period_hours": 1}),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::CREATED, "rotation gives 201");
    let rotated: Value = rotated.json().await.expect("rotated key body");
    let new_key = key_of(&rotated);
    let old_at_once = me_with_key(&app, &old_key).await.status();
    let new_at_once = me_with_key(&app, &new_key).await.status();
    app.clock.advance(Duration::minutes(59));
    let old_within_grace = me_with_key(&app, &old_key).await.status();
    app.clock.advance(Duration::minutes(1) + Duration::seconds(1));
    let old_after_grace = me_with_key(&app, &old_key).await.status();
    let new_after_grace = me_with_key(&app, &new_key).await.status();

    // Assert
    assert_ne!(new_key, old_key, "rotation issues a different key");
    assert_eq!(rotated["name"], created["name"], "the new key keeps the name");
    assert_eq!(
        rotated["permissions"], created["permissions"],
        "the new key keeps the permissions"
    );
    assert_eq!(old_at_once, StatusCode::OK, "the old key works right after rotation");
    assert_eq!(new_at_once, StatusCode::OK, "the new key works right after rotation");
    assert_eq!(
        old_within_grace,
        StatusCode::OK,
        "the old key works 59 minutes into a 1 h grace period"
    );
    assert_eq!(
        old_after_grace,
        StatusCode::UNAUTHORIZED,
        "the old key stops after the grace period"
    );
    assert_eq!(
        new_after_grace,
        StatusCode::OK,
        "the new key still works after the grace period"
    );
}

#[tokio::test]
async fn rotation_without_grace_stops_old_key() {
    let app = TestApp::spawn().await;
    let created = create_key(&app, &app.admin_token, &json!({"name": "rotating-now"})).await;
    let old_key = key_of(&created);
    let id = created["id"].as_str().expect("key id");

    let rotated = app
        .request(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate"),
            Some(&app.admin_token),
        )
        .send()
        .await
        .expect("request sent");
    let old_status = me_with_key(&app, &old_key).await.status();

    assert_eq!(
        rotated.status(),
        StatusCode::CREATED,
        "rotation without a body gives 201"
    );
    assert_eq!(
        old_status,
        StatusCode::UNAUTHORIZED,
        "with the default grace of 0 the old key stops at once"
    );
}

#[tokio::test]
async fn key_permissions_follow_owner_roles() {
    // Arrange: a key made while its owner has the `user` role.
    let app = TestApp::spawn().await;
    let (user_id, user_token) = app.create_user("demoted-owner", &["user"]).await;
    let key = key_of(&create_key(&app, &user_token, &json!({"name": "owner-demoted"})).await);
    let before: Value = me_with_key(&app, &key).await.json().await.expect("me body");

    // Act: demote the owner to viewer.
    let demote = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"roles": ["viewer"]}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(demote.status(), StatusCode::OK, "demoting the owner");
    let after: Value = me_with_key(&app, &key).await.json().await.expect("me body");
    let create = app
        .client
        .post(app.url("/api/v1/registry/entries"))
        .header("x-api-key", &key)
        .json(&json!({"name": "after-demotion", "category": "keys"}))
        .send()
        .await
        .expect("request sent");

    // Assert
    assert!(
        before["permissions"]
            .as_array()
            .expect("permissions")
            .contains(&json!("write")),
        "before demotion the key has write: {before}"
    );
    assert_eq!(
        after["permissions"],
        json!(["read", "search"]),
        "after demotion the key has only the viewer's permissions"
    );
    assert_eq!(
        create.status(),
        StatusCode::FORBIDDEN,
        "after demotion the key cannot create entries"
    );
}

#[tokio::test]
async fn key_limited_to_own_permissions() {
    let app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("read-key-owner", &["user"]).await;
    let key = key_of(
        &create_key(
            &app,
            &user_token,
            &json!({"name": "read-only", "permissions": ["read"]}),
        )
        .await,
    );

    let read = key_request(&app, Method::GET, "/api/v1/registry/entries", &key).await;
    let create = app
        .client
        .post(app.url("/api/v1/registry/entries"))
        .header("x-api-key", &key)
        .json(&json!({"name": "by-read-key", "category": "keys"}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(read.status(), StatusCode::OK, "a read key can list entries");
    assert_eq!(
        create.status(),
        StatusCode::FORBIDDEN,
        "a read key cannot create entries although its owner can"
    );
}

#[tokio::test]
async fn disabled_owner_key_rejected() {
    let app = TestApp::spawn().await;
    let (user_id, user_token) = app.create_user("disabled-key-owner", &["user"]).await;
    let key = key_of(&create_key(&app, &user_token, &json!({"name": "owner-disabled"})).await);

    let disable = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("request sent");
    let status = me_with_key(&app, &key).await.status();

    assert_eq!(disable.status(), StatusCode::OK, "disabling the owner");
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled user's key stops working at once"
    );
}

#[tokio::test]
async fn key_cannot_create_broader_key() {
    // A key may create keys (it has keys:manage) but none with more than itself.
    let app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("key-minter", &["user"]).await;
    let key = key_of(
        &create_key(
            &app,
            &user_token,
            &json!({"name": "minter", "permissions": ["read", "keys:manage"]}),
        )
        .await,
    );

    let broader = app
        .client
        .post(app.url("/api/v1/keys"))
        .header("x-api-key", &key)
        .json(&json!({"name": "broader", "permissions": ["read", "write"]}))
        .send()
        .await
        .expect("request sent");
    let defaulted = app
        .client
        .post(app.url("/api/v1/keys"))
        .header("x-api-key", &key)
        .json(&json!({"name": "defaulted"}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        broader.status(),
        StatusCode::FORBIDDEN,
        "a key asking for write, which it lacks, gets 403"
    );
    assert_eq!(
        defaulted.status(),
        StatusCode::CREATED,
        "a key may create a key with default permissions"
    );
    let defaulted: Value = defaulted.json().await.expect("key body");
    assert_eq!(
        defaulted["permissions"],
        json!(["read", "keys:manage"]),
        "the default is the creating key's permissions, not the owner's"
    );
}

#[tokio::test]
async fn user_cannot_create_key_for_other() {
    let app = TestApp::spawn().await;
    let (_, user_token) = app.create_user("key-for-others", &["user"]).await;
    let (other_id, _) = app.create_user("key-target", &["user"]).await;

    let response = app
        .post_json(
            "/api/v1/keys",
            &user_token,
            &json!({"name": "for-someone-else", "user_id": other_id}),
        )
        .await;

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a key for another user without keys:admin gets 403"
    );
}

#[tokio::test]
async fn user_cannot_revoke_other_users_key() {
    let app = TestApp::spawn().await;
    let (_, owner_token) = app.create_user("key-holder", &["user"]).await;
    let (_, other_token) = app.create_user("key-thief", &["user"]).await;
    let created = create_key(&app, &owner_token, &json!({"name": "not-yours"})).await;
    let id = created["id"].as_str().expect("key id");

    let revoke = app
        .request(Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&other_token))
        .send()
        .await
        .expect("request sent");
    let status = me_with_key(&app, &key_of(&created)).await.status();

    assert_eq!(
        revoke.status(),
        StatusCode::NOT_FOUND,
        "another user's key is not found, so ids cannot be probed"
    );
    assert_eq!(status, StatusCode::OK, "the key still works");
}

#[tokio::test]
async fn key_rate_above_default_needs_keys_admin() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "60")]).await;
    let (_, token) = app.create_user("rate-raiser", &["user"]).await;

    let raised = app
        .post_json(
            "/api/v1/keys",
            &token,
            &json!({"name": "fast", "rate_limit_per_minute": 1000000}),
        )
        .await;
    let lowered = app
        .post_json(
            "/api/v1/keys",
            &token,
            &json!({"name": "slow", "rate_limit_per_minute": 10}),
        )
        .await;
    let by_admin = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "fast", "rate_limit_per_minute": 1000}),
        )
        .await;

    assert_eq!(raised.status(), 403, "a user cannot raise its own key's limit");
    assert_eq!(lowered.status(), 201, "lowering is allowed");
    assert_eq!(by_admin.status(), 201, "keys:admin may raise it");
}

#[tokio::test]
async fn rotated_key_cannot_rotate_again() {
    let app = TestApp::spawn().await;
    let created: Value = app
        .post_json("/api/v1/keys", &app.admin_token, &json!({"name": "once"}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let rotate = |grace: u32| {
        app.request(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate"),
            Some(&app.admin_token),
        )
        .json(&json!({"grace_period_hours": grace}))
        .send()
    };

    assert_eq!(rotate(1).await.unwrap().status(), 201, "first rotation");
    assert_eq!(
        rotate(1).await.unwrap().status(),
        422,
        "a key in its grace period is not rotated again"
    );
}

#[tokio::test]
async fn invalid_key_burst_raises_high_event() {
    let app = TestApp::spawn().await;
    let junk = "hrk_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbcccccc";

    for _ in 0..20 {
        app.client
            .get(app.url("/auth/me"))
            .header("x-api-key", junk)
            .send()
            .await
            .unwrap();
    }

    let lines = app.audit_lines().await;
    let bursts = lines
        .iter()
        .filter(|line| line["event_type"] == "api_key_burst")
        .count();
    assert_eq!(bursts, 1, "one high event per address and window");
    let burst = lines.iter().find(|line| line["event_type"] == "api_key_burst").unwrap();
    assert_eq!(burst["severity"], "high");
}

#[tokio::test]
async fn key_admin_cannot_mint_a_key_with_an_administrators_permissions() {
    let app = TestApp::spawn().await;
    let role = json!({"name": "key_admin", "permissions": ["read", "keys:admin"]});
    let created = app.post_json("/api/v1/admin/roles", &app.admin_token, &role).await;
    assert_eq!(created.status(), 201);
    let (_, helpdesk) = app.create_user("helpdesk", &["key_admin"]).await;
    let me: Value = app.get("/auth/me", &app.admin_token).await.json().await.unwrap();
    let admin_id = me["id"].as_str().unwrap();

    let by_default = app
        .post_json(
            "/api/v1/keys",
            &helpdesk,
            &json!({"name": "quiet", "user_id": admin_id}),
        )
        .await;
    let explicit = app
        .post_json(
            "/api/v1/keys",
            &helpdesk,
            &json!({"name": "broad", "user_id": admin_id, "permissions": ["users:admin"]}),
        )
        .await;
    let within_own = app
        .post_json(
            "/api/v1/keys",
            &helpdesk,
            &json!({"name": "reader", "user_id": admin_id, "permissions": ["read"]}),
        )
        .await;

    assert_eq!(by_default.status(), 403, "the owner's permissions by default");
    assert_eq!(explicit.status(), 403, "an explicit permission the caller lacks");
    assert_eq!(within_own.status(), 201, "permissions both hold");
}

#[tokio::test]
async fn rotating_a_key_needs_every_permission_it_carries() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let limited = app
        .create_api_key(
            &alice,
            &json!({"name": "limited", "permissions": ["read", "keys:manage"]}),
        )
        .await;
    let writer = app
        .create_api_key(
            &alice,
            &json!({"name": "writer", "permissions": ["read", "write", "delete"]}),
        )
        .await;
    let rotate_path = format!("/api/v1/keys/{}/rotate", writer["id"].as_str().unwrap());

    let with_limited_key = app
        .request_with_key(Method::POST, &rotate_path, limited["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(with_limited_key.status(), 403, "the limited key lacks write and delete");

    let with_session = app.post_json(&rotate_path, &alice, &json!({})).await;
    assert_eq!(with_session.status(), 201, "the owner holds every permission");
}

/// Sends a key creation request as `token` and returns the response.
async fn try_create_key(app: &TestApp, token: &str, name: &str) -> Response {
    app.post_json("/api/v1/keys", token, &json!({"name": name})).await
}

#[tokio::test]
async fn key_limit_rejects_one_more_key() {
    let app = TestApp::spawn_with(&[("API_KEY_MAX_PER_USER", "3")]).await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let (_, bob) = app.create_user("bob", &["user"]).await;
    let first = create_key(&app, &alice, &json!({"name": "k1"})).await;
    create_key(&app, &alice, &json!({"name": "k2"})).await;
    create_key(&app, &alice, &json!({"name": "k3"})).await;

    let over = try_create_key(&app, &alice, "k4").await;
    assert_eq!(
        over.status(),
        StatusCode::CONFLICT,
        "a fourth live key over a limit of 3"
    );
    let problem: Value = over.json().await.expect("problem body");
    assert_eq!(problem["code"], "key_limit_reached", "stable problem code");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains('3'), "the detail names the limit: {detail}");
    assert!(
        detail.contains("API_KEY_MAX_PER_USER"),
        "the detail names the setting: {detail}"
    );

    let minted_by_key = app
        .request_with_key(Method::POST, "/api/v1/keys", &key_of(&first))
        .json(&json!({"name": "from-a-key"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        minted_by_key.status(),
        StatusCode::CONFLICT,
        "a key minting a key counts toward its owner's limit"
    );
    assert_eq!(
        try_create_key(&app, &bob, "bob-1").await.status(),
        StatusCode::CREATED,
        "the limit is per user"
    );

    let revoked = app
        .request(
            Method::DELETE,
            &format!("/api/v1/keys/{}", first["id"].as_str().unwrap()),
            Some(&alice),
        )
        .send()
        .await
        .expect("request sent");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT, "revoking a key");
    assert_eq!(
        try_create_key(&app, &alice, "k4").await.status(),
        StatusCode::CREATED,
        "a revoked key no longer counts"
    );
}

#[tokio::test]
async fn key_limit_ignores_expired_keys() {
    let app = TestApp::spawn_with(&[("API_KEY_MAX_PER_USER", "2")]).await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    create_key(&app, &alice, &json!({"name": "short-1", "expires_in_days": 1})).await;
    create_key(&app, &alice, &json!({"name": "short-2", "expires_in_days": 1})).await;
    assert_eq!(try_create_key(&app, &alice, "k3").await.status(), StatusCode::CONFLICT);

    app.clock.advance(Duration::days(1) + Duration::seconds(1));
    let alice = app.login("alice", USER_PASSWORD).await;

    assert_eq!(
        try_create_key(&app, &alice, "k3").await.status(),
        StatusCode::CREATED,
        "expired keys no longer count"
    );
}

#[tokio::test]
async fn key_limit_counts_rotation_grace_period() {
    let app = TestApp::spawn_with(&[("API_KEY_MAX_PER_USER", "2")]).await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let first = create_key(&app, &alice, &json!({"name": "k1"})).await;
    let rotate_path = format!("/api/v1/keys/{}/rotate", first["id"].as_str().unwrap());

    let with_grace = app
        .post_json(&rotate_path, &alice, &json!({"grace_period_hours": 1}))
        .await;
    assert_eq!(
        with_grace.status(),
        StatusCode::CREATED,
        "1 live key, room for one more"
    );
    assert_eq!(
        try_create_key(&app, &alice, "k2").await.status(),
        StatusCode::CONFLICT,
        "the old key counts during its grace period"
    );

    app.clock.advance(Duration::hours(1) + Duration::seconds(1));
    assert_eq!(
        try_create_key(&app, &alice, "k2").await.status(),
        StatusCode::CREATED,
        "the old key stops counting when its grace period ends"
    );
}

#[tokio::test]
async fn rotation_at_key_limit_needs_no_grace() {
    let app = TestApp::spawn_with(&[("API_KEY_MAX_PER_USER", "2")]).await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let first = create_key(&app, &alice, &json!({"name": "k1"})).await;
    create_key(&app, &alice, &json!({"name": "k2"})).await;
    let rotate_path = format!("/api/v1/keys/{}/rotate", first["id"].as_str().unwrap());

    let with_grace = app
        .post_json(&rotate_path, &alice, &json!({"grace_period_hours": 1}))
        .await;
    assert_eq!(
        with_grace.status(),
        StatusCode::CONFLICT,
        "a grace period adds a third live key"
    );
    assert_eq!(problem_code(with_grace).await, "key_limit_reached");
    assert_eq!(
        me_with_key(&app, &key_of(&first)).await.status(),
        StatusCode::OK,
        "a refused rotation leaves the old key working"
    );

    let without_grace = app.post_json(&rotate_path, &alice, &json!({})).await;
    assert_eq!(
        without_grace.status(),
        StatusCode::CREATED,
        "without a grace period the replacement takes the old key's place"
    );
    let replacement: Value = without_grace.json().await.expect("rotated key body");
    assert_eq!(
        me_with_key(&app, &key_of(&first)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_with_key(&app, &key_of(&replacement)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn key_limit_holds_under_concurrent_creation() {
    let app = TestApp::spawn_with(&[("API_KEY_MAX_PER_USER", "5")]).await;
    let (_, alice) = app.create_user("alice", &["user"]).await;

    let requests = (0..20).map(|i| {
        let name = format!("parallel-{i}");
        let alice = alice.clone();
        let app = &app;
        async move { try_create_key(app, &alice, &name).await.status() }
    });
    let statuses = futures::future::join_all(requests).await;

    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!(created, 5, "exactly the limit is created: {statuses:?}");
    assert_eq!(refused, 15, "every other request gets 409: {statuses:?}");
    let listed: Value = app.get("/api/v1/keys", &alice).await.json().await.expect("list body");
    assert_eq!(listed["items"].as_array().expect("items").len(), 5, "5 keys stored");
}

#[tokio::test]
async fn concurrent_rotations_issue_one_replacement() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let key = create_key(&app, &alice, &json!({"name": "raced"})).await;
    let rotate_path = format!("/api/v1/keys/{}/rotate", key["id"].as_str().unwrap());

    let requests = (0..8).map(|_| {
        let body = json!({"grace_period_hours": 1});
        let (app, alice, path) = (&app, &alice, &rotate_path);
        async move { app.post_json(path, alice, &body).await.status() }
    });
    let statuses = futures::future::join_all(requests).await;

    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!(created, 1, "one rotation wins: {statuses:?}");
    let listed: Value = app.get("/api/v1/keys", &alice).await.json().await.expect("list body");
    assert_eq!(
        listed["items"].as_array().expect("items").len(),
        2,
        "the old key and one replacement"
    );
}

#[tokio::test]
async fn key_creation_audits_creating_key() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let parent = create_key(&app, &alice, &json!({"name": "parent"})).await;
    let parent_id = parent["id"].as_str().unwrap();

    let child = app
        .request_with_key(Method::POST, "/api/v1/keys", &key_of(&parent))
        .json(&json!({"name": "child"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        child.status(),
        StatusCode::CREATED,
        "a key with keys:manage creates a key"
    );
    let child: Value = child.json().await.expect("key body");
    let child_id = child["id"].as_str().unwrap();

    let lines = app.audit_lines().await;
    let created_by_parent: Vec<&Value> = lines
        .iter()
        .filter(|line| line["event_type"] == "api_key_created" && line["api_key_id"] == parent_id)
        .collect();
    assert_eq!(created_by_parent.len(), 1, "one creation made with the parent key");
    let description = created_by_parent[0]["description"].as_str().unwrap();
    assert_eq!(
        description.split(' ').nth(2),
        Some(child_id),
        "the third word of the description is the new key's id: {description}"
    );
}

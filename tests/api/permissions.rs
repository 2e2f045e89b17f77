//! Role-based access control: the route matrix of the built-in roles,
//! entry ownership, who may read `sensitive`, and the escalation rules.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp, USER_PASSWORD};

/// The routes of the matrix. `DeleteEntry` runs last because it removes the
/// entry that the other entry routes act on.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    ListEntries,
    CreateEntry,
    GetEntry,
    PutEntry,
    PatchEntry,
    Search,
    Analytics,
    Import,
    Export,
    CreateKey,
    ListKeys,
    ListUsers,
    CreateUser,
    ListRoles,
    CreateRole,
    DeleteEntry,
}

/// Which roles may call each route, and the status of a permitted call.
/// Columns: admin, user, viewer, api_client. The entry routes act on an entry
/// that the caller owns.
const MATRIX: &[(Endpoint, u16, [bool; 4])] = &[
    (Endpoint::ListEntries, 200, [true, true, true, true]),
    (Endpoint::CreateEntry, 201, [true, true, false, true]),
    (Endpoint::GetEntry, 200, [true, true, true, true]),
    (Endpoint::PutEntry, 200, [true, true, false, true]),
    (Endpoint::PatchEntry, 200, [true, true, false, true]),
    (Endpoint::Search, 200, [true, true, true, true]),
    (Endpoint::Analytics, 200, [true, true, false, false]),
    (Endpoint::Import, 200, [true, true, false, true]),
    (Endpoint::Export, 200, [true, true, true, true]),
    (Endpoint::CreateKey, 201, [true, true, false, false]),
    (Endpoint::ListKeys, 200, [true, true, false, false]),
    (Endpoint::ListUsers, 200, [true, false, false, false]),
    (Endpoint::CreateUser, 201, [true, false, false, false]),
    (Endpoint::ListRoles, 200, [true, false, false, false]),
    (Endpoint::CreateRole, 201, [true, false, false, false]),
    (Endpoint::DeleteEntry, 204, [true, true, false, false]),
];

const ROLES: [&str; 4] = ["admin", "user", "viewer", "api_client"];

/// Builds the request for `endpoint`, made by the holder of `role` on the
/// entry `entry_id` that they own.
/// How the matrix authenticates: a bearer token or an API key of the same user.
#[derive(Clone, Copy)]
enum Credential<'a> {
    Bearer(&'a str),
    Key(&'a str),
}

fn request(app: &TestApp, method: Method, path: &str, credential: Credential) -> RequestBuilder {
    match credential {
        Credential::Bearer(token) => app.request(method, path, Some(token)),
        Credential::Key(key) => app.request(method, path, None).header("x-api-key", key),
    }
}

fn build_request(
    app: &TestApp,
    endpoint: Endpoint,
    role: &str,
    credential: Credential,
    entry_id: &str,
) -> RequestBuilder {
    let entry_path = format!("/api/v1/registry/entries/{entry_id}");
    let slug = role.replace('_', "-");
    match endpoint {
        Endpoint::ListEntries => request(app, Method::GET, "/api/v1/registry/entries", credential),
        Endpoint::CreateEntry => request(app, Method::POST, "/api/v1/registry/entries", credential)
            .json(&json!({"name": format!("created-by-{slug}"), "category": "matrix"})),
        Endpoint::GetEntry => request(app, Method::GET, &entry_path, credential),
        Endpoint::PutEntry => request(app, Method::PUT, &entry_path, credential)
            .json(&json!({"name": format!("owned-by-{slug}"), "category": "matrix", "title": "replaced"})),
        Endpoint::PatchEntry => request(app, Method::PATCH, &entry_path, credential)
            .header("content-type", "application/merge-patch+json")
            .body(json!({"title": "patched"}).to_string()),
        Endpoint::Search => request(app, Method::GET, "/api/v1/registry/search?q=owned", credential),
        Endpoint::Analytics => request(app, Method::GET, "/api/v1/registry/analytics", credential),
        Endpoint::Import => request(app, Method::POST, "/api/v1/registry/import", credential)
            .header("content-type", "application/x-ndjson")
            .body(format!(
                "{}\n",
                json!({"name": format!("imported-by-{slug}"), "category": "matrix"})
            )),
        Endpoint::Export => request(app, Method::GET, "/api/v1/registry/export", credential),
        Endpoint::CreateKey => {
            request(app, Method::POST, "/api/v1/keys", credential).json(&json!({"name": format!("key-of-{slug}")}))
        }
        Endpoint::ListKeys => request(app, Method::GET, "/api/v1/keys", credential),
        Endpoint::ListUsers => request(app, Method::GET, "/api/v1/admin/users", credential),
        Endpoint::CreateUser => request(app, Method::POST, "/api/v1/admin/users", credential)
            .json(&json!({"username": format!("made-by-{slug}"), "password": USER_PASSWORD, "roles": ["viewer"]})),
        Endpoint::ListRoles => request(app, Method::GET, "/api/v1/admin/roles", credential),
        Endpoint::CreateRole => request(app, Method::POST, "/api/v1/admin/roles", credential)
            .json(&json!({"name": format!("role-by-{slug}"), "permissions": ["read"], "inherits": []})),
        Endpoint::DeleteEntry => request(app, Method::DELETE, &entry_path, credential),
    }
}

async fn set_roles(app: &TestApp, user_id: &str, roles: &[&str]) {
    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"roles": roles}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "setting roles {roles:?} on {user_id}"
    );
}

/// Creates a holder of `role` who owns one entry. The entry is created while
/// the account still has the `user` role, because a viewer cannot create one.
async fn subject_with_entry(app: &TestApp, role: &str) -> (String, String, String) {
    let slug = role.replace('_', "-");
    let (user_id, token) = app.create_user(&format!("subject-{slug}"), &["user"]).await;
    let entry = app
        .create_entry(
            &token,
            &json!({"name": format!("owned-by-{slug}"), "category": "matrix"}),
        )
        .await;
    if role != "user" {
        set_roles(app, &user_id, &[role]).await;
    }
    (user_id, token, entry["id"].as_str().expect("entry id").to_string())
}

async fn check_role_matrix(role: &str, with_api_key: bool) {
    let app = TestApp::spawn().await;
    let column = ROLES
        .iter()
        .position(|known| *known == role)
        .expect("role of the matrix");
    let (user_id, token, entry_id) = subject_with_entry(&app, role).await;
    // The administrator issues the subject a key with the owner's permissions.
    let key = if with_api_key {
        let created = app
            .post_json(
                "/api/v1/keys",
                &app.admin_token,
                &json!({"name": "matrix", "user_id": user_id}),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED, "key for {role}");
        let body: Value = created.json().await.expect("key body");
        Some(body["key"].as_str().expect("key").to_string())
    } else {
        None
    };
    let credential = match &key {
        Some(key) => Credential::Key(key),
        None => Credential::Bearer(&token),
    };
    let kind = if with_api_key { "API key" } else { "bearer token" };

    for (endpoint, success, allowed) in MATRIX {
        let response = build_request(&app, *endpoint, role, credential, &entry_id)
            .send()
            .await
            .expect("request sent");
        let expected = if allowed[column] { *success } else { 403 };

        assert_eq!(
            response.status().as_u16(),
            expected,
            "role {role} with {kind} on {endpoint:?}"
        );
    }
}

#[tokio::test]
async fn matrix_admin() {
    check_role_matrix("admin", false).await;
}

#[tokio::test]
async fn matrix_admin_api_key() {
    check_role_matrix("admin", true).await;
}

#[tokio::test]
async fn matrix_user() {
    check_role_matrix("user", false).await;
}

#[tokio::test]
async fn matrix_user_api_key() {
    check_role_matrix("user", true).await;
}

#[tokio::test]
async fn matrix_viewer() {
    check_role_matrix("viewer", false).await;
}

#[tokio::test]
async fn matrix_viewer_api_key() {
    check_role_matrix("viewer", true).await;
}

#[tokio::test]
async fn matrix_api_client() {
    check_role_matrix("api_client", false).await;
}

#[tokio::test]
async fn matrix_api_client_api_key() {
    check_role_matrix("api_client", true).await;
}

#[tokio::test]
async fn other_user_cannot_change_entry() {
    // Arrange
    let app = TestApp::spawn().await;
    let (_, owner_token) = app.create_user("entry-owner", &["user"]).await;
    let (_, other_token) = app.create_user("entry-other", &["user"]).await;
    let entry = app
        .create_entry(
            &owner_token,
            &json!({"name": "owned", "category": "ownership", "title": "original"}),
        )
        .await;
    let path = format!("/api/v1/registry/entries/{}", entry["id"].as_str().expect("entry id"));

    // Act
    let put = app
        .request(Method::PUT, &path, Some(&other_token))
        .json(&json!({"name": "owned", "category": "ownership", "title": "taken over"}))
        .send()
        .await
        .expect("request sent");
    let patch = app
        .request(Method::PATCH, &path, Some(&other_token))
        .json(&json!({"title": "taken over"}))
        .send()
        .await
        .expect("request sent");
    let delete = app
        .request(Method::DELETE, &path, Some(&other_token))
        .send()
        .await
        .expect("request sent");
    let after = app.get(&path, &owner_token).await;

    // Assert
    assert_eq!(put.status(), StatusCode::FORBIDDEN, "another user's PUT gives 403");
    assert_eq!(patch.status(), StatusCode::FORBIDDEN, "another user's PATCH gives 403");
    assert_eq!(
        delete.status(),
        StatusCode::FORBIDDEN,
        "another user's DELETE gives 403"
    );
    let body: Value = after.json().await.expect("entry body");
    assert_eq!(body["title"], "original", "the entry is unchanged");
}

#[tokio::test]
async fn admin_can_change_any_entry() {
    let app = TestApp::spawn().await;
    let (_, owner_token) = app.create_user("managed-owner", &["user"]).await;
    let entry = app
        .create_entry(&owner_token, &json!({"name": "managed", "category": "ownership"}))
        .await;
    let path = format!("/api/v1/registry/entries/{}", entry["id"].as_str().expect("entry id"));

    let put = app
        .request(Method::PUT, &path, Some(&app.admin_token))
        .json(&json!({"name": "managed", "category": "ownership", "title": "replaced by admin"}))
        .send()
        .await
        .expect("request sent");
    let patch = app
        .request(Method::PATCH, &path, Some(&app.admin_token))
        .json(&json!({"title": "patched by admin"}))
        .send()
        .await
        .expect("request sent");
    let delete = app
        .request(Method::DELETE, &path, Some(&app.admin_token))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        put.status(),
        StatusCode::OK,
        "an admin's PUT on another's entry succeeds"
    );
    assert_eq!(
        patch.status(),
        StatusCode::OK,
        "an admin's PATCH on another's entry succeeds"
    );
    assert_eq!(
        delete.status(),
        StatusCode::NO_CONTENT,
        "an admin's DELETE on another's entry succeeds"
    );
}

/// Creates an owner, another `user` and an entry of the owner's whose
/// `sensitive` contains `secret`. Returns both tokens and the entry's path.
async fn entry_with_secret(app: &TestApp, prefix: &str, secret: &str) -> (String, String, String) {
    let (_, owner_token) = app.create_user(&format!("{prefix}-owner"), &["user"]).await;
    let (_, other_token) = app.create_user(&format!("{prefix}-other"), &["user"]).await;
    let entry = app
        .create_entry(
            &owner_token,
            &json!({"name": format!("{prefix}-entry"), "category": "ownership", "sensitive": {"deploy_token": secret}}),
        )
        .await;
    let path = format!("/api/v1/registry/entries/{}", entry["id"].as_str().expect("entry id"));
    (owner_token, other_token, path)
}

fn assert_sees_secret(entry: &Value, secret: &str, reader: &str) {
    assert_eq!(entry["sensitive"]["deploy_token"], secret, "{reader} sees sensitive");
}

#[tokio::test]
async fn sensitive_shown_to_owner_and_admin_only() {
    // Arrange
    let app = TestApp::spawn().await;
    let secret_value = "deploy-token-4f1d9c";
    let (owner_token, other_token, path) = entry_with_secret(&app, "secret", secret_value).await;

    // Act
    let as_owner: Value = app.get(&path, &owner_token).await.json().await.expect("entry body");
    let as_admin: Value = app.get(&path, &app.admin_token).await.json().await.expect("entry body");
    let as_other: Value = app.get(&path, &other_token).await.json().await.expect("entry body");
    let list_as_other = app
        .get("/api/v1/registry/entries", &other_token)
        .await
        .text()
        .await
        .expect("list text");
    let search_as_other = app
        .get("/api/v1/registry/search?q=secret", &other_token)
        .await
        .text()
        .await
        .expect("search text");
    let export_as_other = app
        .get("/api/v1/registry/export", &other_token)
        .await
        .text()
        .await
        .expect("export text");

    // Assert
    assert_sees_secret(&as_owner, secret_value, "the owner");
    assert_sees_secret(&as_admin, secret_value, "an admin");
    assert!(
        as_other.get("sensitive").is_none(),
        "another user's GET has no sensitive: {as_other}"
    );
    assert!(
        !list_as_other.contains(secret_value),
        "another user's list does not contain the secret"
    );
    assert!(
        !search_as_other.contains(secret_value),
        "another user's search does not contain the secret"
    );
    assert!(
        !export_as_other.contains(secret_value),
        "another user's export does not contain the secret"
    );
}

#[tokio::test]
async fn cached_read_keeps_sensitive_rules() {
    // Arrange: another user's read puts the entry in the entry cache first.
    let app = TestApp::spawn().await;
    let secret_value = "deploy-token-7e2a41";
    let (owner_token, other_token, path) = entry_with_secret(&app, "cache", secret_value).await;

    // Act
    let first = app.get(&path, &other_token).await;
    let content_type = first.headers().get("content-type").cloned();
    let etag = first.headers().get("etag").cloned();
    let as_other = first.text().await.expect("entry text");
    let as_owner: Value = app.get(&path, &owner_token).await.json().await.expect("entry body");
    let as_admin: Value = app.get(&path, &app.admin_token).await.json().await.expect("entry body");
    let again_as_other = app.get(&path, &other_token).await.text().await.expect("entry text");

    // Assert
    assert!(
        !as_other.contains(secret_value),
        "another user's first read: {as_other}"
    );
    assert_eq!(
        content_type.as_ref().and_then(|value| value.to_str().ok()),
        Some("application/json")
    );
    assert_eq!(etag.as_ref().and_then(|value| value.to_str().ok()), Some("\"1\""));
    assert_sees_secret(&as_owner, secret_value, "the owner, from a cached entry,");
    assert_sees_secret(&as_admin, secret_value, "an admin, from a cached entry,");
    assert!(
        !again_as_other.contains(secret_value),
        "another user's read after the owner's: {again_as_other}"
    );
}

#[tokio::test]
async fn admin_cannot_change_own_roles() {
    let app = TestApp::spawn().await;
    let me: Value = app
        .get("/auth/me", &app.admin_token)
        .await
        .json()
        .await
        .expect("me body");
    let admin_id = me["id"].as_str().expect("admin id");

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{admin_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"roles": ["admin", "user"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "an admin changing their own roles gets 403"
    );
}

#[tokio::test]
async fn user_cannot_patch_users() {
    let app = TestApp::spawn().await;
    let (user_id, user_token) = app.create_user("self-promoter", &["user"]).await;

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&user_token),
        )
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a user granting themselves admin gets 403"
    );
}

/// Creates a custom role through the admin API as the administrator.
async fn create_role(app: &TestApp, name: &str, permissions: &[&str]) {
    let response = app
        .post_json(
            "/api/v1/admin/roles",
            &app.admin_token,
            &json!({"name": name, "permissions": permissions, "inherits": []}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "creating role {name} with {permissions:?}"
    );
}

async fn admin_id(app: &TestApp) -> String {
    let me: Value = app
        .get("/auth/me", &app.admin_token)
        .await
        .json()
        .await
        .expect("me body");
    me["id"].as_str().expect("admin id").to_string()
}

#[tokio::test]
async fn last_admin_cannot_be_disabled() {
    // Arrange: a user administrator who is not an administrator.
    let app = TestApp::spawn().await;
    create_role(&app, "user-manager", &["users:admin"]).await;
    let (_, manager_token) = app.create_user("manager", &["user-manager"]).await;
    let admin_id = admin_id(&app).await;

    // Act
    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{admin_id}"),
            Some(&manager_token),
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("request sent");

    // Assert
    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "disabling the last active admin gives 409"
    );
    assert_eq!(
        problem_code(response).await,
        "last_admin",
        "the 409 has code last_admin"
    );
}

#[tokio::test]
async fn last_admin_cannot_be_demoted() {
    // The new role is one the manager holds, so only the last-admin rule applies.
    let app = TestApp::spawn().await;
    create_role(&app, "user-manager", &["users:admin"]).await;
    let (_, manager_token) = app.create_user("manager", &["user-manager"]).await;
    let admin_id = admin_id(&app).await;

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{admin_id}"),
            Some(&manager_token),
        )
        .json(&json!({"roles": ["user-manager"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::CONFLICT,
        "demoting the last active admin gives 409"
    );
    assert_eq!(
        problem_code(response).await,
        "last_admin",
        "the 409 has code last_admin"
    );
}

#[tokio::test]
async fn second_admin_can_be_disabled() {
    let app = TestApp::spawn().await;
    let (second_admin_id, _) = app.create_user("second-admin", &["admin"]).await;

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{second_admin_id}"),
            Some(&app.admin_token),
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an admin who is not the last may be disabled"
    );
}

#[tokio::test]
async fn user_manager_cannot_grant_unheld_permissions() {
    let app = TestApp::spawn().await;
    create_role(&app, "user-manager", &["users:admin"]).await;
    let (_, manager_token) = app.create_user("manager", &["user-manager"]).await;
    let (target_id, _) = app.create_user("promotion-target", &["viewer"]).await;

    let promote = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{target_id}"),
            Some(&manager_token),
        )
        .json(&json!({"roles": ["admin"]}))
        .send()
        .await
        .expect("request sent");
    let create_admin = app
        .post_json(
            "/api/v1/admin/users",
            &manager_token,
            &json!({"username": "new-admin", "password": USER_PASSWORD, "roles": ["admin"]}),
        )
        .await;
    let grant_write = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{target_id}"),
            Some(&manager_token),
        )
        .json(&json!({"roles": ["user"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        promote.status(),
        StatusCode::FORBIDDEN,
        "a user manager promoting someone to admin gets 403"
    );
    assert_eq!(
        create_admin.status(),
        StatusCode::FORBIDDEN,
        "a user manager creating an admin gets 403"
    );
    assert_eq!(
        grant_write.status(),
        StatusCode::FORBIDDEN,
        "a user manager granting write, which they lack, gets 403"
    );
}

#[tokio::test]
async fn user_manager_cannot_change_own_roles() {
    let app = TestApp::spawn().await;
    create_role(&app, "user-manager", &["users:admin"]).await;
    let (manager_id, manager_token) = app.create_user("manager", &["user-manager"]).await;

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{manager_id}"),
            Some(&manager_token),
        )
        .json(&json!({"roles": ["user-manager", "viewer"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a user manager changing their own roles gets 403"
    );
}

#[tokio::test]
async fn role_manager_cannot_create_broader_role() {
    let app = TestApp::spawn().await;
    create_role(&app, "role-manager", &["roles:admin"]).await;
    let (_, manager_token) = app.create_user("role-maker", &["role-manager"]).await;

    let with_users_admin = app
        .post_json(
            "/api/v1/admin/roles",
            &manager_token,
            &json!({"name": "sneaky-users", "permissions": ["users:admin"], "inherits": []}),
        )
        .await;
    let with_everything = app
        .post_json(
            "/api/v1/admin/roles",
            &manager_token,
            &json!({"name": "sneaky-all", "permissions": ["*"], "inherits": []}),
        )
        .await;
    let inheriting_admin = app
        .post_json(
            "/api/v1/admin/roles",
            &manager_token,
            &json!({"name": "sneaky-inherit", "permissions": [], "inherits": ["admin"]}),
        )
        .await;
    let within_own = app
        .post_json(
            "/api/v1/admin/roles",
            &manager_token,
            &json!({"name": "role-helper", "permissions": ["roles:admin"], "inherits": []}),
        )
        .await;

    assert_eq!(
        with_users_admin.status(),
        StatusCode::FORBIDDEN,
        "a role manager creating a role with users:admin gets 403"
    );
    assert_eq!(
        with_everything.status(),
        StatusCode::FORBIDDEN,
        "a role manager creating a role with * gets 403"
    );
    assert_eq!(
        inheriting_admin.status(),
        StatusCode::FORBIDDEN,
        "a role manager creating a role that inherits admin gets 403"
    );
    assert_eq!(
        within_own.status(),
        StatusCode::CREATED,
        "a role manager may create a role within their own permissions"
    );
}

#[tokio::test]
async fn user_manager_cannot_assign_unheld_custom_role() {
    let app = TestApp::spawn().await;
    create_role(&app, "user-manager", &["users:admin"]).await;
    create_role(&app, "auditor", &["audit:read"]).await;
    let (_, manager_token) = app.create_user("manager", &["user-manager"]).await;
    let (target_id, _) = app.create_user("audit-candidate", &["viewer"]).await;

    let response = app
        .request(
            Method::PATCH,
            &format!("/api/v1/admin/users/{target_id}"),
            Some(&manager_token),
        )
        .json(&json!({"roles": ["auditor"]}))
        .send()
        .await
        .expect("request sent");

    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a user manager assigning a role with audit:read, which they lack, gets 403"
    );
}

#[tokio::test]
async fn demoted_owner_key_loses_write_at_once() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("demoted", &["user"]).await;
    let created: Value = app
        .post_json(
            "/api/v1/keys",
            &token,
            &json!({"name": "writer", "permissions": ["read", "write"]}),
        )
        .await
        .json()
        .await
        .expect("key body");
    let key = created["key"].as_str().expect("key").to_string();
    let write = |name: &str| {
        app.request(Method::POST, "/api/v1/registry/entries", None)
            .header("x-api-key", key.clone())
            .json(&json!({"name": name, "category": "matrix"}))
            .send()
    };
    assert_eq!(
        write("before").await.expect("sent").status(),
        StatusCode::CREATED,
        "the key writes"
    );

    set_roles(&app, &user_id, &["viewer"]).await;

    assert_eq!(
        write("after").await.expect("sent").status(),
        StatusCode::FORBIDDEN,
        "the next write with the key is refused"
    );
}

async fn create_chain_role(app: &TestApp, name: &str, permissions: &[&str], inherits: &[&str]) -> reqwest::Response {
    let body = json!({"name": name, "permissions": permissions, "inherits": inherits});
    app.post_json("/api/v1/admin/roles", &app.admin_token, &body).await
}

#[tokio::test]
async fn deep_inheritance_resolves_and_cycle_rejected() {
    let app = TestApp::spawn().await;
    assert_eq!(
        create_chain_role(&app, "chain-0", &["analytics:read"], &[])
            .await
            .status(),
        StatusCode::CREATED
    );
    for depth in 1..300 {
        let parent = format!("chain-{}", depth - 1);
        let response = create_chain_role(&app, &format!("chain-{depth}"), &[], &[&parent]).await;
        assert_eq!(response.status(), StatusCode::CREATED, "chain-{depth}");
    }
    let (_, token) = app.create_user("deep", &["chain-299"]).await;
    assert_eq!(
        app.get("/api/v1/registry/analytics", &token).await.status(),
        StatusCode::OK,
        "300 levels resolve"
    );

    let loop_back = app
        .request(Method::PUT, "/api/v1/admin/roles/chain-0", Some(&app.admin_token))
        .json(&json!({"permissions": ["analytics:read"], "inherits": ["chain-299"]}))
        .send()
        .await
        .expect("sent");

    assert_eq!(
        loop_back.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a 300-role loop is rejected"
    );
    let role: Value = app
        .get("/api/v1/admin/roles/chain-0", &app.admin_token)
        .await
        .json()
        .await
        .expect("role");
    assert_eq!(role["inherits"], json!([]), "the graph is unchanged");
}

#[tokio::test]
async fn self_inheritance_rejected() {
    let app = TestApp::spawn().await;
    let response = app
        .post_json(
            "/api/v1/admin/roles",
            &app.admin_token,
            &json!({"name": "narcissus", "permissions": ["read"], "inherits": ["narcissus"]}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// The permission is checked before the body is parsed, so that a caller
/// without it gets 403 (and a permission-denial event) whatever it sends.
#[tokio::test]
async fn admin_routes_deny_before_reading_the_body() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app.create_user("viewer-probe", &["viewer"]).await;
    let routes = [
        (Method::POST, "/api/v1/admin/users"),
        (
            Method::PATCH,
            "/api/v1/admin/users/00000000-0000-0000-0000-000000000000",
        ),
        (Method::POST, "/api/v1/admin/roles"),
        (Method::PUT, "/api/v1/admin/roles/some-role"),
        (Method::POST, "/api/v1/admin/audit/events"),
        (Method::POST, "/api/v1/admin/emergency"),
        (Method::PUT, "/api/v1/admin/logging"),
    ];

    for (method, path) in routes {
        for body in ["{}", "not json"] {
            let response = app
                .request(method.clone(), path, Some(&viewer))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path} with {body}");
        }
    }
}

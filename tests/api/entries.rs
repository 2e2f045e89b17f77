//! Entry lifecycle over HTTP: create, read, replace, merge-patch, conditional
//! requests with `If-Match`, delete, and rejection of invalid bodies and ids.

use reqwest::{header, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{list_all_entries, problem_code, TestApp};

const ENTRIES: &str = "/api/v1/registry/entries";

fn requests_entry() -> Value {
    json!({
        "name": "requests",
        "category": "python-package",
        "title": "requests",
        "description": "Python HTTP for Humans.",
        "status": "active",
        "version": "2.32.3",
        "tags": ["python", "http"],
        "metadata": {"ecosystem": "pypi", "stars": 52000},
    })
}

fn entry_path(id: &str) -> String {
    format!("{ENTRIES}/{id}")
}

fn header_text(response: &Response, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

fn is_rfc3339_utc(text: &str) -> bool {
    let parsed = chrono::DateTime::parse_from_rfc3339(text);
    parsed.is_ok_and(|time| time.offset().local_minus_utc() == 0) && text.ends_with('Z')
}

/// Field names listed in the `errors` member of a 422 problem body.
fn error_fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|error| error["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn send_json(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: &str,
    body: &Value,
) -> Response {
    app.request(method, path, Some(token))
        .header(header::CONTENT_TYPE, content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("request sent")
}

#[tokio::test]
async fn create_returns_201_with_server_fields() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("alice", &["user"]).await;

    let response = app.post_json(ENTRIES, &token, &requests_entry()).await;

    assert_eq!(response.status(), StatusCode::CREATED, "create status");
    let location = header_text(&response, header::LOCATION);
    let etag = header_text(&response, header::ETAG);
    let content_type = header_text(&response, header::CONTENT_TYPE);
    let body: Value = response.json().await.expect("entry body");
    let id = body["id"].as_str().expect("id is a string");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id {id} is not a UUID");
    assert_eq!(
        location.as_deref(),
        Some(entry_path(id).as_str()),
        "Location names the new entry"
    );
    assert!(
        etag.as_deref()
            .is_some_and(|tag| tag.starts_with('"') && tag.ends_with('"')),
        "ETag is a quoted entity tag: {etag:?}"
    );
    assert_eq!(content_type.as_deref(), Some("application/json"), "entry content type");
    assert_eq!(body["owner_id"], json!(user_id), "owner is the caller");
    assert_eq!(body["revision"], json!(1), "first revision");
    for field in ["created_at", "updated_at"] {
        let text = body[field].as_str().unwrap_or_default();
        assert!(is_rfc3339_utc(text), "{field} `{text}` is not RFC 3339 UTC");
    }
    for (field, value) in requests_entry().as_object().expect("object") {
        assert_eq!(&body[field], value, "field {field} echoed");
    }
}

#[tokio::test]
async fn create_defaults_optional_fields() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let body = app
        .create_entry(&token, &json!({"name": "bare", "category": "service"}))
        .await;

    assert_eq!(body["status"], "active", "default status");
    assert_eq!(body["tags"], json!([]), "default tags");
    assert_eq!(body["metadata"], json!({}), "default metadata");
    assert_eq!(body["title"], "bare", "title defaults to the name");
}

#[tokio::test]
async fn get_returns_created_entry_with_etag() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.post_json(ENTRIES, &token, &requests_entry()).await;
    let location = header_text(&created, header::LOCATION).expect("Location header");
    let created_etag = header_text(&created, header::ETAG);
    let created_body: Value = created.json().await.expect("entry body");

    let response = app.get(&location, &token).await;

    assert_eq!(response.status(), StatusCode::OK, "get status");
    assert_eq!(
        header_text(&response, header::ETAG),
        created_etag,
        "ETag unchanged since create"
    );
    let body: Value = response.json().await.expect("entry body");
    assert_eq!(body, created_body, "stored entry equals the create response");
}

#[tokio::test]
async fn viewer_reads_entry_of_another_user() {
    let app = TestApp::spawn().await;
    let (_, owner) = app.create_user("alice", &["user"]).await;
    let (_, viewer) = app.create_user("victor", &["viewer"]).await;
    let created = app.create_entry(&owner, &requests_entry()).await;

    let response = app.get(&entry_path(created["id"].as_str().unwrap()), &viewer).await;

    assert_eq!(response.status(), StatusCode::OK, "viewer holds `read`");
}

#[tokio::test]
async fn create_duplicate_category_and_name_conflicts() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    app.create_entry(&token, &requests_entry()).await;

    let duplicate = app.post_json(ENTRIES, &token, &requests_entry()).await;
    let status = duplicate.status();
    let code = problem_code(duplicate).await;

    assert_eq!(status, StatusCode::CONFLICT, "duplicate status");
    assert_eq!(code, "entry_exists", "duplicate code");
    let mut other_category = requests_entry();
    other_category["category"] = json!("mirror");
    let response = app.post_json(ENTRIES, &token, &other_category).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "same name in another category is allowed"
    );
    assert_eq!(
        list_all_entries(&app, &token).await.len(),
        2,
        "exactly two entries stored"
    );
}

#[tokio::test]
async fn put_replaces_entry_and_increments_revision() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());
    let replacement =
        json!({"name": "requests", "category": "python-package", "description": "Replaced.", "status": "deprecated"});

    let response = send_json(&app, Method::PUT, &path, &token, "application/json", &replacement).await;

    assert_eq!(response.status(), StatusCode::OK, "put status");
    assert_eq!(
        header_text(&response, header::ETAG).as_deref(),
        Some("\"2\""),
        "ETag follows the revision"
    );
    let body: Value = response.json().await.expect("entry body");
    assert_eq!(body["revision"], json!(2), "revision incremented");
    assert_eq!(body["description"], "Replaced.", "description replaced");
    assert_eq!(body["status"], "deprecated", "status replaced");
    assert_eq!(body["tags"], json!([]), "omitted tags cleared");
    assert_eq!(body["metadata"], json!({}), "omitted metadata cleared");
    assert_eq!(body["version"], Value::Null, "omitted version cleared");
    assert_eq!(body["id"], created["id"], "id kept");
    assert_eq!(body["created_at"], created["created_at"], "created_at kept");
    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, body, "replacement persisted");
}

#[tokio::test]
async fn patch_merge_patch_removes_null_metadata_key() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());
    let patch = json!({"description": "Patched.", "metadata": {"stars": null, "license": "Apache-2.0"}});

    let response = send_json(
        &app,
        Method::PATCH,
        &path,
        &token,
        "application/merge-patch+json",
        &patch,
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK, "patch status");
    let body: Value = response.json().await.expect("entry body");
    assert_eq!(
        body["metadata"],
        json!({"ecosystem": "pypi", "license": "Apache-2.0"}),
        "null removed `stars`, other keys merged"
    );
    assert_eq!(body["description"], "Patched.", "description patched");
    assert_eq!(body["tags"], created["tags"], "untouched tags kept");
    assert_eq!(body["version"], created["version"], "untouched version kept");
    assert_eq!(body["revision"], json!(2), "revision incremented");
    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, body, "patch persisted");
}

#[tokio::test]
async fn patch_accepts_application_json() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());

    let response = send_json(
        &app,
        Method::PATCH,
        &path,
        &token,
        "application/json",
        &json!({"tags": ["http"], "version": null}),
    )
    .await;

    assert_eq!(response.status(), StatusCode::OK, "patch status");
    let body: Value = response.json().await.expect("entry body");
    assert_eq!(body["tags"], json!(["http"]), "array replaced as a whole");
    assert_eq!(body["version"], Value::Null, "null removed the version");
    assert_eq!(body["metadata"], created["metadata"], "metadata untouched");
}

#[tokio::test]
async fn patch_rejects_server_and_unknown_fields() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());
    let patches = [
        json!({"owner_id": uuid::Uuid::new_v4().to_string()}),
        json!({"revision": 99}),
        json!({"id": uuid::Uuid::new_v4().to_string()}),
        json!({"created_at": "2000-01-01T00:00:00Z"}),
        json!({"admin": true}),
        json!({"roles": ["admin"]}),
        json!(["not", "an", "object"]),
    ];

    for patch in patches {
        let response = send_json(
            &app,
            Method::PATCH,
            &path,
            &token,
            "application/merge-patch+json",
            &patch,
        )
        .await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "patch {patch} status");
        assert_eq!(code, "validation_failed", "patch {patch} code");
    }

    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, created, "rejected patches left the entry unchanged");
}

#[tokio::test]
async fn stale_if_match_gets_412_and_keeps_entry() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());
    let first = send_json(
        &app,
        Method::PATCH,
        &path,
        &token,
        "application/json",
        &json!({"description": "Second."}),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK, "setup patch");
    let current: Value = first.json().await.expect("entry body");
    let replacement = json!({"name": "requests", "category": "python-package", "description": "Lost update."});

    let put = app
        .request(Method::PUT, &path, Some(&token))
        .header(header::IF_MATCH, "\"1\"")
        .json(&replacement)
        .send()
        .await
        .expect("request sent");
    let put_status = put.status();
    let put_code = problem_code(put).await;
    let patch = app
        .request(Method::PATCH, &path, Some(&token))
        .header(header::IF_MATCH, "\"1\"")
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({"description": "Lost update."}).to_string())
        .send()
        .await
        .expect("request sent");
    let patch_status = patch.status();
    let delete = app
        .request(Method::DELETE, &path, Some(&token))
        .header(header::IF_MATCH, "\"1\"")
        .send()
        .await
        .expect("request sent");
    let delete_status = delete.status();

    assert_eq!(put_status, StatusCode::PRECONDITION_FAILED, "stale PUT status");
    assert_eq!(put_code, "precondition_failed", "stale PUT code");
    assert_eq!(patch_status, StatusCode::PRECONDITION_FAILED, "stale PATCH status");
    assert_eq!(delete_status, StatusCode::PRECONDITION_FAILED, "stale DELETE status");
    let stored: Value = app.get(&path, &token).await.json().await.expect("entry body");
    assert_eq!(stored, current, "entry unchanged after stale writes");
}

#[tokio::test]
async fn current_if_match_allows_update() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.post_json(ENTRIES, &token, &requests_entry()).await;
    let etag = header_text(&created, header::ETAG).expect("ETag header");
    let created: Value = created.json().await.expect("entry body");
    let path = entry_path(created["id"].as_str().unwrap());

    let response = app
        .request(Method::PATCH, &path, Some(&token))
        .header(header::IF_MATCH, etag)
        .header(header::CONTENT_TYPE, "application/merge-patch+json")
        .body(json!({"description": "Checked."}).to_string())
        .send()
        .await
        .expect("request sent");

    assert_eq!(response.status(), StatusCode::OK, "matching If-Match status");
    let body: Value = response.json().await.expect("entry body");
    assert_eq!(body["description"], "Checked.", "update applied");
}

#[tokio::test]
async fn delete_returns_204_then_404() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    let path = entry_path(created["id"].as_str().unwrap());

    let deleted = app
        .request(Method::DELETE, &path, Some(&token))
        .send()
        .await
        .expect("request sent");
    let get_after = app.get(&path, &token).await;
    let get_status = get_after.status();
    let get_code = problem_code(get_after).await;
    let delete_again = app
        .request(Method::DELETE, &path, Some(&token))
        .send()
        .await
        .expect("request sent");

    assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "delete status");
    assert_eq!(get_status, StatusCode::NOT_FOUND, "get after delete status");
    assert_eq!(get_code, "not_found", "get after delete code");
    assert_eq!(delete_again.status(), StatusCode::NOT_FOUND, "second delete status");
    assert!(list_all_entries(&app, &token).await.is_empty(), "no entries remain");
}

#[tokio::test]
async fn create_with_server_fields_rejected() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("alice", &["user"]).await;
    let cases = [
        ("id", json!(uuid::Uuid::new_v4().to_string())),
        ("owner_id", json!(user_id)),
        ("revision", json!(7)),
        ("created_at", json!("2000-01-01T00:00:00Z")),
        ("updated_at", json!("2000-01-01T00:00:00Z")),
    ];

    for (field, value) in cases {
        let mut body = json!({"name": format!("with-{field}").replace('_', "-"), "category": "service"});
        body[field] = value;
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let problem: Value = response.json().await.expect("problem body");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{field}` status");
        assert_eq!(problem["code"], "validation_failed", "`{field}` code");
        assert!(
            error_fields(&problem).contains(&field.to_string()),
            "`{field}` listed in errors: {problem}"
        );
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_with_unknown_fields_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let cases = [
        ("roles", json!(["admin"])),
        ("admin", json!(true)),
        ("permissions", json!(["*"])),
        ("Name", json!("shadow")),
    ];

    for (field, value) in cases {
        let mut body = json!({"name": "extra-field", "category": "service"});
        body[field] = value;
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{field}` status");
        assert_eq!(code, "validation_failed", "`{field}` code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_with_invalid_fields_lists_errors() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let too_long = "a".repeat(129);
    let cases = [
        (json!({"name": "Requests", "category": "python-package"}), vec!["name"]),
        (json!({"name": "has space", "category": "python-package"}), vec!["name"]),
        (
            json!({"name": "-leading-dash", "category": "python-package"}),
            vec!["name"],
        ),
        (
            json!({"name": "../etc/passwd", "category": "python-package"}),
            vec!["name"],
        ),
        (json!({"name": "", "category": "python-package"}), vec!["name"]),
        (json!({"name": too_long, "category": "python-package"}), vec!["name"]),
        (json!({"name": "ok", "category": "Python-Package"}), vec!["category"]),
        (json!({"name": "ok", "category": too_long}), vec!["category"]),
        (
            json!({"name": "ok", "category": "python-package", "status": "retired"}),
            vec!["status"],
        ),
        (
            json!({"name": "ok", "category": "python-package", "status": "ACTIVE"}),
            vec!["status"],
        ),
        (
            json!({"name": "Bad Name", "category": "", "status": "gone"}),
            vec!["name", "category", "status"],
        ),
    ];

    for (body, expected) in cases {
        let response = app.post_json(ENTRIES, &token, &body).await;
        let status = response.status();
        let problem: Value = response.json().await.expect("problem body");
        let fields = error_fields(&problem);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} status");
        for field in expected {
            assert!(
                fields.contains(&field.to_string()),
                "{body}: `{field}` missing from errors {fields:?}"
            );
        }
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn create_accepts_128_character_slug() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let longest = "a".repeat(128);

    let response = app
        .post_json(ENTRIES, &token, &json!({"name": longest, "category": longest}))
        .await;

    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "128 characters is the limit, not past it"
    );
}

#[tokio::test]
async fn entry_path_tricks_give_404() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let created = app.create_entry(&token, &requests_entry()).await;
    // The ids are percent-encoded because reqwest resolves a literal `../`
    // before sending. The router decodes them back into the id segment.
    let ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "..%5C..%5Cwindows",
        "1%20OR%201%3D1",
        "1'%20OR%20'1'%3D'1",
        "%00",
        "abc%00def",
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
    ];

    for id in ids {
        let path = entry_path(id);
        for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
            let response = send_json(
                &app,
                method.clone(),
                &path,
                &token,
                "application/json",
                &requests_entry(),
            )
            .await;
            let status = response.status();
            let code = problem_code(response).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path} status");
            assert_eq!(code, "not_found", "{method} {path} code");
        }
    }

    let stored: Value = app
        .get(&entry_path(created["id"].as_str().unwrap()), &token)
        .await
        .json()
        .await
        .expect("entry body");
    assert_eq!(stored, created, "existing entry untouched");
}

#[tokio::test]
async fn entry_id_invalid_utf8_gives_4xx() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let response = app.get(&entry_path("%FF%FE"), &token).await;
    let status = response.status();
    let code = problem_code(response).await;

    assert!(status.is_client_error(), "invalid UTF-8 id status {status}");
    assert!(!code.is_empty(), "problem code present");
}

/// The change made to an entry that was just read (and so is cached), and
/// what a read right after it must show.
enum Change {
    Put,
    Patch,
    Delete,
    ImportUpdate,
}

#[tokio::test]
async fn read_right_after_a_change_shows_the_change() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    for change in [Change::Put, Change::Patch, Change::Delete, Change::ImportUpdate] {
        let created = app.create_entry(&token, &requests_entry()).await;
        let path = entry_path(created["id"].as_str().unwrap());
        let before = app.get(&path, &token).await;
        assert_eq!(before.status(), StatusCode::OK, "first read");

        let expected_description = match change {
            Change::Put => {
                let body = json!({"name": "requests", "category": "python-package", "description": "Put."});
                let response = send_json(&app, Method::PUT, &path, &token, "application/json", &body).await;
                assert_eq!(response.status(), StatusCode::OK, "put");
                Some("Put.")
            }
            Change::Patch => {
                let body = json!({"description": "Patched."});
                let response = send_json(&app, Method::PATCH, &path, &token, "application/json", &body).await;
                assert_eq!(response.status(), StatusCode::OK, "patch");
                Some("Patched.")
            }
            Change::Delete => {
                let response = app.request(Method::DELETE, &path, Some(&token)).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::NO_CONTENT, "delete");
                None
            }
            Change::ImportUpdate => {
                let line =
                    "{\"name\": \"requests\", \"category\": \"python-package\", \"description\": \"Imported.\"}\n";
                let response = crate::helpers::import_ndjson(&app, &token, "?on_conflict=update", line).await;
                let report: Value = response.json().await.unwrap();
                assert_eq!(report["updated"], json!(1), "import updated: {report}");
                Some("Imported.")
            }
        };

        let after = app.get(&path, &token).await;
        match expected_description {
            Some(description) => {
                assert_eq!(after.status(), StatusCode::OK, "read after change");
                let body: Value = after.json().await.unwrap();
                assert_eq!(body["description"], description, "read shows the change");
                assert_eq!(body["revision"], json!(2), "read shows the new revision");
            }
            None => assert_eq!(after.status(), StatusCode::NOT_FOUND, "read after delete"),
        }
        if !matches!(change, Change::Delete) {
            let response = app.request(Method::DELETE, &path, Some(&token)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NO_CONTENT, "clean-up");
        }
    }
}

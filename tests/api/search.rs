//! `GET /api/v1/registry/search`: ranking over the PyPI sample, scores,
//! filters, hostile query text and cursor pagination.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{import_ndjson, problem_code, TestApp, PYPI_SAMPLE};

const SEARCH: &str = "/api/v1/registry/search";

/// Spawns an app, imports the sample as a new user and returns the app, that
/// user's id and token.
async fn app_with_sample() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("alice", &["user"]).await;
    let response = import_ndjson(&app, &token, "", PYPI_SAMPLE).await;
    assert_eq!(response.status(), StatusCode::OK, "sample import");
    let report: Value = response.json().await.expect("import report");
    assert_eq!(report["created"], json!(300), "sample fully imported: {report}");
    (app, user_id, token)
}

async fn search(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("{SEARCH}?{query}"), token).await;
    assert_eq!(response.status(), StatusCode::OK, "search `{query}` failed");
    response.json().await.expect("search body")
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn search_http_client_ranks_http_libraries_first() {
    let (app, _, token) = app_with_sample().await;

    let page = search(&app, &token, "q=http%20client&limit=10").await;

    let top = names(&page);
    let expected = ["requests", "httpx", "urllib3", "aiohttp"];
    assert!(
        top.iter().any(|name| expected.contains(&name.as_str())),
        "none of {expected:?} in top 10 {top:?}"
    );
    assert_eq!(top.len(), 10, "ten hits requested");
}

#[tokio::test]
async fn search_scores_numeric_and_non_increasing() {
    let (app, _, token) = app_with_sample().await;

    let page = search(&app, &token, "q=http%20client%20python&limit=100").await;

    let items = page["items"].as_array().expect("items array");
    assert!(items.len() > 10, "the query matches many entries");
    let scores: Vec<f64> = items
        .iter()
        .map(|item| {
            item["score"]
                .as_f64()
                .unwrap_or_else(|| panic!("hit without numeric score: {item}"))
        })
        .collect();
    for pair in scores.windows(2) {
        assert!(pair[0] >= pair[1], "scores increase: {} then {}", pair[0], pair[1]);
    }
}

#[tokio::test]
async fn listing_items_carry_no_score() {
    let (app, _, token) = app_with_sample().await;

    let response = app.get("/api/v1/registry/entries?limit=5", &token).await;

    let page: Value = response.json().await.expect("list body");
    let items = page["items"].as_array().expect("items array");
    assert!(
        items.iter().all(|item| item.get("score").is_none()),
        "plain listing has no score"
    );
}

#[tokio::test]
async fn search_applies_filters() {
    let (app, user_id, token) = app_with_sample().await;
    let (bob_id, bob) = app.create_user("bob", &["user"]).await;
    app.create_entry(&bob, &json!({"name": "http-gateway", "category": "service", "status": "deprecated", "description": "Internal HTTP gateway", "tags": ["http", "edge"]})).await;
    app.create_entry(&bob, &json!({"name": "http-archive", "category": "dataset", "status": "archived", "description": "HTTP request logs", "tags": ["http"]})).await;

    let by_category = search(&app, &token, "q=http&category=service").await;
    let by_status = search(&app, &token, "q=http&status=archived").await;
    let by_tag = search(&app, &token, "q=http&tag=http&tag=edge").await;
    let by_owner = search(&app, &token, &format!("q=http&owner_id={bob_id}&limit=100")).await;
    let by_sample_owner = search(&app, &token, &format!("q=http&owner_id={user_id}&limit=100")).await;

    assert_eq!(names(&by_category), ["http-gateway"], "category filter");
    assert_eq!(names(&by_status), ["http-archive"], "status filter");
    assert_eq!(names(&by_tag), ["http-gateway"], "repeated tag filter");
    let mut bob_names = names(&by_owner);
    bob_names.sort();
    assert_eq!(bob_names, ["http-archive", "http-gateway"], "owner filter");
    let sample_names = names(&by_sample_owner);
    assert!(!sample_names.is_empty(), "sample entries match `http`");
    assert!(
        sample_names.iter().all(|name| !name.starts_with("http-")),
        "owner filter excludes bob's entries: {sample_names:?}"
    );
}

#[tokio::test]
async fn search_filter_values_validated() {
    let (app, _, token) = app_with_sample().await;

    for query in [
        "q=http&status=retired",
        "q=http&category=Bad%20Category",
        "q=http&owner_id=me",
        "q=http&limit=0",
        "q=http&limit=101",
        "q=http&sort=score",
    ] {
        let response = app.get(&format!("{SEARCH}?{query}"), &token).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{query}` status");
        assert_eq!(code, "invalid_parameter", "`{query}` code");
    }
}

#[tokio::test]
async fn search_syntax_characters_never_fail() {
    let (app, _, token) = app_with_sample().await;
    let queries = [
        "\"",
        "\"http",
        "http\"",
        "*",
        "http*",
        "NEAR(http client)",
        "NEAR(",
        "http OR client",
        "OR",
        "AND",
        "NOT",
        "-http",
        "http -client",
        "'",
        "' OR 1=1 --",
        "requests'; DROP TABLE entries; --",
        "name:requests",
        "{name}: http",
        "^http",
        "(",
        ")",
        "http + client",
        "\\",
        "%",
        "_",
        "\u{0}",
        "\u{feff}http",
        "日本語",
    ];

    for text in queries {
        let response = app
            .request(reqwest::Method::GET, SEARCH, Some(&token))
            .query(&[("q", text)])
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        assert!(!status.is_server_error(), "q {text:?} gave {status}");
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "q {text:?} gave {status}"
        );
        if status == StatusCode::OK {
            let page: Value = response.json().await.expect("search body");
            assert!(page["items"].is_array(), "q {text:?} returned no items array");
        } else {
            problem_code(response).await;
        }
    }

    let after = search(&app, &token, "q=requests").await;
    assert!(
        names(&after).contains(&"requests".to_string()),
        "search still works and data survived"
    );
}

#[tokio::test]
async fn search_empty_query_rejected() {
    let (app, _, token) = app_with_sample().await;
    let too_long = "a".repeat(257);
    let queries = [
        "q=".to_string(),
        String::new(),
        "q=%20%20%20".to_string(),
        format!("q={too_long}"),
    ];

    for query in queries {
        let response = app.get(&format!("{SEARCH}?{query}"), &token).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{query}` status");
        assert_eq!(code, "invalid_parameter", "`{query}` code");
    }
}

#[tokio::test]
async fn search_cursor_pages_match_single_page() {
    let (app, _, token) = app_with_sample().await;
    let whole = search(&app, &token, "q=http%20client&limit=100").await;
    let expected: Vec<String> = whole["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_string())
        .collect();
    assert!(expected.len() > 7, "the query needs several pages of 7");

    let mut paged = Vec::new();
    let mut query = "q=http%20client&limit=7".to_string();
    loop {
        let page = search(&app, &token, &query).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("q=http%20client&limit=7&cursor={cursor}"),
            None => break,
        }
        assert!(paged.len() <= expected.len(), "pagination returns more hits than exist");
    }

    assert_eq!(paged, expected, "pages concatenate to the single-page ranking");
}

#[tokio::test]
async fn search_cursor_bound_to_query() {
    let (app, _, token) = app_with_sample().await;
    let first = search(&app, &token, "q=http&limit=1").await;
    let cursor = first["next_cursor"].as_str().expect("a second page").to_string();
    let list: Value = app
        .get("/api/v1/registry/entries?limit=1", &token)
        .await
        .json()
        .await
        .expect("list body");
    let list_cursor = list["next_cursor"].as_str().expect("a second list page").to_string();

    let other_query = app
        .get(&format!("{SEARCH}?q=client&limit=1&cursor={cursor}"), &token)
        .await;
    let other_status = other_query.status();
    let other_code = problem_code(other_query).await;
    let from_list = app
        .get(&format!("{SEARCH}?q=http&limit=1&cursor={list_cursor}"), &token)
        .await;
    let list_status = from_list.status();
    let list_code = problem_code(from_list).await;

    assert_eq!(
        other_status,
        StatusCode::BAD_REQUEST,
        "cursor replayed on another query"
    );
    assert_eq!(other_code, "invalid_cursor", "cursor replayed on another query code");
    assert_eq!(list_status, StatusCode::BAD_REQUEST, "listing cursor used for search");
    assert_eq!(list_code, "invalid_cursor", "listing cursor used for search code");
}

#[tokio::test]
async fn search_reflects_updates_and_deletes() {
    let (app, _, token) = app_with_sample().await;
    let created = app
        .create_entry(
            &token,
            &json!({"name": "zebra-tool", "category": "service", "description": "Handles quokka traffic"}),
        )
        .await;
    let path = format!("/api/v1/registry/entries/{}", created["id"].as_str().unwrap());

    let before = search(&app, &token, "q=quokka").await;
    let patch = app
        .request(reqwest::Method::PATCH, &path, Some(&token))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"description": "Handles wombat traffic"}).to_string())
        .send()
        .await
        .expect("request sent");
    assert_eq!(patch.status(), StatusCode::OK, "patch");
    let old_word = search(&app, &token, "q=quokka").await;
    let new_word = search(&app, &token, "q=wombat").await;
    let deleted = app
        .request(reqwest::Method::DELETE, &path, Some(&token))
        .send()
        .await
        .expect("request sent");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "delete");
    let after_delete = search(&app, &token, "q=wombat").await;

    assert_eq!(names(&before), ["zebra-tool"], "found by its description");
    assert!(names(&old_word).is_empty(), "old description no longer matches");
    assert_eq!(names(&new_word), ["zebra-tool"], "new description matches");
    assert!(names(&after_delete).is_empty(), "deleted entry no longer found");
}

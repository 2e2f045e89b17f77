//! `GET /api/v1/registry/entries`: filters, `limit`, cursor pagination and
//! rejection of unknown or hostile query parameters.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem_code, TestApp};

const ENTRIES: &str = "/api/v1/registry/entries";

/// Two owners with entries across categories, statuses and tags.
struct Fixture {
    app: TestApp,
    alice_id: String,
    alice: String,
    bob_id: String,
}

async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let (alice_id, alice) = app.create_user("alice", &["user"]).await;
    let (bob_id, bob) = app.create_user("bob", &["user"]).await;
    let alice_entries = [
        json!({"name": "billing", "category": "service", "status": "active", "tags": ["payments", "internal"]}),
        json!({"name": "ledger", "category": "service", "status": "deprecated", "tags": ["payments"]}),
        json!({"name": "fraud-model", "category": "model", "status": "active", "tags": ["payments", "ml", "internal"]}),
    ];
    let bob_entries = [
        json!({"name": "clicks", "category": "dataset", "status": "archived", "tags": ["analytics"]}),
        json!({"name": "gateway", "category": "service", "status": "active", "tags": ["internal"]}),
    ];
    for body in &alice_entries {
        app.create_entry(&alice, body).await;
    }
    for body in &bob_entries {
        app.create_entry(&bob, body).await;
    }
    Fixture {
        app,
        alice_id,
        alice,
        bob_id,
    }
}

/// Names of the listed items, sorted.
async fn list_names(fixture: &Fixture, query: &str) -> Vec<String> {
    let response = fixture.app.get(&format!("{ENTRIES}?{query}"), &fixture.alice).await;
    assert_eq!(response.status(), StatusCode::OK, "listing with `{query}` failed");
    let page: Value = response.json().await.expect("list body");
    let mut names: Vec<String> = page["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn list_without_filters_returns_all() {
    let fixture = fixture().await;

    let response = fixture.app.get(ENTRIES, &fixture.alice).await;

    assert_eq!(response.status(), StatusCode::OK, "list status");
    let page: Value = response.json().await.expect("list body");
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(5),
        "all five entries listed"
    );
    assert_eq!(page["next_cursor"], Value::Null, "one page only");
}

#[tokio::test]
async fn list_filters_by_category() {
    let fixture = fixture().await;

    let names = list_names(&fixture, "category=service").await;

    assert_eq!(names, ["billing", "gateway", "ledger"], "service entries only");
}

#[tokio::test]
async fn list_filters_by_status() {
    let fixture = fixture().await;

    let deprecated = list_names(&fixture, "status=deprecated").await;
    let archived = list_names(&fixture, "status=archived").await;

    assert_eq!(deprecated, ["ledger"], "deprecated entries only");
    assert_eq!(archived, ["clicks"], "archived entries only");
}

#[tokio::test]
async fn list_repeated_tag_requires_all() {
    let fixture = fixture().await;

    let one_tag = list_names(&fixture, "tag=payments").await;
    let two_tags = list_names(&fixture, "tag=payments&tag=internal").await;
    let three_tags = list_names(&fixture, "tag=payments&tag=internal&tag=ml").await;
    let disjoint = list_names(&fixture, "tag=analytics&tag=payments").await;

    assert_eq!(one_tag, ["billing", "fraud-model", "ledger"], "one tag");
    assert_eq!(two_tags, ["billing", "fraud-model"], "two tags mean both");
    assert_eq!(three_tags, ["fraud-model"], "three tags mean all three");
    assert!(disjoint.is_empty(), "no entry has both tags: {disjoint:?}");
}

#[tokio::test]
async fn list_filters_by_owner_id() {
    let fixture = fixture().await;

    let alice_names = list_names(&fixture, &format!("owner_id={}", fixture.alice_id)).await;
    let bob_names = list_names(&fixture, &format!("owner_id={}", fixture.bob_id)).await;
    let nobody = list_names(&fixture, &format!("owner_id={}", uuid::Uuid::new_v4())).await;

    assert_eq!(alice_names, ["billing", "fraud-model", "ledger"], "alice's entries");
    assert_eq!(bob_names, ["clicks", "gateway"], "bob's entries");
    assert!(nobody.is_empty(), "unknown owner has no entries");
}

#[tokio::test]
async fn list_combines_filters() {
    let fixture = fixture().await;

    let names = list_names(
        &fixture,
        &format!(
            "category=service&status=active&tag=internal&owner_id={}",
            fixture.bob_id
        ),
    )
    .await;

    assert_eq!(names, ["gateway"], "all filters apply together");
}

#[tokio::test]
async fn list_limit_out_of_range_rejected() {
    let fixture = fixture().await;

    for limit in ["0", "101", "abc", "-1", "", "1.5", "99999999999999999999"] {
        let response = fixture
            .app
            .get(&format!("{ENTRIES}?limit={limit}"), &fixture.alice)
            .await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "limit `{limit}` status");
        assert_eq!(code, "invalid_parameter", "limit `{limit}` code");
    }
}

#[tokio::test]
async fn list_limit_bounds_accepted() {
    let fixture = fixture().await;

    let one = fixture.app.get(&format!("{ENTRIES}?limit=1"), &fixture.alice).await;
    let hundred = fixture.app.get(&format!("{ENTRIES}?limit=100"), &fixture.alice).await;

    assert_eq!(one.status(), StatusCode::OK, "limit 1");
    let page: Value = one.json().await.expect("list body");
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(1),
        "limit 1 returns one item"
    );
    assert!(page["next_cursor"].is_string(), "more pages follow");
    assert_eq!(hundred.status(), StatusCode::OK, "limit 100");
}

#[tokio::test]
async fn list_cursor_visits_every_entry_once() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let mut created = HashSet::new();
    for index in 0..25 {
        let body = app
            .create_entry(
                &token,
                &json!({"name": format!("entry-{index:02}"), "category": "service"}),
            )
            .await;
        created.insert(body["id"].as_str().expect("id").to_string());
        // Pairs of entries share a timestamp, so the order must break ties on the id.
        if index % 2 == 0 {
            app.clock.advance(chrono::Duration::seconds(1));
        }
    }

    let mut seen = Vec::new();
    let mut page_sizes = Vec::new();
    let mut path = format!("{ENTRIES}?limit=10");
    loop {
        let response = app.get(&path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "page {path}");
        let page: Value = response.json().await.expect("list body");
        let items = page["items"].as_array().expect("items array");
        page_sizes.push(items.len());
        seen.extend(items.iter().map(|item| item["id"].as_str().expect("id").to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{ENTRIES}?limit=10&cursor={cursor}"),
            None => break,
        }
        assert!(page_sizes.len() < 10, "pagination does not end");
    }

    assert_eq!(page_sizes, [10, 10, 5], "page sizes");
    assert_eq!(seen.len(), 25, "25 items in total");
    assert_eq!(
        seen.iter().cloned().collect::<HashSet<_>>(),
        created,
        "each entry seen exactly once"
    );
}

#[tokio::test]
async fn list_cursor_keeps_filters_across_pages() {
    let fixture = fixture().await;

    let first: Value = fixture
        .app
        .get(&format!("{ENTRIES}?category=service&limit=2"), &fixture.alice)
        .await
        .json()
        .await
        .expect("list body");
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second: Value = fixture
        .app
        .get(
            &format!("{ENTRIES}?category=service&limit=2&cursor={cursor}"),
            &fixture.alice,
        )
        .await
        .json()
        .await
        .expect("list body");

    let categories: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|item| &item["category"])
        .collect();
    assert_eq!(categories.len(), 3, "three service entries over two pages");
    assert!(
        categories.iter().all(|category| **category == "service"),
        "filter kept on the second page"
    );
    assert_eq!(second["next_cursor"], Value::Null, "no third page");
}

#[tokio::test]
async fn list_invalid_cursor_rejected() {
    let fixture = fixture().await;
    let first: Value = fixture
        .app
        .get(&format!("{ENTRIES}?limit=1"), &fixture.alice)
        .await
        .json()
        .await
        .expect("list body");
    let cursor = first["next_cursor"].as_str().expect("a second page").to_string();
    let middle = cursor.len() / 2;
    let replacement = if &cursor[middle..=middle] == "A" { "B" } else { "A" };
    let tampered = format!("{}{}{}", &cursor[..middle], replacement, &cursor[middle + 1..]);
    let truncated = cursor[..cursor.len() - 2].to_string();
    for _ in 0..25 {
        fixture.app.create_entry(&fixture.alice, &json!({"name": format!("word-{}", uuid::Uuid::new_v4()), "category": "note", "description": "common word"})).await;
    }
    let search: Value = fixture
        .app
        .get("/api/v1/registry/search?q=common&limit=1", &fixture.alice)
        .await
        .json()
        .await
        .expect("search body");
    let search_cursor = search["next_cursor"]
        .as_str()
        .expect("search has a second page")
        .to_string();
    let cases = [
        ("tampered", tampered),
        ("truncated", truncated),
        ("from search", search_cursor),
        ("junk", "not-a-cursor".to_string()),
        ("sql", "%27%20UNION%20SELECT%201%20--".to_string()),
        ("empty", String::new()),
        ("long", "A".repeat(2000)),
        ("json", "eyJpZCI6MX0".to_string()),
    ];

    for (label, cursor) in cases {
        let response = fixture
            .app
            .get(&format!("{ENTRIES}?cursor={cursor}"), &fixture.alice)
            .await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label} cursor status");
        assert_eq!(code, "invalid_cursor", "{label} cursor code");
    }
}

#[tokio::test]
async fn list_unknown_status_rejected() {
    let fixture = fixture().await;

    for status in ["retired", "ACTIVE", "active%20", ""] {
        let response = fixture
            .app
            .get(&format!("{ENTRIES}?status={status}"), &fixture.alice)
            .await;
        let http_status = response.status();
        let code = problem_code(response).await;
        assert_eq!(
            http_status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "status `{status}` response"
        );
        assert_eq!(code, "invalid_parameter", "status `{status}` code");
    }
}

#[tokio::test]
async fn list_injection_in_filters_adds_no_rows() {
    let fixture = fixture().await;
    let queries = [
        "category=service%27%20OR%20%271%27%3D%271",
        "category=x%22%20OR%20%221%22%3D%221",
        "status=active%27%20OR%20%271%27%3D%271",
        "tag=%27%20UNION%20SELECT%20id%2C%20username%20FROM%20users%20--",
        "tag=payments%27%20OR%20%271%27%3D%271",
        "tag=%22%20OR%201%3D1%20--",
        "tag=payments%25",
        "tag=%25",
        "owner_id=%27%20OR%201%3D1%20--",
        "owner_id=00000000-0000-0000-0000-000000000000%27%20OR%20%271%27%3D%271",
    ];

    for query in queries {
        let response = fixture.app.get(&format!("{ENTRIES}?{query}"), &fixture.alice).await;
        let status = response.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
            "`{query}` gave {status}, expected 200 or 422"
        );
        if status == StatusCode::OK {
            let page: Value = response.json().await.expect("list body");
            assert_eq!(page["items"], json!([]), "`{query}` matched rows");
        }
    }

    assert_eq!(list_names(&fixture, "").await.len(), 5, "stored entries unchanged");
}

#[tokio::test]
async fn list_unknown_query_parameter_rejected() {
    let fixture = fixture().await;

    for query in ["categroy=service", "admin=true", "owner=me", "q=x", "limit=5&sort=name"] {
        let response = fixture.app.get(&format!("{ENTRIES}?{query}"), &fixture.alice).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{query}` status");
        assert_eq!(code, "invalid_parameter", "`{query}` code");
    }
}

#[tokio::test]
async fn list_repeated_single_value_parameter_rejected() {
    let fixture = fixture().await;

    for query in [
        "category=service&category=model",
        "status=active&status=archived",
        "limit=1&limit=2",
    ] {
        let response = fixture.app.get(&format!("{ENTRIES}?{query}"), &fixture.alice).await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{query}` status");
        assert_eq!(code, "invalid_parameter", "`{query}` code");
    }
}

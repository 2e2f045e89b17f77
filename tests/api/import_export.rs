//! Bulk import (`POST /api/v1/registry/import`, JSON Lines) and export
//! (`GET /api/v1/registry/export`): reports, per-line errors, conflict
//! policies and a round trip between two servers.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{count_rows, import_ndjson, list_all_entries, problem_code, TestApp, PYPI_SAMPLE};

const IMPORT: &str = "/api/v1/registry/import";
const EXPORT: &str = "/api/v1/registry/export";
const SERVER_FIELDS: [&str; 5] = ["id", "owner_id", "revision", "created_at", "updated_at"];

async fn import_report(app: &TestApp, token: &str, query: &str, body: impl Into<reqwest::Body>) -> Value {
    let response = import_ndjson(app, token, query, body).await;
    assert_eq!(response.status(), StatusCode::OK, "import{query} status");
    response.json().await.expect("import report")
}

/// `line → code` for every error in an import report.
fn error_codes(report: &Value) -> BTreeMap<u64, String> {
    report["errors"]
        .as_array()
        .expect("errors array")
        .iter()
        .map(|error| {
            let line = error["line"].as_u64().expect("numeric line");
            let code = error["code"].as_str().expect("string code").to_string();
            assert!(error["detail"].is_string(), "error without detail: {error}");
            (line, code)
        })
        .collect()
}

/// Fetches the export, checks its media type and parses each line.
async fn export_lines(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get(EXPORT, token).await;
    assert_eq!(response.status(), StatusCode::OK, "export status");
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(content_type, "application/x-ndjson", "export content type");
    let text = response.text().await.expect("export body");
    assert!(text.is_empty() || text.ends_with('\n'), "export ends with a newline");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("export line is JSON"))
        .collect()
}

fn sorted_by_name(mut lines: Vec<Value>) -> Vec<Value> {
    lines.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    lines
}

#[tokio::test]
async fn import_sample_reports_counts() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    let report = import_report(&app, &token, "", PYPI_SAMPLE).await;

    assert_eq!(report["created"], json!(300), "created: {report}");
    assert_eq!(report["updated"], json!(0), "updated");
    assert_eq!(report["skipped"], json!(0), "skipped");
    assert_eq!(report["errors"], json!([]), "errors");
    assert_eq!(list_all_entries(&app, &token).await.len(), 300, "300 entries stored");
}

#[tokio::test]
async fn import_twice_skips_every_line() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    import_report(&app, &token, "", PYPI_SAMPLE).await;

    let report = import_report(&app, &token, "", PYPI_SAMPLE).await;

    assert_eq!(report["created"], json!(0), "created");
    assert_eq!(report["updated"], json!(0), "updated");
    assert_eq!(report["skipped"], json!(300), "skipped");
    let codes = error_codes(&report);
    assert_eq!(
        codes.keys().copied().collect::<Vec<_>>(),
        (1..=300).collect::<Vec<u64>>(),
        "every line reported once"
    );
    assert!(
        codes.values().all(|code| code == "already_exists"),
        "every code is already_exists"
    );
    assert_eq!(list_all_entries(&app, &token).await.len(), 300, "no duplicates stored");
}

#[tokio::test]
async fn import_bad_lines_reported_without_abort() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let deep_line = "[".repeat(100_000);
    let lines: Vec<Vec<u8>> = vec![
        br#"{"name": "alpha", "category": "service"}"#.to_vec(),
        br#"{"name": "beta", "category": "service"}"#.to_vec(),
        br#"{"name": "alpha", "category": "service", "description": "duplicate"}"#.to_vec(),
        br#"{"name": "broken", "category": "#.to_vec(),
        br#"{"name": "with-id", "category": "service", "id": "00000000-0000-0000-0000-000000000001"}"#.to_vec(),
        deep_line.into_bytes(),
        b"{\"name\": \"bad-\xff\xfe\", \"category\": \"service\"}".to_vec(),
        br#"{"name": "sneaky", "category": "service", "admin": true}"#.to_vec(),
        br#"{"name": "gamma", "category": "service"}"#.to_vec(),
        Vec::new(),
        br#"{"name": "delta", "category": "service"}"#.to_vec(),
    ];
    let body = lines.join(&b'\n');

    let report = import_report(&app, &token, "", body).await;

    let codes = error_codes(&report);
    let expected: BTreeMap<u64, String> = [
        (3, "already_exists"),
        (4, "invalid_json"),
        (5, "invalid_entry"),
        (6, "invalid_json"),
        (7, "invalid_utf8"),
        (8, "invalid_entry"),
    ]
    .into_iter()
    .map(|(line, code)| (line, code.to_string()))
    .collect();
    assert_eq!(codes, expected, "one error per bad line, with its line number");
    assert_eq!(report["created"], json!(4), "good lines created");
    assert_eq!(report["skipped"], json!(6), "bad lines skipped");
    let mut names: Vec<String> = list_all_entries(&app, &token)
        .await
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["alpha", "beta", "delta", "gamma"],
        "only the good lines were stored"
    );
    let health = app.client.get(app.url("/health")).send().await.expect("health request");
    assert_eq!(health.status(), StatusCode::OK, "server still answers");
}

#[tokio::test]
async fn import_duplicate_line_keeps_first() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = "{\"name\": \"alpha\", \"category\": \"service\", \"description\": \"first\"}\n\
                {\"name\": \"alpha\", \"category\": \"service\", \"description\": \"second\"}\n";

    let report = import_report(&app, &token, "", body).await;

    assert_eq!(report["created"], json!(1), "created");
    let entries = list_all_entries(&app, &token).await;
    assert_eq!(entries.len(), 1, "one entry stored");
    assert_eq!(
        entries[0]["description"], "first",
        "the first line wins under on_conflict=skip"
    );
}

#[tokio::test]
async fn import_on_conflict_update_updates() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let original = "{\"name\": \"alpha\", \"category\": \"service\", \"description\": \"v1\"}\n\
                    {\"name\": \"beta\", \"category\": \"service\", \"description\": \"v1\"}\n";
    import_report(&app, &token, "", original).await;
    let before = list_all_entries(&app, &token).await;
    let changed = "{\"name\": \"alpha\", \"category\": \"service\", \"description\": \"v2\"}\n\
                   {\"name\": \"beta\", \"category\": \"service\", \"description\": \"v2\", \"tags\": [\"new\"]}\n\
                   {\"name\": \"gamma\", \"category\": \"service\"}\n";

    let report = import_report(&app, &token, "?on_conflict=update", changed).await;

    assert_eq!(report["updated"], json!(2), "updated: {report}");
    assert_eq!(report["created"], json!(1), "created");
    assert_eq!(report["skipped"], json!(0), "skipped");
    let after = list_all_entries(&app, &token).await;
    assert_eq!(after.len(), 3, "three entries");
    for old in &before {
        let new = after
            .iter()
            .find(|entry| entry["id"] == old["id"])
            .expect("updated entry keeps its id");
        assert_eq!(new["description"], "v2", "{} description updated", old["name"]);
        assert_eq!(new["revision"], json!(2), "{} revision incremented", old["name"]);
        assert_eq!(new["created_at"], old["created_at"], "{} created_at kept", old["name"]);
        assert_eq!(new["owner_id"], old["owner_id"], "{} owner kept", old["name"]);
    }
}

#[tokio::test]
async fn import_update_skips_other_owners_entries() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.create_user("alice", &["user"]).await;
    let (_, bob) = app.create_user("bob", &["user"]).await;
    import_report(
        &app,
        &alice,
        "",
        "{\"name\": \"alpha\", \"category\": \"service\", \"description\": \"alice\"}\n",
    )
    .await;

    let report = import_report(
        &app,
        &bob,
        "?on_conflict=update",
        "{\"name\": \"alpha\", \"category\": \"service\", \"description\": \"bob\"}\n",
    )
    .await;

    assert_eq!(report["updated"], json!(0), "updated");
    assert_eq!(
        error_codes(&report).get(&1).map(String::as_str),
        Some("not_owner"),
        "line 1 code"
    );
    let entries = list_all_entries(&app, &alice).await;
    assert_eq!(entries[0]["description"], "alice", "entry unchanged");
}

#[tokio::test]
async fn import_on_conflict_invalid_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;

    for query in [
        "?on_conflict=bogus",
        "?on_conflict=",
        "?on_conflict=UPDATE",
        "?on_conflict=skip&on_conflict=update",
        "?mode=update",
    ] {
        let response = import_ndjson(
            &app,
            &token,
            query,
            "{\"name\": \"alpha\", \"category\": \"service\"}\n",
        )
        .await;
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "`{query}` status");
        assert_eq!(code, "invalid_parameter", "`{query}` code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was imported");
}

#[tokio::test]
async fn import_wrong_content_type_rejected() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let body = "{\"name\": \"alpha\", \"category\": \"service\"}\n";

    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = app.request(Method::POST, IMPORT, Some(&token)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let code = problem_code(response).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?} status");
        assert_eq!(code, "unsupported_media_type", "{content_type:?} code");
    }

    assert!(list_all_entries(&app, &token).await.is_empty(), "nothing was imported");
}

#[tokio::test]
async fn import_requires_write_permission() {
    let app = TestApp::spawn().await;
    let (_, viewer) = app.create_user("victor", &["viewer"]).await;

    let response = import_ndjson(&app, &viewer, "", "{\"name\": \"alpha\", \"category\": \"service\"}\n").await;
    let status = response.status();
    let code = problem_code(response).await;

    assert_eq!(status, StatusCode::FORBIDDEN, "viewer import status");
    assert_eq!(code, "permission_denied", "viewer import code");
    assert!(
        list_all_entries(&app, &app.admin_token).await.is_empty(),
        "nothing was imported"
    );
}

#[tokio::test]
async fn export_writes_one_line_per_entry() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    import_report(&app, &token, "", PYPI_SAMPLE).await;

    let lines = export_lines(&app, &token).await;

    assert_eq!(lines.len(), 300, "one line per entry");
    for line in &lines {
        for field in SERVER_FIELDS {
            assert!(
                line.get(field).is_none(),
                "export line carries server field `{field}`: {line}"
            );
        }
    }
    let exported: HashSet<&str> = lines.iter().map(|line| line["name"].as_str().expect("name")).collect();
    let sample: HashSet<String> = PYPI_SAMPLE
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        exported,
        sample.iter().map(String::as_str).collect(),
        "exported names equal the sample's"
    );
}

#[tokio::test]
async fn export_content_equals_imported_sample() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    import_report(&app, &token, "", PYPI_SAMPLE).await;
    let sample: Vec<Value> = PYPI_SAMPLE
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    let lines = export_lines(&app, &token).await;

    assert_eq!(
        sorted_by_name(lines),
        sorted_by_name(sample),
        "every field survives import and export"
    );
}

#[tokio::test]
async fn export_reimports_into_fresh_app() {
    let source = TestApp::spawn().await;
    let (_, source_token) = source.create_user("alice", &["user"]).await;
    import_report(&source, &source_token, "", PYPI_SAMPLE).await;
    source.create_entry(&source_token, &json!({"name": "vault", "category": "service", "sensitive": {"deploy_token": "s3cret"}, "metadata": {"nested": {"list": [1, 2, {"k": null}]}}})).await;
    let exported = source
        .get(EXPORT, &source_token)
        .await
        .text()
        .await
        .expect("export body");
    let target = TestApp::spawn().await;
    let (_, target_token) = target.create_user("alice", &["user"]).await;

    let report = import_report(&target, &target_token, "", exported.clone()).await;

    assert_eq!(report["created"], json!(301), "created: {report}");
    assert_eq!(report["updated"], json!(0), "updated");
    assert_eq!(report["skipped"], json!(0), "skipped");
    assert_eq!(report["errors"], json!([]), "errors");
    let source_lines = sorted_by_name(
        exported
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect(),
    );
    let target_lines = sorted_by_name(export_lines(&target, &target_token).await);
    assert_eq!(target_lines, source_lines, "second export equals the first");
}

#[tokio::test]
async fn import_line_longer_than_limit_reported() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "4096")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    // A valid entry except for its size: the description alone is 5000 bytes.
    let long_line = json!({"name": "big", "category": "service", "description": "x".repeat(5000)}).to_string();
    let body = format!(
        "{}\n{}\n{}\n",
        json!({"name": "before", "category": "service"}),
        long_line,
        json!({"name": "after", "category": "service"})
    );

    let report = import_report(&app, &token, "", body).await;

    let codes = error_codes(&report);
    assert_eq!(
        codes.get(&2).map(String::as_str),
        Some("line_too_long"),
        "line 2 reported: {report}"
    );
    assert_eq!(codes.len(), 1, "only line 2 reported");
    assert_eq!(report["created"], json!(2), "the short lines were created");
    let names: HashSet<String> = list_all_entries(&app, &token)
        .await
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains("big"), "the long line was not stored");
}

/// Sends `body` to the import endpoint over a raw connection as chunked
/// transfer coding in pieces of `chunk_bytes`, so the server receives the
/// body in small frames, and returns the raw response text.
async fn import_in_chunks(app: &TestApp, token: &str, body: &str, chunk_bytes: usize) -> String {
    let host = app.base_url.strip_prefix("http://").expect("plain HTTP base URL");
    let chunks: String = body
        .as_bytes()
        .chunks(chunk_bytes)
        .map(|chunk| {
            format!(
                "{:x}\r\n{}\r\n",
                chunk.len(),
                std::str::from_utf8(chunk).expect("ASCII body")
            )
        })
        .collect();
    let request = format!(
        "POST {IMPORT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}0\r\n\r\n"
    );
    let mut stream = TcpStream::connect(host).await.expect("connect to server");
    stream.write_all(request.as_bytes()).await.expect("request written");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("response within 10 s")
        .expect("response read");
    String::from_utf8(response).expect("UTF-8 response")
}

#[tokio::test]
async fn import_long_line_in_small_chunks_reported() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "4096")]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    let long_line = json!({"name": "big", "category": "service", "description": "x".repeat(5000)}).to_string();
    let body = format!(
        "{}\n{}\n{}\n",
        json!({"name": "before", "category": "service"}),
        long_line,
        json!({"name": "after", "category": "service"})
    );

    let response = import_in_chunks(&app, &token, &body, 1000).await;

    assert!(response.starts_with("HTTP/1.1 200"), "import status: {response}");
    let report: Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).expect("response body")).expect("import report");
    let codes = error_codes(&report);
    assert_eq!(
        codes.get(&2).map(String::as_str),
        Some("line_too_long"),
        "line 2 reported: {report}"
    );
    assert_eq!(codes.len(), 1, "only line 2 reported");
    assert_eq!(report["created"], json!(2), "the short lines were created");
}

/// A large import leaves the planner statistics of the entry tables fresh,
/// so that lists and searches right after it use the page-order indexes.
#[tokio::test]
async fn large_import_refreshes_planner_statistics() {
    let app = TestApp::spawn().await;
    let lines: String = (0..1000)
        .map(|n| format!("{{\"name\": \"stats-{n}\", \"category\": \"service\", \"tags\": [\"bulk\"]}}\n"))
        .collect();

    let report = import_report(&app, &app.admin_token, "", lines).await;

    assert_eq!(report["created"], 1000);
    let analysed = if app.state.config.uses_sqlite() {
        count_rows(&app, "sqlite_stat1 WHERE tbl IN ('entries', 'entry_tags')").await
    } else {
        count_rows(
            &app,
            "pg_class WHERE relname IN ('entries', 'entry_tags') \
             AND relnamespace = current_schema()::regnamespace AND reltuples >= 1000",
        )
        .await
    };
    assert!(analysed >= 2, "both tables have statistics, found {analysed} rows");
}

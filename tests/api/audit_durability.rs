//! The audit file under stress: rotation that keeps the chain, `audit
//! verify` against tampering across files, a file replaced underneath the
//! server, a full disk, and the database copy with its retention purge.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{TestApp, ADMIN_PASSWORD, JWT_SECRET};

/// Runs `hyper-registry audit verify` with AUDIT_LOG_FILE set, and the
/// optional explicit file; returns the exit success and standard output.
fn verify(audit_log: &Path, file: Option<&Path>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
    command.args(["audit", "verify"]);
    if let Some(file) = file {
        command.arg(file);
    }
    let output = command
        .env_clear()
        .env("AUDIT_LOG_FILE", audit_log)
        .env("DATA_DIR", audit_log.parent().expect("a directory"))
        .env("LOG_LEVEL", "error")
        .output()
        .expect("verify runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn audit_path(app: &TestApp) -> PathBuf {
    app.state.config.audit_log_file.clone()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("readable file")
        .lines()
        .map(str::to_string)
        .collect()
}

fn field(line: &str, name: &str) -> String {
    let value: Value = serde_json::from_str(line).expect("JSON line");
    value[name].as_str().unwrap_or_default().to_string()
}

/// Runs a server whose audit file rotates every 2 KiB until it rotated at
/// least three times, stops it, and returns its directory, the current file
/// and the rotated ones.
async fn rotated_trail() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let app = TestApp::spawn_with(&[("AUDIT_LOG_MAX_BYTES", "2048")]).await;
    let path = audit_path(&app);
    // The writer rotates at most once per batch, and under load one batch
    // may hold many events, so keep sending until three rotations happened.
    for _ in 0..100 {
        for _ in 0..10 {
            app.get("/auth/me", &app.admin_token).await;
        }
        if hyper_registry::audit::rotated_files(&path)
            .expect("directory readable")
            .len()
            >= 3
        {
            break;
        }
    }
    // Stopped, so that no rotation happens while the files are read.
    let data_dir = app.stop().await;
    let path = data_dir.path().join("audit.log");
    let rotated = hyper_registry::audit::rotated_files(&path).expect("directory readable");
    assert!(rotated.len() >= 3, "the file was rotated at least three times");
    (data_dir, path, rotated)
}

#[tokio::test]
async fn rotation_starts_each_file_with_a_link_to_the_last() {
    let (_data_dir, path, rotated) = rotated_trail().await;
    let mut files = rotated.clone();
    files.push(path);

    for pair in files.windows(2) {
        let previous = lines(&pair[0]);
        let next = lines(&pair[1]);
        let first = next.first().expect("a first line");
        assert_eq!(field(first, "event_type"), "audit_log_rotated");
        assert_eq!(
            field(first, "prev_hash"),
            field(previous.last().expect("a last line"), "hash"),
            "{} continues {}",
            pair[1].display(),
            pair[0].display()
        );
    }
}

#[tokio::test]
async fn verify_checks_every_rotated_file_in_order() {
    let (_data_dir, path, rotated) = rotated_trail().await;

    let (ok, output) = verify(&path, None);
    assert!(ok, "{output}");
    assert!(output.contains("hash chain intact"), "{output}");
    assert!(
        output.contains(&rotated[0].display().to_string()),
        "the rotated files are named: {output}"
    );
}

#[tokio::test]
async fn verify_accepts_a_single_rotated_file() {
    let (_data_dir, path, _rotated) = rotated_trail().await;

    let (ok, output) = verify(&path, Some(&path));

    assert!(
        ok,
        "a file that starts with a rotation event verifies on its own: {output}"
    );
}

#[tokio::test]
async fn verify_detects_a_missing_rotated_file() {
    let (_data_dir, path, rotated) = rotated_trail().await;
    std::fs::remove_file(&rotated[1]).expect("removed");

    let (ok, output) = verify(&path, None);

    assert!(!ok, "a gap in the rotated files fails: {output}");
    assert!(output.contains("chain broken"), "{output}");
}

#[tokio::test]
async fn verify_detects_tampering_in_a_rotated_file() {
    let (_data_dir, path, rotated) = rotated_trail().await;
    let mut text = lines(&rotated[1]);
    text[1] = text[1].replacen("\"description\": \"", "\"description\": \"x", 1);
    std::fs::write(&rotated[1], text.join("\n") + "\n").expect("written");

    let (ok, output) = verify(&path, None);

    assert!(!ok, "an edit in a rotated file fails: {output}");
    assert!(output.contains("line 2"), "{output}");
}

/// Rewrites the single-file trail of a fresh server with `change` applied
/// to its lines, and returns the result of `audit verify FILE`.
async fn tamper(change: impl FnOnce(&mut Vec<String>)) -> (bool, String) {
    let app = TestApp::spawn().await;
    for _ in 0..6 {
        app.get("/auth/me", &app.admin_token).await;
    }
    let data_dir = app.stop().await;
    let path = data_dir.path().join("audit.log");
    let mut text = lines(&path);
    assert!(text.len() >= 6, "enough lines to tamper with");
    change(&mut text);
    let copy = data_dir.path().join("tampered.log");
    std::fs::write(&copy, text.join("\n") + "\n").expect("written");
    let result = verify(&path, Some(&copy));
    drop(data_dir);
    result
}

#[tokio::test]
async fn verify_detects_reordered_lines() {
    let (ok, output) = tamper(|lines| lines.swap(2, 3)).await;
    assert!(!ok, "{output}");
    assert!(output.contains("line 3"), "{output}");
}

#[tokio::test]
async fn verify_detects_a_cut_head() {
    let (ok, output) = tamper(|lines| {
        lines.drain(..2);
    })
    .await;
    assert!(!ok, "a file missing its first lines fails: {output}");
    assert!(output.contains("line 1"), "{output}");
}

#[tokio::test]
async fn verify_detects_a_truncated_last_line() {
    let (ok, output) = tamper(|lines| {
        let last = lines.last_mut().expect("a last line");
        last.truncate(last.len() / 2);
    })
    .await;
    assert!(!ok, "{output}");
}

/// Polls `POST /api/v1/registry/entries` until it returns `expected`.
async fn wait_for_create_status(app: &TestApp, expected: StatusCode) -> bool {
    for attempt in 0..50 {
        // A read drives the writer, which notices the state of the file.
        app.get("/auth/me", &app.admin_token).await;
        let body = json!({"name": format!("probe-{attempt}-{}", uuid::Uuid::new_v4().simple()), "category": "service"});
        let response = app.post_json("/api/v1/registry/entries", &app.admin_token, &body).await;
        if response.status() == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn replaced_file_refuses_changes_and_resumes_when_restored() {
    // Arrange: the trail moved away and another file put in its place.
    let app = TestApp::spawn().await;
    let path = audit_path(&app);
    let moved = path.with_extension("moved");
    std::fs::rename(&path, &moved).expect("moved");
    std::fs::write(&path, "not the trail\n").expect("impostor written");

    // Act and assert: changes are refused, reads go on.
    assert!(
        wait_for_create_status(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        "changes get 503 while the file is replaced"
    );
    let read = app.get("/api/v1/registry/entries", &app.admin_token).await;
    assert_eq!(read.status(), StatusCode::OK, "reads continue");
    assert_eq!(
        std::fs::read_to_string(&path).expect("impostor"),
        "not the trail\n",
        "nothing is written into the replacement"
    );

    // Restoring the file resumes writing, and the chain contains the events
    // recorded meanwhile.
    std::fs::rename(&moved, &path).expect("restored");
    assert!(
        wait_for_create_status(&app, StatusCode::CREATED).await,
        "changes are accepted again once the file is back"
    );
    let data_dir = app.stop().await;
    let (ok, output) = verify(&data_dir.path().join("audit.log"), None);
    assert!(ok, "{output}");
    let text = std::fs::read_to_string(data_dir.path().join("audit.log")).expect("trail");
    assert!(
        text.contains("\"event_type\": \"audit_log_recovered\""),
        "the recovery is recorded"
    );
}

#[tokio::test]
async fn deleted_file_is_not_recreated() {
    let app = TestApp::spawn().await;
    let path = audit_path(&app);
    std::fs::remove_file(&path).expect("deleted");

    assert!(
        wait_for_create_status(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        "changes get 503 once the trail is gone"
    );
    assert!(!path.exists(), "a deleted trail is not silently started again");
    let read = app.get("/auth/me", &app.admin_token).await;
    assert_eq!(read.status(), StatusCode::OK, "reads continue");
}

#[tokio::test]
async fn database_copy_answers_the_admin_query() {
    let app = TestApp::spawn().await;
    let (user_id, token) = app.create_user("audit-copy@example.com", &["viewer"]).await;
    app.post_json(
        "/api/v1/registry/entries",
        &token,
        &json!({"name": "x", "category": "service"}),
    )
    .await;

    let mut found = Vec::new();
    for _ in 0..50 {
        let response = app
            .get(
                &format!("/api/v1/admin/audit?user_id={user_id}&status=denied"),
                &app.admin_token,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("JSON");
        found = body["items"].as_array().cloned().unwrap_or_default();
        if found.iter().any(|event| event["event_type"] == "permission_denied") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found.iter().any(|event| event["event_type"] == "permission_denied"),
        "the denial is in the copy: {found:?}"
    );
    assert!(
        found
            .iter()
            .all(|event| event["user_id"] == user_id.as_str() && event["status"] == "denied"),
        "only matching events: {found:?}"
    );
    assert!(found[0]["hash"].is_string());
    assert!(found[0]["prev_hash"].is_string());
}

#[tokio::test]
async fn admin_query_pages_with_a_cursor_and_filters_by_severity() {
    let app = TestApp::spawn().await;
    for _ in 0..8 {
        app.get("/auth/me", &app.admin_token).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let first: Value = app
        .get("/api/v1/admin/audit?limit=3", &app.admin_token)
        .await
        .json()
        .await
        .expect("JSON");
    let cursor = first["next_cursor"].as_str().expect("a next cursor");
    let second: Value = app
        .get(
            &format!("/api/v1/admin/audit?limit=3&cursor={cursor}"),
            &app.admin_token,
        )
        .await
        .json()
        .await
        .expect("JSON");
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|event| event["event_id"].as_str().expect("id").to_string())
            .collect()
    };
    assert_eq!(ids(&first).len(), 3);
    assert_eq!(ids(&second).len(), 3);
    assert!(
        ids(&first).iter().all(|id| !ids(&second).contains(id)),
        "pages do not overlap"
    );

    let medium: Value = app
        .get("/api/v1/admin/audit?severity=medium", &app.admin_token)
        .await
        .json()
        .await
        .expect("JSON");
    let severities: Vec<&str> = medium["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|event| event["severity"].as_str().expect("severity"))
        .collect();
    assert!(
        severities.iter().all(|s| ["medium", "high", "critical"].contains(s)),
        "{severities:?}"
    );
}

#[tokio::test]
async fn admin_query_rejects_bad_filters() {
    let app = TestApp::spawn().await;
    for query in [
        "severity=extreme",
        "status=maybe",
        "since=yesterday",
        "limit=0",
        "cursor=forged",
        "colour=red",
    ] {
        let response = app.get(&format!("/api/v1/admin/audit?{query}"), &app.admin_token).await;
        assert!(
            response.status().is_client_error(),
            "{query} gets a 4xx, not {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn admin_query_needs_audit_read() {
    let app = TestApp::spawn().await;
    let (_, token) = app.create_user("no-audit@example.com", &["user"]).await;
    let response = app.get("/api/v1/admin/audit", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn retention_purges_old_events_and_records_the_purge() {
    let app = TestApp::spawn_with(&[("AUDIT_RETENTION_DAYS", "30")]).await;
    app.get("/auth/me", &app.admin_token).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    use hyper_registry::clock::Clock;
    let later = app.clock.now() + chrono::Duration::days(31);
    let deleted = hyper_registry::audit::pipeline::purge_expired(&app.state.store, &app.state.audit, later, 30)
        .await
        .expect("purge runs");

    assert!(deleted > 0, "old events were deleted");
    let text = app.audit_text().await;
    assert!(
        text.contains("\"event_type\": \"audit_retention_purge\""),
        "the purge is itself an audit event"
    );
}

/// Sets the file-size limit of a process, as a full disk would.
fn set_file_size_limit(pid: u32, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit only reads `limit` and writes nothing back (null).
    let result = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(result, 0, "prlimit succeeded");
}

#[tokio::test]
async fn full_disk_refuses_changes_and_resumes_by_itself() {
    // Arrange: a real server process whose files may not grow past 2 MiB
    // once it is up. Its audit file is padded close to that with a valid
    // chain, so the trail hits the limit before the database does.
    let data_dir = tempfile::tempdir().expect("temp dir");
    let audit_log = data_dir.path().join("audit.log");
    let mut text = String::new();
    let mut hash = hyper_registry::audit::GENESIS_HASH.to_string();
    let mut index = 0;
    while text.len() < 2 * 1024 * 1024 - 6 * 1024 {
        let event = hyper_registry::audit::AuditEvent::new(
            chrono::Utc::now(),
            "padding",
            "padding",
            hyper_registry::audit::Status::Success,
            hyper_registry::audit::Severity::Info,
        )
        .description(format!("padding line {index} {}", "x".repeat(400)));
        let (line, next) = hyper_registry::audit::render_line(&event, &hash);
        text.push_str(&line);
        text.push('\n');
        hash = next;
        index += 1;
    }
    std::fs::write(&audit_log, &text).expect("padding written");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("serve")
        .env_clear()
        .env("BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir.path())
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data_dir.path().join("server.log")).expect("log file"))
        .spawn()
        .expect("server starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server started");
    let login: Value = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("JSON");
    let token = login["access_token"].as_str().expect("token").to_string();
    set_file_size_limit(child.id(), Some(2 * 1024 * 1024));

    // Act: requests until the trail is full.
    let create = |name: String| {
        client
            .post(format!("{base}/api/v1/registry/entries"))
            .bearer_auth(&token)
            .json(&json!({"name": name, "category": "service"}))
            .send()
    };
    let mut refused = false;
    for attempt in 0..100 {
        client
            .get(format!("{base}/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("read");
        let status = create(format!("full-{attempt}")).await.expect("create").status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            refused = true;
            break;
        }
    }
    let read = client
        .get(format!("{base}/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("read")
        .status();

    // Space comes back: writes resume without a restart.
    set_file_size_limit(child.id(), None);
    let mut resumed = false;
    for attempt in 0..50 {
        let status = create(format!("resumed-{attempt}")).await.expect("create").status();
        if status == StatusCode::CREATED {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(data_dir.path().join("server.log")).unwrap_or_default();

    // Assert
    assert!(refused, "a change got 503 once the file could not grow; log: {log}");
    assert_eq!(read, StatusCode::OK, "reads continue while the trail is full");
    assert!(resumed, "changes are accepted again once space returns; log: {log}");
    assert!(log.contains("audit log unwritable"), "the outage is raised: {log}");
    let (ok, output) = verify(&audit_log, None);
    assert!(ok, "the chain holds across the outage: {output}");
}

//! The command line, run as a separate process against a data directory.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use crate::helpers::{TestApp, ADMIN_PASSWORD, JWT_SECRET};

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
}

/// Runs the CLI on `data_dir` with the test's secrets, feeding `stdin`.
fn run(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    run_with_database(data_dir, None, args, stdin)
}

/// Runs the CLI against the same database as the running `app`.
fn run_on(app: &TestApp, args: &[&str], stdin: &str) -> Output {
    let database_url = app.state.config.database_url.expose().to_string();
    run_with_database(app.data_dir.path(), Some(&database_url), args, stdin)
}

fn run_with_database(data_dir: &std::path::Path, database_url: Option<&str>, args: &[&str], stdin: &str) -> Output {
    let mut command = binary();
    command.args(args).env_clear().env("DATA_DIR", data_dir);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("LOG_LEVEL", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("CLI starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("CLI finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn secret_generate_prints_32_bytes() {
    let output = binary().args(["secret", "generate"]).output().unwrap();

    assert!(output.status.success());
    let printed = text(&output.stdout);
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(printed.trim())
        .unwrap();
    assert_eq!(decoded.len(), 32);
}

#[test]
fn short_jwt_secret_stops_with_variable_name() {
    let data = tempfile::tempdir().unwrap();
    let output = binary()
        .args(["serve"])
        .env_clear()
        .env("DATA_DIR", data.path())
        .env("JWT_SECRET_KEY", "short-secret-value")
        .output()
        .unwrap();

    assert!(!output.status.success(), "start-up refused");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("JWT_SECRET_KEY"), "names the variable: {stderr}");
    assert!(
        !stderr.contains("short-secret-value"),
        "never echoes the secret: {stderr}"
    );
}

#[test]
fn users_create_reads_password_from_stdin() {
    let data = tempfile::tempdir().unwrap();

    let output = run(
        data.path(),
        &["users", "create", "--username", "carol", "--role", "viewer"],
        "carol-long-passphrase\n",
    );

    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("created user carol"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn users_create_rejects_common_password() {
    let data = tempfile::tempdir().unwrap();

    let output = run(
        data.path(),
        &["users", "create", "--username", "carol"],
        "password123\n",
    );

    assert!(!output.status.success());
}

#[tokio::test]
async fn users_disable_stops_login() {
    let app = TestApp::spawn().await;
    app.create_user("dave", &["user"]).await;

    let output = run_on(&app, &["users", "disable", "dave"], "");

    assert!(output.status.success(), "{}", text(&output.stderr));
    let response = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"username": "dave", "password": crate::helpers::USER_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403, "a disabled account cannot log in");
}

#[tokio::test]
async fn users_set_roles_refuses_last_admin_demotion() {
    let app = TestApp::spawn().await;

    let output = run_on(&app, &["users", "set-roles", "admin", "--role", "viewer"], "");

    assert!(!output.status.success(), "the last administrator stays");
    assert!(
        text(&output.stderr).contains("last active administrator"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn keys_create_then_revoke() {
    let app = TestApp::spawn().await;

    let created = run_on(
        &app,
        &[
            "keys",
            "create",
            "--user",
            "admin",
            "--name",
            "ci",
            "--permission",
            "read",
        ],
        "",
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let key = text(&created.stdout).trim().to_string();
    let with_key = app
        .client
        .get(app.url("/api/v1/registry/entries"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(with_key.status(), 200, "the printed key works");

    let key_id = key.split('_').nth(1).unwrap().to_string();
    let revoked = run_on(&app, &["keys", "revoke", &key_id], "");
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    // The CLI stamps the revocation with the wall clock, which runs ahead of
    // the server's paused test clock.
    app.clock.advance(chrono::Duration::seconds(5));
    let after = app
        .client
        .get(app.url("/api/v1/registry/entries"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "the revoked key stops at once");
}

#[tokio::test]
async fn roles_create_and_list() {
    let app = TestApp::spawn().await;

    let created = run_on(
        &app,
        &[
            "roles",
            "create",
            "data_analyst",
            "--permission",
            "read",
            "--permission",
            "search",
            "--permission",
            "analytics:read",
        ],
        "",
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let cycle = run_on(&app, &["roles", "create", "loop", "--inherits", "loop"], "");
    assert!(!cycle.status.success(), "an unknown or cyclic parent is refused");

    let listed = run_on(&app, &["roles", "list"], "");
    assert!(
        text(&listed.stdout).contains("\"name\":\"data_analyst\""),
        "{}",
        text(&listed.stdout)
    );
}

#[tokio::test]
async fn audit_verify_detects_edit() {
    let app = TestApp::spawn().await;
    app.get("/auth/me", &app.admin_token).await;
    let data = app.stop().await;
    let log = data.path().join("audit.log");

    let intact = run(data.path(), &["audit", "verify", log.to_str().unwrap()], "");
    assert!(intact.status.success(), "{}", text(&intact.stdout));

    let original = std::fs::read_to_string(&log).unwrap();
    let edited_line = original
        .lines()
        .position(|line| line.contains("\"severity\": \"info\""))
        .expect("an info line")
        + 1;
    let edited = original.replacen("\"severity\": \"info\"", "\"severity\": \"low\"", 1);
    std::fs::write(&log, edited).unwrap();
    let broken = run(data.path(), &["audit", "verify", log.to_str().unwrap()], "");
    assert!(!broken.status.success(), "an edited line is detected");
    assert!(
        text(&broken.stdout).contains(&format!("line {edited_line}:")),
        "{}",
        text(&broken.stdout)
    );
}

#[test]
fn import_cli_reports_duplicates() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("entries.jsonl");
    let line = json!({"name": "dup", "category": "service"}).to_string();
    std::fs::write(&file, format!("{line}\n{line}\nnot json\n")).unwrap();

    let output = run(data.path(), &["import", file.to_str().unwrap()], "");

    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("1 created"), "{stdout}");
    assert!(stdout.contains("already_exists: 1"), "{stdout}");
    assert!(stdout.contains("invalid_json: 1"), "{stdout}");
}

#[tokio::test]
async fn cli_and_server_share_audit_chain() {
    let app = TestApp::spawn().await;
    app.get("/auth/me", &app.admin_token).await;

    let created = run_on(
        &app,
        &["keys", "create", "--user", "admin", "--name", "interleaved"],
        "",
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    app.get("/auth/me", &app.admin_token).await;
    let data = app.stop().await;

    let log = data.path().join("audit.log");
    let verified = run(data.path(), &["audit", "verify", log.to_str().unwrap()], "");
    assert!(
        verified.status.success(),
        "server and CLI lines form one chain: {}",
        text(&verified.stdout)
    );
}

#[tokio::test]
async fn keys_create_over_limit_fails() {
    // The CLI runs with the default API_KEY_MAX_PER_USER of 20.
    let app = TestApp::spawn().await;
    for i in 0..20 {
        app.create_api_key(&app.admin_token, &json!({"name": format!("filler-{i}")}))
            .await;
    }

    let output = run_on(
        &app,
        &["keys", "create", "--user", "admin", "--name", "one-too-many"],
        "",
    );

    assert!(!output.status.success(), "the 21st key is refused");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("API_KEY_MAX_PER_USER"), "names the setting: {stderr}");
    assert!(stderr.contains("20"), "names the limit: {stderr}");
}

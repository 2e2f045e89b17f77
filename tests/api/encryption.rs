//! Encryption at rest: no plaintext in the database files, the audit log or
//! the application log; unique nonces; the key check at start-up; rotation
//! with `ENCRYPTION_KEY_PREVIOUS` and `hyper-registry encryption rewrap`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use hyper_registry::storage::{EncryptedField, SharedStore};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fresh_postgres_schema_url, TestApp, ADMIN_PASSWORD, JWT_SECRET, USER_PASSWORD};

const KEY_OLD: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_NEW: &str = "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=";
const SENSITIVE_MARKER: &str = "plaintext-canary-5d1f9e";
/// Keeps a test on the default SQLite file in DATA_DIR even when
/// `TEST_BACKEND=postgres` moves the suite to PostgreSQL: an empty value
/// counts as unset.
pub const DEFAULT_SQLITE: (&str, &str) = ("DATABASE_URL", "");

fn key_id(key_base64: &str) -> Vec<u8> {
    let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .unwrap()
        .try_into()
        .unwrap();
    hyper_registry::crypto::key_id(&bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn sensitive_body(name: &str) -> Value {
    json!({
        "name": name,
        "category": "service",
        "sensitive": {"deploy_token": SENSITIVE_MARKER, "nested": {"password": "nested-canary-88ab"}},
    })
}

fn database_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("hyper_registry.db")
}

/// Every stored ciphertext of the SQLite database at `path`, with its row.
async fn sqlite_ciphertexts(path: &Path) -> Vec<(String, Vec<u8>)> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT id, sensitive FROM entries WHERE sensitive IS NOT NULL \
         UNION ALL SELECT user_id, secret FROM user_mfa WHERE secret IS NOT NULL \
         UNION ALL SELECT user_id, pending_secret FROM user_mfa WHERE pending_secret IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows
}

/// The stored key-check ciphertext of the SQLite database at `path`.
async fn sqlite_key_check(path: &Path) -> Vec<u8> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let value: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM encryption_key_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    value
}

/// Runs the CLI with `ENCRYPTION_KEY=key` and `previous` on `data_dir`.
fn run_cli(data_dir: &Path, database_url: Option<&str>, key: &str, previous: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
    command
        .args(args)
        .env_clear()
        .env("DATA_DIR", data_dir)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ENCRYPTION_KEY", key)
        .env("LOG_LEVEL", "error")
        .stdin(Stdio::null());
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    if let Some(previous) = previous {
        command.env("ENCRYPTION_KEY_PREVIOUS", previous);
    }
    command.output().expect("CLI runs")
}

/// Starts `serve` with `key` on `data_dir`, expects it to stop by itself
/// within 30 s, and returns its standard error.
async fn serve_refused(data_dir: &Path, key: &str, previous: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
    command
        .arg("serve")
        .env_clear()
        .env("BIND_ADDRESS", "127.0.0.1:0")
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ENCRYPTION_KEY", key)
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(previous) = previous {
        command.env("ENCRYPTION_KEY_PREVIOUS", previous);
    }
    let mut child = command.spawn().expect("server starts");
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (!status.success(), String::from_utf8_lossy(&output.stderr).into_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    (false, "still running after 30 s".into())
}

#[tokio::test]
async fn sensitive_values_absent_from_sqlite_files() {
    let app = TestApp::spawn_with(&[DEFAULT_SQLITE]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    for index in 0..5 {
        app.create_entry(&token, &sensitive_body(&format!("secret-holder-{index}")))
            .await;
    }
    let setup: Value = app
        .request(Method::POST, "/auth/mfa/setup", Some(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_base32 = setup["secret"].as_str().unwrap().to_string();
    let totp_raw = totp_rs::Secret::Encoded(totp_base32.clone()).to_bytes().unwrap();

    // While the server runs, recent writes sit in the WAL.
    let data_dir = app.data_dir.path().to_path_buf();
    let mut files_seen = 0;
    for file in ["hyper_registry.db", "hyper_registry.db-wal", "hyper_registry.db-shm"] {
        let Ok(bytes) = std::fs::read(data_dir.join(file)) else {
            continue;
        };
        files_seen += 1;
        assert!(
            !contains(&bytes, SENSITIVE_MARKER.as_bytes()),
            "sensitive value in {file}"
        );
        assert!(
            !contains(&bytes, b"nested-canary-88ab"),
            "nested sensitive value in {file}"
        );
        assert!(
            !contains(&bytes, totp_base32.as_bytes()),
            "base32 TOTP secret in {file}"
        );
        assert!(!contains(&bytes, &totp_raw), "raw TOTP secret in {file}");
    }
    assert!(files_seen >= 2, "the database and its WAL were read");

    let stopped = app.stop().await;
    let bytes = std::fs::read(database_file(stopped.path())).unwrap();
    assert!(!contains(&bytes, SENSITIVE_MARKER.as_bytes()), "after checkpoint");
    assert!(!contains(&bytes, &totp_raw), "TOTP secret after checkpoint");
}

#[tokio::test]
async fn sensitive_values_absent_from_postgres_tables() {
    let Some(database_url) = fresh_postgres_schema_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let app = TestApp::spawn_with(&[("DATABASE_URL", database_url.as_str())]).await;
    let (_, token) = app.create_user("alice", &["user"]).await;
    app.create_entry(&token, &sensitive_body("pg-secret-holder")).await;
    let setup: Value = app
        .request(Method::POST, "/auth/mfa/setup", Some(&token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_base32 = setup["secret"].as_str().unwrap().to_string();
    let totp_raw_hex = hex::encode(totp_rs::Secret::Encoded(totp_base32.clone()).to_bytes().unwrap());

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url)
        .await
        .unwrap();
    let mut dumped = String::new();
    for table in ["entries", "user_mfa", "users", "audit_events", "encryption_key_check"] {
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
            .fetch_all(&pool)
            .await
            .unwrap();
        dumped.push_str(&rows.join("\n"));
    }
    pool.close().await;

    assert!(dumped.contains("pg-secret-holder"), "the dump has the entry");
    assert!(!dumped.contains(SENSITIVE_MARKER), "sensitive value as text");
    assert!(
        !dumped.contains(&hex::encode(SENSITIVE_MARKER)),
        "sensitive value as bytea hex"
    );
    assert!(!dumped.contains(&totp_base32), "base32 TOTP secret");
    assert!(!dumped.contains(&totp_raw_hex), "raw TOTP secret as bytea hex");
}

/// A server process with its standard output and error captured to a file.
struct LoggedServer {
    child: std::process::Child,
    base_url: String,
    log_path: std::path::PathBuf,
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_logged_server(data_dir: &Path) -> LoggedServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = data_dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("serve")
        .env_clear()
        .env("BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ENCRYPTION_KEY", KEY_OLD)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("LOG_LEVEL", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("server starts");
    let server = LoggedServer {
        child,
        base_url: format!("http://127.0.0.1:{port}"),
        log_path,
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{}/health", server.base_url)).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server did not start within 30 s");
}

#[tokio::test]
async fn sensitive_values_absent_from_logs() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = start_logged_server(data_dir.path()).await;
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/auth/login", server.base_url))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();

    let created: Value = client
        .post(format!("{}/api/v1/registry/entries", server.base_url))
        .bearer_auth(&token)
        .json(&sensitive_body("logged-secret-holder"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let read = client
        .get(format!("{}/api/v1/registry/entries/{id}", server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let setup: Value = client
        .post(format!("{}/auth/mfa/setup", server.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_base32 = setup["secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let application_log = std::fs::read_to_string(&server.log_path).unwrap();
    let audit_log = std::fs::read_to_string(data_dir.path().join("audit.log")).unwrap();
    assert!(!application_log.is_empty(), "the trace log was captured");
    assert!(
        audit_log.contains("/api/v1/registry/entries"),
        "the audit log has the requests"
    );
    for (name, text) in [("application log", &application_log), ("audit log", &audit_log)] {
        assert!(!text.contains(SENSITIVE_MARKER), "sensitive value in the {name}");
        assert!(
            !text.contains("nested-canary-88ab"),
            "nested sensitive value in the {name}"
        );
        assert!(!text.contains(&totp_base32), "TOTP secret in the {name}");
        assert!(!text.contains(KEY_OLD), "encryption key in the {name}");
    }
}

/// Records the (key id, nonce) pairs and ciphertexts of `rows`, counting a
/// row that still holds the same ciphertext as already seen only once.
fn collect(seen: &mut HashMap<(String, Vec<u8>), ()>, rows: Vec<(String, Vec<u8>)>) {
    for (row, ciphertext) in rows {
        seen.insert((row, ciphertext), ());
    }
}

#[tokio::test]
async fn nonces_unique_across_restart_backup_and_rewrap() {
    let first = TestApp::spawn_with(&[("ENCRYPTION_KEY", KEY_OLD), DEFAULT_SQLITE]).await;
    let data_path = first.data_dir.path().to_string_lossy().to_string();
    for index in 0..50 {
        first
            .create_entry(&first.admin_token, &sensitive_body(&format!("same-value-{index}")))
            .await;
    }
    let data_dir = first.stop().await;
    let mut seen = HashMap::new();
    collect(&mut seen, sqlite_ciphertexts(&database_file(data_dir.path())).await);

    // The same value again after a restart.
    let restarted = TestApp::spawn_with(&[
        ("ENCRYPTION_KEY", KEY_OLD),
        ("DATA_DIR", data_path.as_str()),
        DEFAULT_SQLITE,
    ])
    .await;
    for index in 50..100 {
        restarted
            .create_entry(&restarted.admin_token, &sensitive_body(&format!("same-value-{index}")))
            .await;
    }
    restarted.stop().await;
    collect(&mut seen, sqlite_ciphertexts(&database_file(data_dir.path())).await);

    // A backup, restored by pointing DATABASE_URL at it, then more writes.
    let backup = data_dir.path().join("copy.db");
    let output = run_cli(
        data_dir.path(),
        None,
        KEY_OLD,
        None,
        &["backup", "--out", backup.to_str().unwrap()],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let backup_url = format!("sqlite://{}", backup.display());
    let restored = TestApp::spawn_with(&[
        ("ENCRYPTION_KEY", KEY_OLD),
        ("DATA_DIR", data_path.as_str()),
        ("DATABASE_URL", backup_url.as_str()),
    ])
    .await;
    for index in 100..150 {
        restored
            .create_entry(&restored.admin_token, &sensitive_body(&format!("same-value-{index}")))
            .await;
    }
    restored.stop().await;
    collect(&mut seen, sqlite_ciphertexts(&backup).await);
    collect(&mut seen, sqlite_ciphertexts(&database_file(data_dir.path())).await);

    // Rewrap both databases under a new key.
    for url in [None, Some(backup_url.as_str())] {
        let output = run_cli(data_dir.path(), url, KEY_NEW, Some(KEY_OLD), &["encryption", "rewrap"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    }
    collect(&mut seen, sqlite_ciphertexts(&backup).await);
    collect(&mut seen, sqlite_ciphertexts(&database_file(data_dir.path())).await);

    assert!(seen.len() >= 150 + 150 + 100, "values collected: {}", seen.len());
    let mut pairs = HashSet::new();
    let mut bodies = HashSet::new();
    for (_, ciphertext) in seen.keys() {
        let (key_and_nonce, body) = ciphertext.split_at(8 + 12);
        assert!(pairs.insert(key_and_nonce.to_vec()), "repeated (key id, nonce) pair");
        assert!(bodies.insert(body.to_vec()), "repeated ciphertext");
    }
}

#[tokio::test]
async fn wrong_key_refused_at_startup() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", KEY_OLD), DEFAULT_SQLITE]).await;
    let data_dir = app.stop().await;

    let (refused, stderr) = serve_refused(data_dir.path(), KEY_NEW, None).await;

    assert!(refused, "start-up refused: {stderr}");
    assert!(stderr.contains("ENCRYPTION_KEY: does not match"), "{stderr}");
    assert!(
        stderr.contains("ENCRYPTION_KEY_PREVIOUS"),
        "names the rotation fix: {stderr}"
    );
    assert!(
        stderr.contains(&hex::encode(key_id(KEY_OLD))),
        "names the stored key id: {stderr}"
    );
    assert!(!stderr.contains(KEY_NEW), "no key in the message: {stderr}");
    assert!(!stderr.contains(KEY_OLD), "no key in the message: {stderr}");
}

#[tokio::test]
async fn wrong_key_refused_for_data_without_key_check() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", KEY_OLD), DEFAULT_SQLITE]).await;
    app.create_entry(&app.admin_token, &sensitive_body("older-data")).await;
    let data_dir = app.stop().await;
    // A database from before the key check existed has values but no check.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", database_file(data_dir.path()).display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM encryption_key_check")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (refused, stderr) = serve_refused(data_dir.path(), KEY_NEW, None).await;

    assert!(refused, "start-up refused: {stderr}");
    assert!(stderr.contains("ENCRYPTION_KEY"), "{stderr}");
    assert!(stderr.contains("entry sensitive values"), "names what failed: {stderr}");
}

#[tokio::test]
async fn first_start_writes_key_check() {
    let app = TestApp::spawn_with(&[("ENCRYPTION_KEY", KEY_OLD), DEFAULT_SQLITE]).await;
    let data_dir = app.stop().await;

    let check = sqlite_key_check(&database_file(data_dir.path())).await;

    assert_eq!(&check[..8], key_id(KEY_OLD).as_slice(), "made with the configured key");
}

/// Enrols the user of `token` in MFA and returns the base32 secret.
async fn enrol_mfa(app: &TestApp, token: &str) -> String {
    let setup: Value = app
        .request(Method::POST, "/auth/mfa/setup", Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_string();
    let code = totp_code(app, &secret);
    let confirm = app
        .post_json("/auth/mfa/confirm", token, &json!({ "code": code }))
        .await;
    assert_eq!(confirm.status(), StatusCode::OK, "MFA confirmed");
    secret
}

fn totp_code(app: &TestApp, secret_base32: &str) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_string()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).unwrap();
    totp.generate(app.state.clock.now().timestamp() as u64)
}

#[tokio::test]
async fn rotation_with_previous_key_and_rewrap() {
    // Data under the old key: an entry and a TOTP secret.
    let before = TestApp::spawn_with(&[("ENCRYPTION_KEY", KEY_OLD), DEFAULT_SQLITE]).await;
    let data_path = before.data_dir.path().to_string_lossy().to_string();
    let (_, token) = before.create_user("alice", &["user"]).await;
    let entry = before.create_entry(&token, &sensitive_body("rotated-entry")).await;
    let entry_path = format!("/api/v1/registry/entries/{}", entry["id"].as_str().unwrap());
    let totp_secret = enrol_mfa(&before, &token).await;
    let data_dir = before.stop().await;

    // Without the old key the new one is refused.
    let (refused, stderr) = serve_refused(data_dir.path(), KEY_NEW, None).await;
    assert!(refused, "new key alone refused before the rewrap: {stderr}");

    // With the old key in ENCRYPTION_KEY_PREVIOUS everything still decrypts,
    // and the rewrap runs while this server serves.
    let during = TestApp::spawn_with(&[
        ("ENCRYPTION_KEY", KEY_NEW),
        ("ENCRYPTION_KEY_PREVIOUS", KEY_OLD),
        ("DATA_DIR", data_path.as_str()),
        DEFAULT_SQLITE,
    ])
    .await;
    let read: Value = during.get(&entry_path, &during.admin_token).await.json().await.unwrap();
    assert_eq!(
        read["sensitive"]["deploy_token"], SENSITIVE_MARKER,
        "old key still decrypts"
    );
    let output = run_cli(data_dir.path(), None, KEY_NEW, Some(KEY_OLD), &["encryption", "rewrap"]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("entry sensitive values: 1 rewrapped"), "{stdout}");
    assert!(stdout.contains("TOTP secrets: 1 rewrapped"), "{stdout}");
    let read: Value = during.get(&entry_path, &during.admin_token).await.json().await.unwrap();
    assert_eq!(
        read["sensitive"]["deploy_token"], SENSITIVE_MARKER,
        "readable after the rewrap"
    );
    during.stop().await;

    let new_id = key_id(KEY_NEW);
    for (row, ciphertext) in sqlite_ciphertexts(&database_file(data_dir.path())).await {
        assert_eq!(&ciphertext[..8], new_id.as_slice(), "row {row} under the new key");
    }
    assert_eq!(
        &sqlite_key_check(&database_file(data_dir.path())).await[..8],
        new_id.as_slice(),
        "key check under the new key"
    );

    // A second run has nothing left to do.
    let again = run_cli(data_dir.path(), None, KEY_NEW, Some(KEY_OLD), &["encryption", "rewrap"]);
    let again_stdout = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{again_stdout}");
    assert!(
        again_stdout.contains("entry sensitive values: 0 rewrapped, 1 already under the current key"),
        "{again_stdout}"
    );

    // The old key can now be dropped; it alone is refused.
    let after = TestApp::spawn_with(&[
        ("ENCRYPTION_KEY", KEY_NEW),
        ("DATA_DIR", data_path.as_str()),
        DEFAULT_SQLITE,
    ])
    .await;
    let read: Value = after.get(&entry_path, &after.admin_token).await.json().await.unwrap();
    assert_eq!(
        read["sensitive"]["deploy_token"], SENSITIVE_MARKER,
        "new key alone decrypts"
    );
    // The code of the confirmation's time step was spent; use the next one.
    after.clock.advance(chrono::Duration::seconds(30));
    let login = after
        .client
        .post(after.url("/auth/login"))
        .json(&json!({"username": "alice", "password": USER_PASSWORD, "totp_code": totp_code(&after, &totp_secret)}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK, "TOTP secret decrypts under the new key");
    after.stop().await;
    let (refused, stderr) = serve_refused(data_dir.path(), KEY_OLD, None).await;
    assert!(refused, "old key refused after the rewrap: {stderr}");
}

/// Opens a store for each backend under test: SQLite always, PostgreSQL
/// when `TEST_DATABASE_URL` is set.
async fn stores(directory: &Path) -> Vec<(&'static str, SharedStore)> {
    let sqlite_url = format!("sqlite://{}", directory.join("store.db").display());
    let mut stores = vec![("sqlite", hyper_registry::storage::connect(&sqlite_url).await.unwrap())];
    if let Some(url) = fresh_postgres_schema_url().await {
        stores.push(("postgres", hyper_registry::storage::connect(&url).await.unwrap()));
    }
    stores
}

#[tokio::test]
async fn replace_encrypted_value_loses_to_concurrent_write() {
    let directory = tempfile::tempdir().unwrap();
    for (backend, store) in stores(directory.path()).await {
        let owner = uuid::Uuid::new_v4();
        let now = chrono::Utc::now();
        store
            .insert_user(&hyper_registry::storage::User {
                id: owner,
                username: format!("owner-{owner}"),
                password_hash: "unused".into(),
                roles: vec!["user".into()],
                disabled: false,
                failed_logins: 0,
                locked_until: None,
                mfa_enabled: false,
                tokens_valid_after: now,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
        let id = uuid::Uuid::new_v4();
        let entry = hyper_registry::storage::StoredEntry {
            id,
            category: "service".into(),
            name: "raced".into(),
            title: "raced".into(),
            description: String::new(),
            status: "active".into(),
            version: None,
            tags: vec![],
            metadata: json!({}),
            sensitive: Some(b"written-by-a-request".to_vec()),
            owner_id: owner,
            revision: 1,
            created_at: now,
            updated_at: now,
        };
        store.insert_entry(&entry).await.unwrap();

        let stale = store
            .replace_encrypted_value(
                EncryptedField::EntrySensitive,
                id,
                b"what-the-rewrap-read",
                b"rewrapped",
            )
            .await
            .unwrap();
        let current = store
            .replace_encrypted_value(
                EncryptedField::EntrySensitive,
                id,
                b"written-by-a-request",
                b"rewrapped",
            )
            .await
            .unwrap();

        assert!(!stale, "{backend}: a changed value is not replaced");
        assert!(current, "{backend}: an unchanged value is replaced");
        let listed = store
            .list_encrypted_values(EncryptedField::EntrySensitive, None, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{backend}");
        assert_eq!(listed[0].ciphertext, b"rewrapped", "{backend}");
        let after = store
            .list_encrypted_values(EncryptedField::EntrySensitive, Some(id), 10)
            .await
            .unwrap();
        assert!(after.is_empty(), "{backend}: paging starts after the given id");
    }
}

#[tokio::test]
async fn key_check_inserted_once() {
    let directory = tempfile::tempdir().unwrap();
    for (backend, store) in stores(directory.path()).await {
        let now = chrono::Utc::now();
        assert!(
            store.find_key_check().await.unwrap().is_none(),
            "{backend}: empty at first"
        );
        assert!(store.insert_key_check(b"first", now).await.unwrap(), "{backend}");
        assert!(
            !store.insert_key_check(b"second", now).await.unwrap(),
            "{backend}: kept the first"
        );
        assert!(
            !store.replace_key_check(b"stale", b"third", now).await.unwrap(),
            "{backend}"
        );
        assert!(
            store.replace_key_check(b"first", b"third", now).await.unwrap(),
            "{backend}"
        );
        assert_eq!(
            store.find_key_check().await.unwrap().as_deref(),
            Some(&b"third"[..]),
            "{backend}"
        );
    }
}

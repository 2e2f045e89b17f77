//! The test harness: spawns the application exactly as `main` does, on
//! 127.0.0.1:0 with a temporary data directory and a manual clock.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use hyper_registry::app::AppState;
use hyper_registry::clock::{Clock, ManualClock};
use hyper_registry::config::Config;
use hyper_registry::startup::Application;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-passphrase-1";
pub const USER_PASSWORD: &str = "test-user-passphrase-1";
pub const JWT_SECRET: &str = "integration-test-jwt-secret-0123456789abcdef";

pub struct TestApp {
    pub base_url: String,
    pub client: Client,
    pub data_dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub admin_token: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Spawns with generous rate limits, so only rate-limit tests meet them.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Spawns with extra or overriding configuration variables.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> TestApp {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let data_path = data_dir.path().to_string_lossy().to_string();
        let mut vars: Vec<(String, String)> = vec![
            ("BIND_ADDRESS".into(), "127.0.0.1:0".into()),
            ("DATA_DIR".into(), data_path),
            ("ADMIN_USERNAME".into(), ADMIN_USERNAME.into()),
            ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
            ("JWT_SECRET_KEY".into(), JWT_SECRET.into()),
            ("RATE_LIMIT_PER_MINUTE".into(), "100000".into()),
            ("LOGIN_RATE_LIMIT_PER_MINUTE".into(), "100000".into()),
            (
                "LOG_LEVEL".into(),
                std::env::var("TEST_LOG_LEVEL").unwrap_or_else(|_| "error".into()),
            ),
        ];
        if let Some(url) = postgres_schema_url().await {
            vars.push(("DATABASE_URL".into(), url));
        }
        for (name, value) in overrides {
            vars.retain(|(existing, _)| existing != name);
            vars.push((name.to_string(), value.to_string()));
        }
        let config = Config::from_vars(vars).expect("valid test configuration");
        if std::env::var("TEST_LOG_LEVEL").is_ok() {
            hyper_registry::telemetry::init(&config.log_level, config.log_format);
        }

        let clock = Arc::new(ManualClock::new(Utc::now()));
        let application = Application::build_with_clock(config, Some(clock.clone() as Arc<dyn Clock>))
            .await
            .expect("application builds");
        let address = application.local_addr().expect("bound address");
        let state = application.state().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = application
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });

        let client = Client::builder().build().expect("HTTP client");
        let mut app = TestApp {
            base_url: format!("http://{address}"),
            client,
            data_dir,
            clock,
            state,
            admin_token: String::new(),
            shutdown: Some(shutdown),
            server: Some(server),
        };
        app.admin_token = app.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Builds a request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(token))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// Logs in and returns the access token; panics on failure.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.url("/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login sent");
        assert_eq!(response.status(), 200, "login of {username} failed");
        let body: Value = response.json().await.expect("login body");
        body["access_token"].as_str().expect("access_token").to_string()
    }

    /// Creates a user with `roles` through the admin API; returns its id and a token.
    pub async fn create_user(&self, username: &str, roles: &[&str]) -> (String, String) {
        let response = self
            .post_json(
                "/api/v1/admin/users",
                &self.admin_token,
                &json!({"username": username, "password": USER_PASSWORD, "roles": roles}),
            )
            .await;
        assert_eq!(response.status(), 201, "creating {username} failed");
        let body: Value = response.json().await.expect("user body");
        let id = body["id"].as_str().expect("user id").to_string();
        let token = self.login(username, USER_PASSWORD).await;
        (id, token)
    }

    /// Creates an entry as `token`; returns the response body.
    pub async fn create_entry(&self, token: &str, body: &Value) -> Value {
        let response = self.post_json("/api/v1/registry/entries", token, body).await;
        assert_eq!(response.status(), 201, "creating entry {body} failed");
        response.json().await.expect("entry body")
    }

    /// Reads every line of the audit log, parsed as JSON. Waits briefly for the
    /// writer, which runs on its own thread.
    pub async fn audit_lines(&self) -> Vec<Value> {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let path = self.data_dir.path().join("audit.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
            .collect()
    }

    /// Reads the raw audit log text.
    pub async fn audit_text(&self) -> String {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        std::fs::read_to_string(self.data_dir.path().join("audit.log")).unwrap_or_default()
    }

    /// Stops the server gracefully and waits for it (flushing the audit log).
    pub async fn stop(mut self) -> TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let TestApp { data_dir, .. } = self;
        data_dir
    }
}

/// Returns the problem `code` of an error response, asserting the problem shape.
pub async fn problem_code(response: Response) -> String {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(
        content_type, "application/problem+json",
        "error responses are problem documents"
    );
    let body: Value = response.json().await.expect("problem body");
    for field in ["type", "title", "status", "detail", "code", "request_id"] {
        assert!(body.get(field).is_some(), "problem lacks `{field}`: {body}");
    }
    body["code"].as_str().unwrap_or_default().to_string()
}

/// The 300-package PyPI sample, one entry per line in the import format.
pub const PYPI_SAMPLE: &str = include_str!("../data/pypi-sample.jsonl");

/// Posts `body` to the import endpoint as `application/x-ndjson`. The `query`
/// string is appended to the path unchanged, e.g. `"?on_conflict=update"`.
pub async fn import_ndjson(app: &TestApp, token: &str, query: &str, body: impl Into<reqwest::Body>) -> Response {
    app.request(Method::POST, &format!("/api/v1/registry/import{query}"), Some(token))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("import request sent")
}

/// Lists every entry visible to `token`, following `next_cursor` to the end.
pub async fn list_all_entries(app: &TestApp, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = "/api/v1/registry/entries?limit=100".to_string();
    loop {
        let response = app.get(&path, token).await;
        assert_eq!(response.status(), 200, "listing {path} failed");
        let page: Value = response.json().await.expect("list body");
        items.extend(page["items"].as_array().expect("items array").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/registry/entries?limit=100&cursor={cursor}"),
            None => return items,
        }
    }
}

/// Returns, with `TEST_BACKEND=postgres`, a URL for a fresh schema on the
/// `TEST_DATABASE_URL` server, so that the whole HTTP suite runs on
/// PostgreSQL with each test isolated. Returns `None` otherwise (SQLite).
async fn postgres_schema_url() -> Option<String> {
    if std::env::var("TEST_BACKEND").ok()?.as_str() != "postgres" {
        return None;
    }
    Some(
        fresh_postgres_schema_url()
            .await
            .expect("TEST_BACKEND=postgres needs TEST_DATABASE_URL"),
    )
}

/// Creates a new, empty schema on the `TEST_DATABASE_URL` server and returns
/// a URL that uses it, or `None` when that variable is unset.
pub async fn fresh_postgres_schema_url() -> Option<String> {
    let base_url = std::env::var("TEST_DATABASE_URL").ok()?;
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&base_url)
        .await
        .unwrap_or_else(|error| panic!("TEST_DATABASE_URL cannot be reached: {error}"));
    // Identifiers cannot be bound; the name is made of a UUID's hex digits.
    let name = format!("h_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
        .execute(&admin)
        .await
        .expect("test schema created");
    admin.close().await;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Some(format!("{base_url}{separator}options=-csearch_path%3D{name}"))
}

/// Returns a port on 127.0.0.1 that was free a moment ago: a listener is
/// bound to port 0 and dropped. Another process may take it in between.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind to port 0");
    listener.local_addr().expect("local address").port()
}

/// Calls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub async fn poll_until<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Fetches the Prometheus text of the metrics listener on `port`.
pub async fn scrape_metrics(port: u16) -> String {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics request sent");
    assert_eq!(response.status(), 200, "the metrics listener serves /metrics");
    response.text().await.expect("metrics text")
}

/// Returns the value of the sample whose line starts with `series` (name and
/// labels exactly as rendered), if there is one.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

impl TestApp {
    /// Builds a request authenticated with `X-API-Key: key`.
    pub fn request_with_key(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).header("x-api-key", key)
    }

    /// Creates an API key as `token`; returns the creation response body,
    /// whose `key` field carries the key itself.
    pub async fn create_api_key(&self, token: &str, body: &Value) -> Value {
        let response = self.post_json("/api/v1/keys", token, body).await;
        assert_eq!(response.status(), 201, "creating key {body} failed");
        response.json().await.expect("key body")
    }

    /// Reads the audit log as it is on disk now, without waiting. Security
    /// events are synced before their response is sent, so they are always
    /// there; `access` lines may still be queued in the writer.
    pub fn audit_lines_on_disk(&self) -> Vec<Value> {
        let path = self.data_dir.path().join("audit.log");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
            .collect()
    }
}

/// Counts the rows of `table` directly in the test server's database,
/// SQLite or PostgreSQL, bypassing the API. `table` must be a fixed name.
pub async fn count_rows(app: &TestApp, table: &str) -> i64 {
    let statement = format!("SELECT COUNT(*) FROM {table}");
    let url = app.state.config.database_url.expose();
    if app.state.config.uses_sqlite() {
        let pool = open_sqlite_read_only(url).await;
        let count: i64 = sqlx::query_scalar(&statement)
            .fetch_one(&pool)
            .await
            .expect("rows counted");
        pool.close().await;
        count
    } else {
        let pool = open_postgres(url).await;
        let count: i64 = sqlx::query_scalar(&statement)
            .fetch_one(&pool)
            .await
            .expect("rows counted");
        pool.close().await;
        count
    }
}

/// Reads the stored `sensitive` column of entry `id` directly from the test
/// server's database, as an attacker with a copy of it would see it.
/// Returns `None` when the entry has no sensitive value.
pub async fn raw_entry_sensitive(app: &TestApp, id: &str) -> Option<Vec<u8>> {
    let url = app.state.config.database_url.expose();
    if app.state.config.uses_sqlite() {
        let pool = open_sqlite_read_only(url).await;
        let value: Option<Vec<u8>> = sqlx::query_scalar("SELECT sensitive FROM entries WHERE id = ?")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("entry row read");
        pool.close().await;
        value
    } else {
        let pool = open_postgres(url).await;
        let id = uuid::Uuid::parse_str(id).expect("entry id is a UUID");
        let value: Option<Vec<u8>> = sqlx::query_scalar("SELECT sensitive FROM entries WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("entry row read");
        pool.close().await;
        value
    }
}

async fn open_sqlite_read_only(url: &str) -> sqlx::SqlitePool {
    let separator = if url.contains('?') { '&' } else { '?' };
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("{url}{separator}mode=ro"))
        .await
        .expect("test database opened read-only")
}

async fn open_postgres(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("test database reached")
}

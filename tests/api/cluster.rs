//! Several real `hyper-registry serve` processes sharing one PostgreSQL
//! database and one Redis, as behind a load balancer. These tests run when
//! `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set (CI sets both).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{fresh_postgres_schema_url, ADMIN_PASSWORD, JWT_SECRET, USER_PASSWORD};

const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// One server process; killed when dropped.
struct ServerProcess {
    child: Child,
    base_url: String,
    _data_dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    async fn start(shared: &[(String, String)], extra: &[(&str, &str)]) -> ServerProcess {
        let data_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
        command
            .arg("serve")
            .env_clear()
            .env("BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .env("DATA_DIR", data_dir.path())
            .env("JWT_SECRET_KEY", JWT_SECRET)
            .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("LOGIN_RATE_LIMIT_PER_MINUTE", "10000")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data_dir.path().join("server.log")).unwrap());
        for (name, value) in shared {
            command.env(name, value);
        }
        for (name, value) in extra {
            command.env(name, value);
        }
        let child = command.spawn().expect("server process starts");
        let server = ServerProcess {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            _data_dir: data_dir,
        };
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client.get(format!("{}/health", server.base_url)).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server on port {port} did not start within 30 s");
    }

    /// Reads what the server wrote to standard error, for failure messages.
    fn log(&self) -> String {
        std::fs::read_to_string(self._data_dir.path().join("server.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }
}

/// Returns the variables both instances share: one fresh schema and one Redis
/// key prefix. `None` when the services are not configured.
async fn shared_environment(extra: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    let redis_url = std::env::var("TEST_REDIS_URL").ok()?;
    let database_url = fresh_postgres_schema_url().await?;
    let mut shared = vec![
        ("DATABASE_URL".to_string(), database_url),
        ("REDIS_URL".to_string(), redis_url),
        (
            "REDIS_KEY_PREFIX".to_string(),
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    shared.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Some(shared)
}

/// Two instances on the same database and Redis.
async fn two_instances(extra: &[(&str, &str)]) -> Option<(ServerProcess, ServerProcess)> {
    let Some(shared) = shared_environment(extra).await else {
        eprintln!("skipped: TEST_DATABASE_URL and TEST_REDIS_URL are not both set");
        return None;
    };
    // The first start creates the schema and the administrator.
    let a = ServerProcess::start(&shared, &[]).await;
    let b = ServerProcess::start(&shared, &[]).await;
    Some((a, b))
}

async fn login(server: &ServerProcess, username: &str, password: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "login of {username} on {}", server.base_url);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(server: &ServerProcess, path: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Posts `body` as JSON and returns the response body.
async fn post_json(server: &ServerProcess, path: &str, token: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(server.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `check` every 50 ms until `limit` has passed; returns whether it
/// became true.
async fn within<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` for up to two seconds; returns whether it became true.
async fn within_two_seconds<F, Fut>(check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(Duration::from_secs(2), check).await
}

#[tokio::test]
async fn rate_limit_shared_across_instances() {
    // Six requests a minute: the bucket refills one token every ten seconds.
    let Some((a, b)) = two_instances(&[("RATE_LIMIT_PER_MINUTE", "6"), ("RATE_LIMIT_BURST", "6")]).await else {
        return;
    };
    let token = login(&a, "admin", ADMIN_PASSWORD).await;

    let mut allowed = 0;
    for round in 0..8 {
        let server = if round % 2 == 0 { &a } else { &b };
        if get(server, "/auth/me", &token).await.status() == StatusCode::OK {
            allowed += 1;
        }
    }

    assert_eq!(allowed, 6, "both instances draw from one bucket of six, not two");
}

#[tokio::test]
async fn disabled_user_rejected_by_other_instance() {
    let Some((a, b)) = two_instances(&[]).await else {
        return;
    };
    let admin = login(&a, "admin", ADMIN_PASSWORD).await;
    let client = reqwest::Client::new();
    let created: Value = client
        .post(a.url("/api/v1/admin/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "eve", "password": USER_PASSWORD, "roles": ["user"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eve = login(&b, "eve", USER_PASSWORD).await;
    assert_eq!(get(&b, "/auth/me", &eve).await.status(), 200, "eve works on B first");

    let disable = client
        .patch(a.url(&format!("/api/v1/admin/users/{}", created["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(disable.status(), 200, "disabled through A");

    // Each instance keeps a user row for at most a second, and A announces
    // the change through Redis, so B must reject eve within a second.
    let mut rejected = false;
    for _ in 0..10 {
        if get(&b, "/auth/me", &eve).await.status() == 401 {
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected, "B rejects eve within a second");
}

#[tokio::test]
async fn entry_written_on_one_instance_read_on_other() {
    let Some((a, b)) = two_instances(&[]).await else {
        return;
    };
    let token = login(&a, "admin", ADMIN_PASSWORD).await;
    let body = json!({"name": "shared-entry", "category": "service", "sensitive": {"token": "s3cret"}});
    let created = post_json(&a, "/api/v1/registry/entries", &token, &body).await;

    let read = get(
        &b,
        &format!("/api/v1/registry/entries/{}", created["id"].as_str().unwrap()),
        &token,
    )
    .await;

    assert_eq!(read.status(), 200);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["name"], "shared-entry");
    assert_eq!(body["sensitive"]["token"], "s3cret", "B decrypts what A encrypted");
}

#[tokio::test]
async fn entry_change_evicts_other_instance_copy() {
    let Some((a, b)) = two_instances(&[]).await else {
        return;
    };
    let token = login(&a, "admin", ADMIN_PASSWORD).await;
    let body = json!({"name": "cached-entry", "category": "service", "description": "first"});
    let created = post_json(&a, "/api/v1/registry/entries", &token, &body).await;
    let path = format!("/api/v1/registry/entries/{}", created["id"].as_str().unwrap());
    assert_eq!(
        get(&b, &path, &token).await.status(),
        200,
        "B reads and caches the entry"
    );

    let patched = reqwest::Client::new()
        .patch(a.url(&path))
        .bearer_auth(&token)
        .json(&json!({"description": "second"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "changed through A");

    // B keeps an entry for up to a second, so A's announcement through
    // Redis must evict it well before that.
    let fresh = within(Duration::from_millis(400), || async {
        let body: Value = get(&b, &path, &token).await.json().await.unwrap();
        body["description"] == "second"
    })
    .await;
    assert!(
        fresh,
        "B serves the change within 400 ms, before its cached copy expires"
    );
}

#[tokio::test]
async fn logout_on_one_instance_rejected_on_other() {
    let Some((a, b)) = two_instances(&[]).await else {
        return;
    };
    let token = login(&a, "admin", ADMIN_PASSWORD).await;
    assert_eq!(get(&b, "/auth/me", &token).await.status(), 200);

    let logout = reqwest::Client::new()
        .post(a.url("/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    let rejected = within_two_seconds(|| async { get(&b, "/auth/me", &token).await.status() == 401 }).await;
    assert!(rejected, "B rejects the revoked token within a second or two");
}

#[tokio::test]
async fn role_created_on_one_instance_usable_on_other() {
    let Some((a, b)) = two_instances(&[]).await else {
        return;
    };
    let admin = login(&a, "admin", ADMIN_PASSWORD).await;
    let client = reqwest::Client::new();
    let role = client
        .post(a.url("/api/v1/admin/roles"))
        .bearer_auth(&admin)
        .json(&json!({"name": "data_analyst", "permissions": ["read", "search", "analytics:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(role.status(), 201);

    let known_on_b =
        within_two_seconds(|| async { get(&b, "/api/v1/admin/roles/data_analyst", &admin).await.status() == 200 })
            .await;

    assert!(known_on_b, "B learns of the new role");
}

#[tokio::test]
async fn redis_outage_falls_back_to_local_limits() {
    let Some(database_url) = fresh_postgres_schema_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    // Nothing listens on port 1, so Redis is unreachable from the start.
    let shared = vec![
        ("DATABASE_URL".to_string(), database_url),
        ("REDIS_URL".to_string(), "redis://127.0.0.1:1".to_string()),
    ];
    let server = ServerProcess::start(&shared, &[("RATE_LIMIT_PER_MINUTE", "6")]).await;
    let token = login(&server, "admin", ADMIN_PASSWORD).await;

    let response = get(&server, "/auth/me", &token).await;
    assert_eq!(response.status(), 200, "requests are served without Redis");
    assert!(
        response.headers().contains_key("x-ratelimit-remaining"),
        "and still rate-limited"
    );

    let ready = reqwest::Client::new().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "a Redis outage keeps the instance in the load balancer"
    );
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"], "unavailable");

    let mut limited = false;
    for _ in 0..10 {
        if get(&server, "/auth/me", &token).await.status() == 429 {
            limited = true;
        }
    }
    assert!(limited, "the per-instance fallback still enforces the limit");
}

#[tokio::test]
async fn unreachable_database_stops_startup() {
    // Nothing listens on port 1.
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("serve")
        .env_clear()
        .env("DATA_DIR", data_dir.path())
        .env("DATABASE_URL", "postgres://postgres:hunter2@127.0.0.1:1/test")
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .output()
        .unwrap();

    assert!(!output.status.success(), "start-up fails without the database");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "names the variable: {stderr}");
    assert!(!stderr.contains("hunter2"), "never echoes the password: {stderr}");
}

/// Forwards TCP connections from a local port to `target` until stopped,
/// standing in for the network path to the database.
struct Forwarder {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Forwarder {
    async fn start(port: u16, target: String) -> Forwarder {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let tracked = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(connection);
            }
        });
        Forwarder {
            port,
            task,
            connections,
        }
    }

    /// Closes the listener and every forwarded connection: a database outage.
    fn stop(self) -> u16 {
        self.task.abort();
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        self.port
    }
}

#[tokio::test]
async fn database_outage_gives_503_then_recovers() {
    let Some(schema_url) = fresh_postgres_schema_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let forwarder = Forwarder::start(0, "127.0.0.1:5432".to_string()).await;
    let proxied_url = schema_url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", forwarder.port), 1);
    assert_ne!(proxied_url, schema_url, "TEST_DATABASE_URL names 127.0.0.1:5432");
    let server = ServerProcess::start(&[("DATABASE_URL".to_string(), proxied_url)], &[]).await;
    let token = login(&server, "admin", ADMIN_PASSWORD).await;
    let client = reqwest::Client::new();

    let port = forwarder.stop();
    let during = client
        .post(server.url("/api/v1/registry/entries"))
        .bearer_auth(&token)
        .json(&json!({"name": "during-outage", "category": "service"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        during.status(),
        503,
        "writes fail fast with 503 during the outage: {}",
        server.log()
    );
    let ready = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "/ready reports the outage");

    let _restored = Forwarder::start(port, "127.0.0.1:5432".to_string()).await;
    let recovered = within_two_seconds(|| async {
        let body = json!({"name": "after-outage", "category": "service"});
        let response = client
            .post(server.url("/api/v1/registry/entries"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await;
        response.is_ok_and(|r| r.status() == 201)
    })
    .await;
    assert!(recovered, "the server recovers by itself when the database is back");
}

#[tokio::test]
async fn redis_outage_then_recovery() {
    let (Some(database_url), Ok(redis_url)) = (fresh_postgres_schema_url().await, std::env::var("TEST_REDIS_URL"))
    else {
        eprintln!("skipped: TEST_DATABASE_URL and TEST_REDIS_URL are not both set");
        return;
    };
    let redis_address = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let forwarder = Forwarder::start(0, redis_address.clone()).await;
    let shared = vec![
        ("DATABASE_URL".to_string(), database_url),
        ("REDIS_URL".to_string(), format!("redis://127.0.0.1:{}", forwarder.port)),
        (
            "REDIS_KEY_PREFIX".to_string(),
            format!("test-{}", uuid::Uuid::new_v4().simple()),
        ),
    ];
    let server = ServerProcess::start(&shared, &[]).await;
    let client = reqwest::Client::new();
    let ready = |client: reqwest::Client, url: String| async move {
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        body["checks"]["redis"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(
        ready(client.clone(), server.url("/ready")).await,
        "ok",
        "Redis is up at first"
    );

    let port = forwarder.stop();
    let token = login(&server, "admin", ADMIN_PASSWORD).await;
    assert_eq!(
        get(&server, "/auth/me", &token).await.status(),
        200,
        "served during the outage"
    );
    assert_eq!(
        ready(client.clone(), server.url("/ready")).await,
        "unavailable",
        "the outage shows in /ready"
    );

    let _restored = Forwarder::start(port, redis_address).await;
    let mut recovered = false;
    for _ in 0..50 {
        get(&server, "/auth/me", &token).await;
        if ready(client.clone(), server.url("/ready")).await == "ok" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "back to shared limits without a restart: {}", server.log());
}

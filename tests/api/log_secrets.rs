//! No secret reaches either log. A real server process at the most verbose
//! log level goes through sign-in, refresh, keys, MFA, a password change and
//! an entry with sensitive fields. Then its application log and its audit
//! file are searched for every secret it saw.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{ADMIN_PASSWORD, JWT_SECRET, USER_PASSWORD};

const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const SENSITIVE_VALUE: &str = "sensitive-deploy-token-51f0";
const NEW_PASSWORD: &str = "another-long-user-passphrase-9";

#[tokio::test]
async fn secrets_absent_from_application_and_audit_logs() {
    // Arrange: a server process logging everything it logs at trace level.
    let data_dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let log_path = data_dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("serve")
        .env_clear()
        .env("BIND_ADDRESS", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", data_dir.path())
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("LOG_LEVEL", "trace")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("server starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let mut secrets: Vec<String> = vec![
        ADMIN_PASSWORD.into(),
        USER_PASSWORD.into(),
        NEW_PASSWORD.into(),
        JWT_SECRET.into(),
        ENCRYPTION_KEY.into(),
        SENSITIVE_VALUE.into(),
    ];

    // Act: the flows that handle secrets.
    let admin: Value = post(
        "/auth/login",
        None,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await
    .expect("login")
    .json()
    .await
    .expect("JSON");
    let admin_token = admin["access_token"].as_str().expect("token").to_string();
    secrets.push(admin_token.clone());
    secrets.push(admin["refresh_token"].as_str().expect("refresh").to_string());
    post(
        "/api/v1/admin/users",
        Some(&admin_token),
        json!({"username": "logged-user", "password": USER_PASSWORD, "roles": ["user"]}),
    )
    .await
    .expect("user created");
    let user: Value = post(
        "/auth/login",
        None,
        json!({"username": "logged-user", "password": USER_PASSWORD}),
    )
    .await
    .expect("login")
    .json()
    .await
    .expect("JSON");
    let user_token = user["access_token"].as_str().expect("token").to_string();
    let refresh_token = user["refresh_token"].as_str().expect("refresh").to_string();
    secrets.push(user_token.clone());
    secrets.push(refresh_token.clone());
    let refreshed: Value = post("/auth/refresh", None, json!({"refresh_token": refresh_token}))
        .await
        .expect("refresh")
        .json()
        .await
        .expect("JSON");
    secrets.push(refreshed["access_token"].as_str().expect("token").to_string());
    secrets.push(refreshed["refresh_token"].as_str().expect("refresh").to_string());

    let key: Value = post("/api/v1/keys", Some(&user_token), json!({"name": "logged-key"}))
        .await
        .expect("key")
        .json()
        .await
        .expect("JSON");
    let api_key = key["key"].as_str().expect("key").to_string();
    secrets.push(api_key.clone());
    secrets.push(api_key.rsplit('_').next().expect("secret part").to_string());
    client
        .get(format!("{base}/auth/me"))
        .header("x-api-key", &api_key)
        .send()
        .await
        .expect("key use");
    let wrong_key = format!("{}x", &api_key[..api_key.len() - 1]);
    client
        .get(format!("{base}/auth/me"))
        .header("x-api-key", &wrong_key)
        .send()
        .await
        .expect("wrong key use");
    secrets.push(wrong_key);

    post(
        "/api/v1/registry/entries",
        Some(&admin_token),
        json!({"name": "logged-entry", "category": "service", "sensitive": {"token": SENSITIVE_VALUE}}),
    )
    .await
    .expect("entry");
    let setup: Value = post("/auth/mfa/setup", Some(&admin_token), json!({}))
        .await
        .expect("mfa setup")
        .json()
        .await
        .expect("JSON");
    if let Some(secret) = setup["secret"].as_str() {
        secrets.push(secret.to_string());
    }
    post(
        "/auth/password",
        Some(&user_token),
        json!({"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await
    .expect("password change");
    post(
        "/auth/login",
        None,
        json!({"username": "logged-user", "password": "a-wrong-password-for-the-log"}),
    )
    .await
    .expect("failed login");
    secrets.push("a-wrong-password-for-the-log".into());

    // Last, since it revokes the user's sign-in: a reused refresh token is logged as an event; the token itself is not.
    post("/auth/refresh", None, json!({"refresh_token": refresh_token}))
        .await
        .expect("reuse");

    // A graceful stop flushes both logs.
    // SAFETY: sending SIGTERM to our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = child.wait();
    let application_log = std::fs::read_to_string(&log_path).expect("application log");
    let audit_log = std::fs::read_to_string(data_dir.path().join("audit.log")).expect("audit log");

    // Assert
    assert!(
        application_log.contains("listening") && application_log.contains("stopped"),
        "the application log covers the whole run: {application_log}"
    );
    assert!(
        audit_log.contains("\"event_type\": \"login_failed\""),
        "the scenario ran"
    );
    for secret in &secrets {
        assert!(
            !application_log.contains(secret.as_str()),
            "a secret is in the application log"
        );
        assert!(!audit_log.contains(secret.as_str()), "a secret is in the audit log");
    }
    for word in ["Bearer ", "authorization: ", "x-api-key: "] {
        assert!(
            !application_log
                .to_ascii_lowercase()
                .contains(&word.to_ascii_lowercase()),
            "{word} is in the application log"
        );
    }
}

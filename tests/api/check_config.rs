//! `hyper-registry check-config`, run as a process with a given environment.

use std::process::{Command, Output};

const STRONG_JWT: &str = "c2VjcmV0LXNpZ25pbmcta2V5LWZvci1jaGVjay1jb25maWc";
const ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const DATABASE_PASSWORD: &str = "db-password-9f8e7d";
const WEBHOOK_SECRET: &str = "webhook-secret-6a5b4c";

fn check_config(vars: &[(&str, &str)]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("check-config")
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// Returns the verdict printed for the item whose name starts with `item`.
fn verdict<'a>(stdout: &'a str, item: &str) -> &'a str {
    // Lines read "VERDICT item: detail", the verdict padded to 7 columns.
    stdout
        .lines()
        .find(|line| line.get(8..).is_some_and(|rest| rest.starts_with(item)))
        .and_then(|line| line.split_whitespace().next())
        .filter(|word| ["PASS", "WARN", "FAIL", "MANUAL"].contains(word))
        .unwrap_or_else(|| panic!("no line for {item}:\n{stdout}"))
}

#[test]
fn check_config_production_setup_passes() {
    let data_dir = tempfile::tempdir().unwrap();
    let data_path = data_dir.path().to_str().unwrap();
    let database_url = format!("postgres://registry:{DATABASE_PASSWORD}@db.internal/registry?sslmode=verify-full");

    let (output, stdout) = check_config(&[
        ("HYPER_REGISTRY_ENV", "production"),
        ("DATA_DIR", data_path),
        ("JWT_SECRET_KEY", STRONG_JWT),
        ("ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("DATABASE_URL", &database_url),
        ("TRUSTED_PROXIES", "10.0.0.5"),
        ("TLS_TERMINATED_BY_PROXY", "true"),
        ("HTTPS_ONLY", "true"),
        ("ADMIN_ALLOWED_CIDRS", "10.8.0.0/24"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example.test"),
        ("MFA_REQUIRED_ROLES", "admin"),
        ("ALERT_WEBHOOK_URL", "https://alerts.example.test/hook"),
        ("ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ]);

    assert!(output.status.success(), "exit 0:\n{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let expected = [
        ("production mode", "PASS"),
        ("strong JWT secret key", "PASS"),
        ("TLS certificates", "PASS"),
        ("firewall rules", "MANUAL"),
        ("HTTPS only", "PASS"),
        ("authentication on all endpoints", "PASS"),
        ("rate limiting thresholds", "PASS"),
        ("audit logging", "PASS"),
        ("log aggregation", "MANUAL"),
        ("backup and recovery", "MANUAL"),
        ("API keys and secrets documented", "MANUAL"),
        ("monitoring and alerts", "PASS"),
        ("CORS restrictions", "PASS"),
        ("database encryption", "PASS"),
        ("database connection", "PASS"),
        ("admin API restricted by address", "PASS"),
        ("VPN for admin access", "MANUAL"),
        ("multi-factor authentication", "PASS"),
    ];
    for (item, expected_verdict) in expected {
        assert_eq!(verdict(&stdout, item), expected_verdict, "{item}");
    }
    for secret in [
        STRONG_JWT,
        ENCRYPTION_KEY,
        DATABASE_PASSWORD,
        WEBHOOK_SECRET,
        "alerts.example.test/hook",
    ] {
        assert!(!stdout.contains(secret), "printed a secret: {secret}");
    }
}

#[test]
fn check_config_development_setup_fails() {
    let data_dir = tempfile::tempdir().unwrap();
    let weak_jwt = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let database_url = format!("postgres://registry:{DATABASE_PASSWORD}@db.internal/registry");

    let (output, stdout) = check_config(&[
        ("DATA_DIR", data_dir.path().to_str().unwrap()),
        ("JWT_SECRET_KEY", weak_jwt),
        ("DATABASE_URL", &database_url),
        ("CORS_ALLOWED_ORIGINS", "http://app.example.test"),
        ("RATE_LIMIT_PER_MINUTE", "5000"),
    ]);

    assert!(!output.status.success(), "non-zero exit:\n{stdout}");
    let expected = [
        ("production mode", "FAIL"),
        ("strong JWT secret key", "FAIL"),
        ("TLS certificates", "FAIL"),
        ("HTTPS only", "FAIL"),
        ("rate limiting thresholds", "WARN"),
        ("monitoring and alerts", "WARN"),
        ("CORS restrictions", "WARN"),
        ("database encryption", "FAIL"),
        ("database connection", "FAIL"),
        ("admin API restricted by address", "FAIL"),
        ("multi-factor authentication", "WARN"),
    ];
    for (item, expected_verdict) in expected {
        assert_eq!(verdict(&stdout, item), expected_verdict, "{item}");
    }
    assert!(stdout.contains("fix: set HTTPS_ONLY=true"), "{stdout}");
    assert!(!stdout.contains(weak_jwt), "printed the JWT key");
    assert!(!stdout.contains(DATABASE_PASSWORD), "printed the database password");
}

#[test]
fn check_config_unwritable_audit_log_fails() {
    let data_dir = tempfile::tempdir().unwrap();
    // A directory cannot be opened for appending, even by root.
    let audit_path = data_dir.path().join("audit-dir");
    std::fs::create_dir(&audit_path).unwrap();

    let (output, stdout) = check_config(&[
        ("DATA_DIR", data_dir.path().to_str().unwrap()),
        ("AUDIT_LOG_FILE", audit_path.to_str().unwrap()),
    ]);

    assert!(!output.status.success());
    assert_eq!(verdict(&stdout, "audit logging"), "FAIL", "{stdout}");
    assert!(stdout.contains("AUDIT_LOG_FILE"), "{stdout}");
}

#[test]
fn check_config_reads_certificate_files() {
    let data_dir = tempfile::tempdir().unwrap();
    let cert = data_dir.path().join("cert.pem");
    let key = data_dir.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n").unwrap();

    let (_, stdout) = check_config(&[
        ("DATA_DIR", data_dir.path().to_str().unwrap()),
        ("SSL_CERT_FILE", cert.to_str().unwrap()),
        ("SSL_KEY_FILE", key.to_str().unwrap()),
    ]);

    assert_eq!(verdict(&stdout, "TLS certificates"), "FAIL", "{stdout}");
    assert!(stdout.contains("SSL_CERT_FILE"), "{stdout}");
    assert!(!stdout.contains("MC4="), "printed key material");
}

#[test]
fn production_start_refused_without_writable_audit_log() {
    let data_dir = tempfile::tempdir().unwrap();
    let audit_path = data_dir.path().join("audit-dir");
    std::fs::create_dir(&audit_path).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .arg("serve")
        .env_clear()
        .env("HYPER_REGISTRY_ENV", "production")
        .env("BIND_ADDRESS", "127.0.0.1:0")
        .env("DATA_DIR", data_dir.path())
        .env("JWT_SECRET_KEY", STRONG_JWT)
        .env("ENCRYPTION_KEY", ENCRYPTION_KEY)
        .env("TRUSTED_PROXIES", "10.0.0.5")
        .env("TLS_TERMINATED_BY_PROXY", "true")
        .env("AUDIT_LOG_FILE", &audit_path)
        .output()
        .expect("server runs");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AUDIT_LOG_FILE"), "{stderr}");
    assert!(stderr.contains("Fix:"), "{stderr}");
}

#[test]
fn check_config_fails_weak_previous_jwt_key_and_catch_all_proxies() {
    let data_dir = tempfile::tempdir().unwrap();
    let weak_previous = "b".repeat(40);

    let (output, stdout) = check_config(&[
        ("HYPER_REGISTRY_ENV", "production"),
        ("DATA_DIR", data_dir.path().to_str().unwrap()),
        ("JWT_SECRET_KEY", STRONG_JWT),
        ("JWT_SECRET_KEY_PREVIOUS", &weak_previous),
        ("ENCRYPTION_KEY", ENCRYPTION_KEY),
        ("TRUSTED_PROXIES", "0.0.0.0/0"),
        ("TLS_TERMINATED_BY_PROXY", "true"),
    ]);

    assert!(!output.status.success(), "exit non-zero:\n{stdout}");
    assert_eq!(verdict(&stdout, "strong JWT secret key"), "FAIL");
    assert_eq!(verdict(&stdout, "trusted proxies"), "FAIL");
    assert!(!stdout.contains(&weak_previous), "no secret echoed");
}

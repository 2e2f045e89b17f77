//! Behaviours found broken by trying to defeat the audit trail and the
//! metrics listener from outside. Each test states what the documentation
//! promises.

use std::process::{Command, Output};

use hyper_registry::config::Config;
use hyper_registry::startup::Application;
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{free_port, scrape_metrics, TestApp, JWT_SECRET};

const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The server reads the hash of the last line from this many trailing bytes.
const TAIL_WINDOW: usize = 256 * 1024;

fn audit_verify(data_dir: &std::path::Path, file: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .args(["audit", "verify", file.to_str().expect("UTF-8 path")])
        .env_clear()
        .env("DATA_DIR", data_dir)
        .env("JWT_SECRET_KEY", JWT_SECRET)
        .env("LOG_LEVEL", "error")
        .output()
        .expect("CLI runs")
}

/// Renders one chained line in the documented format: the hash covers the text up
/// to `, "hash"`, closed with `}`.
fn chained_line(description: &str, prev_hash: &str) -> (String, String) {
    let body = format!(
        "{{\"timestamp\": \"2026-12-01T00:00:00.000000Z\", \"event_id\": \"00000000-0000-4000-8000-000000000000\", \
         \"event_type\": \"incident_note\", \"action\": \"manual_event\", \"status\": \"success\", \
         \"severity\": \"low\", \"user_id\": null, \"api_key_id\": null, \"client_ip\": null, \"method\": null, \
         \"path\": null, \"http_status\": null, \"request_id\": null, \"description\": \"{description}\", \
         \"prev_hash\": \"{prev_hash}\""
    );
    let hash = hex::encode(Sha256::digest(format!("{body}}}").as_bytes()));
    (format!("{body}, \"hash\": \"{hash}\"}}"), hash)
}

/// Writes a valid trail whose notes contain two-byte characters, padded so
/// that the byte `TAIL_WINDOW` before the end is inside a character.
fn trail_with_split_tail() -> String {
    let mut text = String::new();
    let mut prev_hash = GENESIS_HASH.to_string();
    while text.len() < TAIL_WINDOW + 16 * 1024 {
        let (line, hash) = chained_line(&"é".repeat(1500), &prev_hash);
        text.push_str(&line);
        text.push('\n');
        prev_hash = hash;
    }

    // Shifting the end by one byte moves the window start by one byte, so
    // one of two consecutive paddings starts it on a continuation byte.
    for padding in 0.. {
        let (line, _) = chained_line(&"a".repeat(padding), &prev_hash);
        let candidate = format!("{text}{line}\n");
        let start = candidate.len() - TAIL_WINDOW;
        if !candidate.is_char_boundary(start) {
            return candidate;
        }
    }
    unreachable!("a padding that splits a character exists")
}

#[tokio::test]
async fn startup_with_split_character_in_tail_window() {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let log = data_dir.path().join("audit.log");
    std::fs::write(&log, trail_with_split_tail()).expect("trail written");
    let verified = audit_verify(data_dir.path(), &log);
    assert!(
        verified.status.success(),
        "the crafted trail is valid: {}",
        String::from_utf8_lossy(&verified.stdout)
    );

    let config = Config::from_vars(vec![
        ("BIND_ADDRESS".to_string(), "127.0.0.1:0".to_string()),
        ("DATA_DIR".to_string(), data_dir.path().to_string_lossy().to_string()),
        ("JWT_SECRET_KEY".to_string(), JWT_SECRET.to_string()),
        ("ADMIN_PASSWORD".to_string(), "test-admin-passphrase-1".to_string()),
        ("LOG_LEVEL".to_string(), "error".to_string()),
    ])
    .expect("valid configuration");
    let built = Application::build_with_clock(config, None).await;

    assert!(
        built.is_ok(),
        "a valid trail must not stop start-up: {}",
        built.err().map(|error| error.to_string()).unwrap_or_default()
    );
}

#[tokio::test]
async fn verify_rejects_head_cut_at_manual_rotation() {
    let app = TestApp::spawn().await;
    app.get("/auth/me", &app.admin_token).await;
    let recorded = app
        .post_json(
            "/api/v1/admin/audit/events",
            &app.admin_token,
            &json!({"event_type": "audit_log_rotated", "severity": "info", "description": "note"}),
        )
        .await;
    let accepted = recorded.status() == 201;
    app.get("/auth/me", &app.admin_token).await;
    let data = app.stop().await;
    if !accepted {
        // Rejecting the reserved event type closes the hole as well.
        return;
    }

    // Cut every line before the manual event, as someone hiding the start
    // of the trail would.
    let log = data.path().join("audit.log");
    let text = std::fs::read_to_string(&log).expect("trail read");
    let start = text
        .lines()
        .position(|line| line.contains("\"action\": \"manual_event\""))
        .expect("the manual event is in the file");
    let cut: String = text.lines().skip(start).map(|line| format!("{line}\n")).collect();
    std::fs::write(&log, cut).expect("trail cut");

    let verified = audit_verify(data.path(), &log);
    assert!(
        !verified.status.success(),
        "a file whose first lines were cut off must fail: {}",
        String::from_utf8_lossy(&verified.stdout)
    );
}

#[tokio::test]
async fn unknown_methods_do_not_add_metric_series() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("METRICS_ADDRESS", &address)]).await;

    for index in 0..40 {
        let method = Method::from_bytes(format!("PROBE{index}").as_bytes()).expect("token method");
        app.request(method, "/api/v1/registry/entries", None)
            .send()
            .await
            .expect("request sent");
    }

    let metrics = scrape_metrics(port).await;
    let probe_series = metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains("method=\"PROBE"))
        .count();
    assert_eq!(
        probe_series, 0,
        "anonymous clients must not create a label per method they invent"
    );
}

#[tokio::test]
async fn audit_line_bounded_for_long_method() {
    let app = TestApp::spawn().await;
    let method = Method::from_bytes("M".repeat(30_000).as_bytes()).expect("token method");
    app.request(method, "/api/v1/registry/entries", None)
        .send()
        .await
        .expect("request sent");

    let text = app.audit_text().await;
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 8 * 1024,
        "an unauthenticated request wrote a {longest}-byte audit line; paths are cut short, methods are not"
    );
}

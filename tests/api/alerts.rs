//! Alert delivery to a webhook receiver that the test runs on 127.0.0.1:
//! signatures, the severity floor, retries and an unreachable receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{free_port, metric_value, poll_until, scrape_metrics, TestApp};

const SECRET: &str = "webhook-secret-for-alert-tests";
/// Delay of the first retry in src/audit/alerts.rs. Each later one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// One request as the receiver got it.
#[derive(Clone)]
struct Received {
    path: String,
    timestamp: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("alert body is JSON")
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Statuses to respond with, in order, then 200 once they are used up.
    script: Arc<Mutex<VecDeque<StatusCode>>>,
}

/// A webhook receiver on 127.0.0.1 that records every request.
struct Receiver {
    url: String,
    state: ReceiverState,
}

impl Receiver {
    async fn start(script: &[StatusCode]) -> Receiver {
        let state = ReceiverState::default();
        state.script.lock().unwrap().extend(script.iter().copied());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let address = listener.local_addr().expect("receiver address");
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .route("/elsewhere", axum::routing::post(receive))
            .with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.expect("receiver runs");
        });
        Receiver {
            url: format!("http://{address}/hook"),
            state,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived and returns them all.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        poll_until(DELIVERY_WAIT, || async {
            let received = self.received();
            (received.len() >= count).then_some(received)
        })
        .await
        .unwrap_or_else(|| panic!("{count} alerts within {DELIVERY_WAIT:?}, got {}", self.received().len()))
    }
}

/// Records the request and responds with the next scripted status. A
/// redirect points to `/elsewhere` on the same receiver.
async fn receive(
    State(state): State<ReceiverState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        timestamp: header("x-hyper-registry-timestamp"),
        signature: header("x-hyper-registry-signature"),
        body: body.to_vec(),
        at: Instant::now(),
    });
    let status = state.script.lock().unwrap().pop_front().unwrap_or(StatusCode::OK);
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    *response.status_mut() = status;
    if status.is_redirection() {
        response.headers_mut().insert(
            axum::http::header::LOCATION,
            axum::http::HeaderValue::from_static("/elsewhere"),
        );
    }
    response
}

/// Checks `sha256=<hex>` against HMAC-SHA256 under `secret` of `<timestamp>.<body>`.
fn signature_valid(secret: &str, received: &Received) -> bool {
    let Some(hex_digest) = received.signature.as_deref().and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(digest) = hex::decode(hex_digest) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(received.timestamp.as_deref().unwrap_or("").as_bytes());
    mac.update(b".");
    mac.update(&received.body);
    mac.verify_slice(&digest).is_ok()
}

async fn spawn_alerting(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("ALERT_WEBHOOK_URL", url), ("ALERT_WEBHOOK_SECRET", SECRET)];
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

/// Records an operator event with `severity` and returns the 201 body.
async fn record_event(app: &TestApp, severity: &str, description: &str) -> Value {
    let response = app
        .post_json(
            "/api/v1/admin/audit/events",
            &app.admin_token,
            &json!({"event_type": "incident_note", "severity": severity, "description": description}),
        )
        .await;
    assert_eq!(response.status(), 201, "recording a {severity} event");
    response.json().await.expect("event body")
}

#[tokio::test]
async fn critical_event_delivered_with_valid_signature() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_alerting(&receiver.url, &[]).await;

    let recorded = record_event(&app, "critical", "database credentials leaked").await;

    let received = receiver.wait_for(1).await;
    let alert = &received[0];
    assert!(
        signature_valid(SECRET, alert),
        "the signature verifies under the secret"
    );
    assert!(
        !signature_valid("another-secret", alert),
        "the signature does not verify under another secret"
    );
    let sent_at: i64 = alert
        .timestamp
        .as_deref()
        .expect("timestamp header")
        .parse()
        .expect("timestamp in Unix seconds");
    assert!(
        (chrono::Utc::now().timestamp() - sent_at).abs() <= 60,
        "the timestamp is the time of sending"
    );

    let body = alert.json();
    assert_eq!(body["event_id"], recorded["event_id"]);
    assert_eq!(body["severity"], "critical");
    assert!(
        body["hash"].as_str().is_some_and(|hash| hash.len() == 64),
        "carries its hash: {body}"
    );
    let lines = app.audit_lines().await;
    let line = lines
        .iter()
        .find(|line| line["event_id"] == recorded["event_id"])
        .expect("event in the audit file");
    assert_eq!(&body, line, "the alert is the event as written, hash included");
}

#[tokio::test]
async fn detector_alarm_delivered() {
    let receiver = Receiver::start(&[]).await;
    let app = spawn_alerting(&receiver.url, &[("LOGIN_MAX_FAILED_ATTEMPTS", "1000")]).await;

    for i in 0..10 {
        let response = app
            .client
            .post(app.url("/auth/login"))
            .json(&json!({"username": format!("guess-{i}"), "password": "wrong-passphrase"}))
            .send()
            .await
            .expect("login sent");
        assert_eq!(response.status(), 401);
    }

    let received = receiver.wait_for(1).await;
    let body = received[0].json();
    assert_eq!(body["event_type"], "brute_force_suspected");
    assert_eq!(body["severity"], "critical");
    assert!(signature_valid(SECRET, &received[0]));
}

#[tokio::test]
async fn events_below_min_severity_not_sent() {
    // (ALERT_MIN_SEVERITY, a severity below it, the severity itself)
    let cases: [(Option<&str>, &str, &str); 2] = [(None, "medium", "high"), (Some("critical"), "high", "critical")];

    for (min_severity, below, at) in cases {
        let receiver = Receiver::start(&[]).await;
        let extra: Vec<(&str, &str)> = min_severity.map(|m| ("ALERT_MIN_SEVERITY", m)).into_iter().collect();
        let app = spawn_alerting(&receiver.url, &extra).await;

        let skipped = record_event(&app, below, "below the floor").await;
        let sent = record_event(&app, at, "at the floor").await;

        // Alerts go out in order, so the second one arriving means the first
        // was not sent.
        let received = receiver.wait_for(1).await;
        let ids: Vec<Value> = received.iter().map(|r| r.json()["event_id"].clone()).collect();
        assert_eq!(
            ids,
            vec![sent["event_id"].clone()],
            "min {min_severity:?}: only {at} is sent"
        );
        assert_ne!(ids[0], skipped["event_id"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn failing_receiver_gets_retries_until_delivered() {
    let receiver = Receiver::start(&[StatusCode::INTERNAL_SERVER_ERROR, StatusCode::INTERNAL_SERVER_ERROR]).await;
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let app = spawn_alerting(&receiver.url, &[("METRICS_ADDRESS", &metrics_address)]).await;

    let recorded = record_event(&app, "critical", "retried alert").await;

    let delivered = poll_until(DELIVERY_WAIT, || async {
        let text = scrape_metrics(metrics_port).await;
        metric_value(&text, "hyper_registry_alert_deliveries_total{outcome=\"delivered\"}").map(|_| text)
    })
    .await
    .expect("the alert is delivered");
    let received = receiver.received();
    assert_eq!(received.len(), 3, "two failures and one success");
    for attempt in &received {
        assert_eq!(
            attempt.json()["event_id"],
            recorded["event_id"],
            "each attempt carries the event"
        );
        assert!(signature_valid(SECRET, attempt), "each attempt is signed");
    }
    let first_gap = received[1].at - received[0].at;
    let second_gap = received[2].at - received[1].at;
    assert!(first_gap >= FIRST_BACKOFF, "first retry after {first_gap:?}");
    assert!(second_gap >= FIRST_BACKOFF * 2, "second retry after {second_gap:?}");
    assert_eq!(
        metric_value(
            &delivered,
            "hyper_registry_alert_deliveries_total{outcome=\"failed_attempt\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &delivered,
            "hyper_registry_alert_deliveries_total{outcome=\"delivered\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn unreachable_webhook_never_delays_requests() {
    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    let metrics_port = free_port();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let app = spawn_alerting(&closed, &[("METRICS_ADDRESS", &metrics_address)]).await;

    for i in 0..3 {
        let started = Instant::now();
        record_event(&app, "critical", &format!("alert {i} to nowhere")).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < FIRST_BACKOFF,
            "request {i} answered in {elapsed:?}, before the first retry would start"
        );
    }

    let failures = poll_until(DELIVERY_WAIT, || async {
        let text = scrape_metrics(metrics_port).await;
        metric_value(
            &text,
            "hyper_registry_alert_deliveries_total{outcome=\"failed_attempt\"}",
        )
        .filter(|count| *count >= 2.0)
    })
    .await;
    assert!(failures.is_some(), "failed attempts are counted on /metrics");
    let text = scrape_metrics(metrics_port).await;
    assert_eq!(
        metric_value(&text, "hyper_registry_alert_deliveries_total{outcome=\"delivered\"}"),
        None,
        "nothing was delivered"
    );
}

/// Waits until the `outcome` counter of alert deliveries reaches `at_least`
/// on the metrics listener, and returns the whole text.
async fn wait_for_outcome(metrics_port: u16, outcome: &str, at_least: f64) -> String {
    let series = format!("hyper_registry_alert_deliveries_total{{outcome=\"{outcome}\"}}");
    poll_until(DELIVERY_WAIT, || async {
        let text = scrape_metrics(metrics_port).await;
        metric_value(&text, &series)
            .filter(|count| *count >= at_least)
            .map(|_| text)
    })
    .await
    .unwrap_or_else(|| panic!("{series} reaches {at_least} within {DELIVERY_WAIT:?}"))
}

#[tokio::test]
async fn rejecting_receiver_not_retried() {
    // (the receiver's status, why it is final)
    let cases = [
        (StatusCode::BAD_REQUEST, "a client error will not change on retry"),
        (StatusCode::TEMPORARY_REDIRECT, "a redirect is not followed"),
    ];

    for (status, why) in cases {
        let receiver = Receiver::start(&[status]).await;
        let metrics_port = free_port();
        let metrics_address = format!("127.0.0.1:{metrics_port}");
        let app = spawn_alerting(&receiver.url, &[("METRICS_ADDRESS", &metrics_address)]).await;

        record_event(&app, "critical", "answered with a final status").await;

        let text = wait_for_outcome(metrics_port, "abandoned", 1.0).await;
        assert_eq!(
            metric_value(
                &text,
                "hyper_registry_alert_deliveries_total{outcome=\"failed_attempt\"}"
            ),
            Some(1.0),
            "{status}: one attempt, because {why}"
        );
        let paths: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths, vec!["/hook".to_string()], "{status}: {why}");
        app.stop().await;
    }
}

#[test]
fn bad_alert_settings_stop_start_up() {
    // (the variable, its bad value, the part of it that must not be echoed)
    let cases = [
        (
            "ALERT_WEBHOOK_URL",
            "ftp://hook-token-5f1e@alerts.example",
            Some("hook-token-5f1e"),
        ),
        ("ALERT_WEBHOOK_SECRET", SECRET, Some(SECRET)),
        ("ALERT_MIN_SEVERITY", "urgent", None),
        ("DETECTOR_FAILED_LOGINS", "0", None),
    ];

    for (variable, value, hidden) in cases {
        let vars = vec![
            ("DATA_DIR".to_string(), "/nonexistent".to_string()),
            ("JWT_SECRET_KEY".to_string(), crate::helpers::JWT_SECRET.to_string()),
            (variable.to_string(), value.to_string()),
        ];

        let error = hyper_registry::config::Config::from_vars(vars)
            .err()
            .unwrap_or_else(|| panic!("{variable}: start-up stops"))
            .to_string();

        assert!(error.contains(variable), "names {variable}: {error}");
        assert!(error.contains("Fix:"), "says how to fix it: {error}");
        if let Some(hidden) = hidden {
            assert!(!error.contains(hidden), "does not echo the value: {error}");
        }
    }
}

#[tokio::test]
async fn command_line_event_alerted_before_exit() {
    // Arrange
    let receiver = Receiver::start(&[]).await;
    let data_dir = tempfile::tempdir().expect("temp dir");

    // Act: a critical note recorded from a shell, as in an incident. The
    // command runs off this runtime's thread, which serves the receiver.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hyper-registry"));
    command
        .args([
            "audit",
            "record",
            "--event-type",
            "incident_note",
            "--severity",
            "critical",
            "--description",
            "production database credentials leaked",
        ])
        .env_clear()
        .env("DATA_DIR", data_dir.path())
        .env("ALERT_WEBHOOK_URL", &receiver.url)
        .env("ALERT_WEBHOOK_SECRET", SECRET)
        .env("LOG_LEVEL", "error");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("command runs");

    // Assert: the command waited for the delivery before it exited.
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one alert delivered before the command ended");
    assert!(signature_valid(SECRET, &received[0]));
    assert_eq!(received[0].json()["event_type"], "incident_note");
}

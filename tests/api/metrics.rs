//! Prometheus metrics on the `METRICS_ADDRESS` listener, apart from the API.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{free_port, metric_value, scrape_metrics, TestApp};

/// Sums every sample of `name` whose labels contain all of `labels`.
fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = (rest.is_empty() || rest.starts_with('{')) && labels.iter().all(|l| rest.contains(l));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[tokio::test]
async fn metrics_listener_exports_request_and_audit_metrics() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("METRICS_ADDRESS", &address)]).await;
    let created: Value = app
        .post_json(
            "/api/v1/keys",
            &app.admin_token,
            &json!({"name": "slow-key", "rate_limit_per_minute": 1}),
        )
        .await
        .json()
        .await
        .expect("key body");
    let key = created["key"].as_str().expect("key");

    for _ in 0..3 {
        assert_eq!(app.get("/auth/me", &app.admin_token).await.status(), StatusCode::OK);
    }
    let bad_token = app.get("/auth/me", "not-a-jwt").await;
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    let with_key = |key: &str| app.client.get(app.url("/auth/me")).header("x-api-key", key).send();
    assert_eq!(with_key(key).await.expect("sent").status(), StatusCode::OK);
    assert_eq!(
        with_key(key).await.expect("sent").status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the key's second request in a minute"
    );

    let text = scrape_metrics(port).await;

    let me_ok = r#"hyper_registry_http_requests_total{method="GET",route="/auth/me",status="200"}"#;
    assert_eq!(
        metric_value(&text, me_ok),
        Some(4.0),
        "three admin requests and one key request"
    );
    let me_401 = r#"hyper_registry_http_requests_total{method="GET",route="/auth/me",status="401"}"#;
    assert_eq!(metric_value(&text, me_401), Some(1.0));
    let me_429 = r#"hyper_registry_http_requests_total{method="GET",route="/auth/me",status="429"}"#;
    assert_eq!(metric_value(&text, me_429), Some(1.0));

    let route = r#"route="/auth/me""#;
    let buckets = text
        .lines()
        .filter(|line| line.starts_with("hyper_registry_http_request_duration_seconds_bucket{") && line.contains(route))
        .count();
    assert!(buckets >= 10, "the latency histogram has buckets: {buckets}");
    assert_eq!(
        sum_samples(&text, "hyper_registry_http_request_duration_seconds_count", &[route]),
        6.0,
        "every /auth/me request is timed"
    );
    assert_eq!(
        sum_samples(
            &text,
            "hyper_registry_http_request_duration_seconds_bucket",
            &[route, r#"le="+Inf""#]
        ),
        6.0
    );

    assert_eq!(
        metric_value(&text, r#"hyper_registry_auth_failures_total{reason="invalid_token"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "hyper_registry_rate_limit_rejections_total"),
        Some(1.0)
    );
    assert!(
        metric_value(&text, "hyper_registry_audit_queue_depth").is_some(),
        "the audit queue depth is exported"
    );
    assert!(
        sum_samples(&text, "hyper_registry_audit_fsync_seconds_count", &[]) >= 1.0,
        "security events were synced and timed"
    );
    assert!(
        text.contains("# TYPE hyper_registry_alert_deliveries counter"),
        "alert deliveries are declared"
    );
    assert!(
        sum_samples(&text, "hyper_registry_audit_events_written_total", &[]) >= 1.0,
        "written audit lines are counted"
    );
}

#[tokio::test]
async fn api_port_does_not_serve_metrics() {
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let app = TestApp::spawn_with(&[("METRICS_ADDRESS", &address)]).await;

    let anonymous = app.client.get(app.url("/metrics")).send().await.expect("sent");
    assert_eq!(anonymous.status(), StatusCode::NOT_FOUND);
    let as_admin = app.get("/metrics", &app.admin_token).await;
    assert_eq!(as_admin.status(), StatusCode::NOT_FOUND, "not even for the admin");
    let metrics_port = reqwest::get(format!("http://{address}/metrics")).await.expect("sent");
    assert_eq!(
        metrics_port.status(),
        StatusCode::OK,
        "while the metrics listener serves it"
    );
}

#[test]
fn invalid_metrics_address_stops_start_up() {
    let vars = vec![
        ("DATA_DIR".to_string(), "/nonexistent".to_string()),
        ("JWT_SECRET_KEY".to_string(), crate::helpers::JWT_SECRET.to_string()),
        ("METRICS_ADDRESS".to_string(), "localhost-port-9100".to_string()),
    ];

    let error = hyper_registry::config::Config::from_vars(vars)
        .expect_err("an invalid METRICS_ADDRESS is rejected")
        .to_string();

    assert!(error.contains("METRICS_ADDRESS"), "names the variable: {error}");
    assert!(error.contains("127.0.0.1:9100"), "gives an example: {error}");
}

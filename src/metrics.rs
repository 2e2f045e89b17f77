//! Prometheus metrics, served on `METRICS_ADDRESS` by a listener of their
//! own so that the scrape endpoint is never exposed with the API.
//!
//! Updating a metric is an atomic add behind a read lock; nothing here does
//! I/O on the request path.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 17,
    ))
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: HistogramFamily<RouteLabels>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub rate_limit_rejections: Counter,
    pub audit_events_written: Counter,
    pub audit_write_failures: Counter,
    /// Events dropped from the in-memory backlog during a long outage.
    pub audit_events_lost: Counter,
    /// Reports the database copy, detectors or alerts missed (a full queue).
    pub audit_sink_dropped: Counter,
    pub audit_db_failures: Counter,
    pub audit_fsync_seconds: Histogram,
    pub audit_queue_depth: Gauge,
    pub detector_alarms: Family<ReasonLabels, Counter>,
    pub alert_deliveries: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hyper_registry");
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests by method, route and status",
            http_requests.clone(),
        );
        let http_request_duration =
            HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by method and route",
            http_request_duration.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register("auth_failures", "Rejected credentials by reason", auth_failures.clone());
        let rate_limit_rejections = Counter::default();
        registry.register(
            "rate_limit_rejections",
            "Requests answered with 429",
            rate_limit_rejections.clone(),
        );
        let audit_events_written = Counter::default();
        registry.register(
            "audit_events_written",
            "Lines written to the audit file",
            audit_events_written.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Failed attempts to write the audit file",
            audit_write_failures.clone(),
        );
        let audit_events_lost = Counter::default();
        registry.register(
            "audit_events_lost",
            "Events dropped after the audit file stayed unwritable past the backlog limit",
            audit_events_lost.clone(),
        );
        let audit_sink_dropped = Counter::default();
        registry.register(
            "audit_sink_dropped",
            "Written events that the database copy, detectors or alerts could not take",
            audit_sink_dropped.clone(),
        );
        let audit_db_failures = Counter::default();
        registry.register(
            "audit_db_failures",
            "Failed inserts into the database copy of the trail",
            audit_db_failures.clone(),
        );
        let audit_fsync_seconds = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.00005, 2.0, 16,
        ));
        registry.register(
            "audit_fsync_seconds",
            "Time to sync the audit file",
            audit_fsync_seconds.clone(),
        );
        let audit_queue_depth = Gauge::default();
        registry.register(
            "audit_queue_depth",
            "Events waiting for the audit writer",
            audit_queue_depth.clone(),
        );
        let detector_alarms = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "detector_alarms",
            "Security events raised by the detectors",
            detector_alarms.clone(),
        );
        let alert_deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "alert_deliveries",
            "Alert webhook deliveries by outcome",
            alert_deliveries.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_request_duration,
            auth_failures,
            rate_limit_rejections,
            audit_events_written,
            audit_write_failures,
            audit_events_lost,
            audit_sink_dropped,
            audit_db_failures,
            audit_fsync_seconds,
            audit_queue_depth,
            detector_alarms,
            alert_deliveries,
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn count_alarm(&self, event_type: &str) {
        self.detector_alarms
            .get_or_create(&ReasonLabels {
                reason: event_type.to_string(),
            })
            .inc();
    }

    pub fn count_alert(&self, outcome: &str) {
        self.alert_deliveries
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Serves `GET /metrics` on its own listener until the process ends.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    audit: crate::audit::AuditLog,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("could not listen on METRICS_ADDRESS {address}: {error}"))?;
    // The bound address, which differs from `address` when its port is 0.
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(address = %bound, "metrics listening");
    let router = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let audit = audit.clone();
            async move {
                metrics.audit_queue_depth.set(audit.queue_depth() as i64);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(error = %error, "metrics listener stopped");
        }
    }))
}

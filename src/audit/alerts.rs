//! Alert delivery: events at or above `ALERT_MIN_SEVERITY` are POSTed as
//! JSON to `ALERT_WEBHOOK_URL` by a background task, with retries and
//! back-off. A full queue drops the alert (counted) rather than make a
//! request wait.
//!
//! Each delivery carries `X-Hyper-Registry-Timestamp` (Unix seconds) and
//! `X-Hyper-Registry-Signature: sha256=<hex>`, the HMAC-SHA256 under
//! `ALERT_WEBHOOK_SECRET` of `<timestamp>.<body>`, so a receiver can check
//! both origin and freshness.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Severity;
use crate::config::{AlertConfig, SecretString};
use crate::metrics::Metrics;

/// Alerts waiting for delivery.
const QUEUE: usize = 1024;
/// Attempts per alert, the first included.
const ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time allowed for one delivery attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

pub const SIGNATURE_HEADER: &str = "x-hyper-registry-signature";
pub const TIMESTAMP_HEADER: &str = "x-hyper-registry-timestamp";

/// Hands alerts to the delivery task.
#[derive(Clone)]
pub struct Alerts {
    sender: mpsc::Sender<Vec<u8>>,
    min_severity: Severity,
    metrics: Arc<Metrics>,
}

impl Alerts {
    /// Starts the delivery task.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    /// The returned task ends once every `Alerts` handle is dropped and the
    /// queue is delivered.
    pub fn start(
        config: &AlertConfig,
        min_severity: Severity,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Alerts, tokio::task::JoinHandle<()>)> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A receiver that redirects could point alerts anywhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (sender, receiver) = mpsc::channel(QUEUE);
        let delivery = Delivery {
            client,
            url: config.webhook_url.clone(),
            secret: config.webhook_secret.clone(),
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(delivery.run(receiver));
        let alerts = Alerts {
            sender,
            min_severity,
            metrics,
        };
        Ok((alerts, task))
    }

    /// Returns whether an event of `severity` is alerted.
    pub fn wants(&self, severity: Severity) -> bool {
        severity >= self.min_severity
    }

    /// Queues a JSON body for delivery without waiting.
    pub fn offer(&self, body: Vec<u8>) {
        if self.sender.try_send(body).is_err() {
            self.metrics.count_alert("dropped");
            tracing::warn!("alert queue full; an alert was dropped");
        }
    }
}

struct Delivery {
    client: reqwest::Client,
    url: String,
    secret: Option<SecretString>,
    metrics: Arc<Metrics>,
}

impl Delivery {
    async fn run(self, mut receiver: mpsc::Receiver<Vec<u8>>) {
        while let Some(body) = receiver.recv().await {
            self.deliver(body).await;
        }
    }

    async fn deliver(&self, body: Vec<u8>) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.attempt(&body).await {
                Ok(()) => {
                    self.metrics.count_alert("delivered");
                    return;
                }
                Err(Failure { retry, reason }) => {
                    self.metrics.count_alert("failed_attempt");
                    // The URL is not logged: it may carry a token.
                    tracing::warn!(attempt, reason = %reason, "alert delivery failed");
                    if !retry || attempt == ATTEMPTS {
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        self.metrics.count_alert("abandoned");
        tracing::error!("alert abandoned after failed deliveries");
    }

    async fn attempt(&self, body: &[u8]) -> Result<(), Failure> {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp);
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, &timestamp, body));
        }
        let response = request.body(body.to_vec()).send().await.map_err(|error| Failure {
            retry: true,
            reason: without_url(&error),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Client errors other than 408 and 429 will not change on retry.
        let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        Err(Failure {
            retry,
            reason: format!("receiver answered {status}"),
        })
    }
}

struct Failure {
    retry: bool,
    reason: String,
}

fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &SecretString, timestamp: &str, body: &[u8]) -> String {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    format!(
        "sha256={}",
        hex::encode(crate::crypto::hmac_sha256(secret.expose().as_bytes(), &message))
    )
}

//! Everything behind the audit file: the database copy (batched inserts),
//! alerts and retention. The writer reports each written batch to one
//! dispatcher task. The dispatcher never makes the writer or a request
//! wait, and every database call it makes has a timeout.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::alerts::Alerts;
use super::writer::{Report, WriterOptions};
use super::{AuditEvent, AuditLog, ChainedEvent, Severity, Status};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::SharedStore;

/// Written batches waiting for the dispatcher.
const REPORT_QUEUE: usize = 4096;
/// Events inserted into the database at most this long after being written.
const DB_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Events inserted per database batch.
const DB_BATCH: usize = 1000;
/// Events kept for the database while it is unreachable; the oldest beyond
/// this are dropped from the copy (the file still has them).
const DB_BACKLOG: usize = 100_000;
/// Time allowed for one database insert or purge.
const DB_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the retention purge runs.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The running pipeline; [`AuditPipeline::finish`] drains and stops it.
pub struct AuditPipeline {
    audit: AuditLog,
    writer: std::thread::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
    alert_delivery: Option<tokio::task::JoinHandle<()>>,
}

/// Dependencies of the pipeline besides the file.
pub struct PipelineOptions {
    pub store: SharedStore,
    pub metrics: Arc<Metrics>,
    /// The alert sender and its delivery task, from [`Alerts::start`].
    pub alerts: Option<(Alerts, tokio::task::JoinHandle<()>)>,
    /// Servers rotate the file; one-shot CLI commands leave it to them.
    pub rotate: bool,
}

impl AuditPipeline {
    /// Opens the audit file and starts the writer and the dispatcher.
    ///
    /// # Errors
    /// When the audit file cannot be opened.
    pub fn start(config: &Config, options: PipelineOptions) -> std::io::Result<(AuditLog, AuditPipeline)> {
        let (reports, receiver) = mpsc::channel(REPORT_QUEUE);
        let (audit, writer) = AuditLog::open(
            Path::new(&config.audit_log_file),
            WriterOptions {
                max_file_bytes: options.rotate.then_some(config.audit.max_file_bytes),
                reports: Some(reports),
                metrics: options.metrics.clone(),
            },
        )?;
        let (alerts, alert_delivery) = match options.alerts {
            Some((alerts, task)) => (Some(alerts), Some(task)),
            None => (None, None),
        };
        let dispatcher = Dispatcher {
            store: options.store,
            metrics: options.metrics,
            alerts,
            audit: audit.clone(),
            backlog: VecDeque::new(),
        };
        let dispatcher = tokio::spawn(dispatcher.run(receiver));
        let pipeline = AuditPipeline {
            audit: audit.clone(),
            writer,
            dispatcher,
            alert_delivery,
        };
        Ok((audit, pipeline))
    }

    /// Writes and syncs everything queued, stops the writer, then lets the
    /// dispatcher insert what remains into the database and the alerts go
    /// out (each bounded in time).
    pub async fn finish(self) {
        self.audit.shutdown().await;
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        if tokio::time::timeout(Duration::from_secs(10), self.dispatcher)
            .await
            .is_err()
        {
            tracing::warn!("the database copy of the audit trail may miss the last events");
        }
        // The dispatcher held the last alert sender, so delivery now ends
        // once the queued alerts are sent (or given up on).
        if let Some(delivery) = self.alert_delivery {
            if tokio::time::timeout(Duration::from_secs(15), delivery).await.is_err() {
                tracing::warn!("alerts still queued at shutdown were not delivered");
            }
        }
    }
}

struct Dispatcher {
    store: SharedStore,
    metrics: Arc<Metrics>,
    alerts: Option<Alerts>,
    /// Used to record the end of an outage, which the file itself shows.
    audit: AuditLog,
    backlog: VecDeque<ChainedEvent>,
}

impl Dispatcher {
    async fn run(mut self, mut reports: mpsc::Receiver<Report>) {
        let mut ticker = tokio::time::interval(DB_FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                report = reports.recv() => match report {
                    Some(report) => self.handle(report).await,
                    None => break,
                },
                _ = ticker.tick() => {
                    self.flush().await;
                }
            }
            if self.backlog.len() >= DB_BATCH {
                self.flush().await;
            }
        }
        // The writer has stopped: insert what is left, then end.
        while !self.backlog.is_empty() {
            if !self.flush().await {
                break;
            }
        }
    }

    async fn handle(&mut self, report: Report) {
        match report {
            Report::Written(events) => {
                for chained in &events {
                    self.alert(&chained.event, Some(chained));
                }
                self.backlog.extend(events);
                while self.backlog.len() > DB_BACKLOG {
                    self.backlog.pop_front();
                    self.metrics.audit_sink_dropped.inc();
                }
            }
            Report::Failed(reason) => {
                // This event cannot be in the file; it goes out as an alert
                // and in the application log.
                let event = AuditEvent::new(
                    Utc::now(),
                    "audit_log_unwritable",
                    "audit_log_unwritable",
                    Status::Failed,
                    Severity::Critical,
                )
                .description(format!(
                    "the audit log cannot be written ({reason}); changes are refused until it can"
                ));
                tracing::error!(reason = %reason, "audit log unwritable: state-changing requests get 503");
                self.alert(&event, None);
            }
            Report::Recovered => {
                let event = AuditEvent::new(
                    Utc::now(),
                    "audit_log_recovered",
                    "audit_log_recovered",
                    Status::Success,
                    Severity::High,
                )
                .description("the audit log is writable again; events held in memory were written");
                self.audit.record(event).await;
            }
        }
    }

    fn alert(&self, event: &AuditEvent, chained: Option<&ChainedEvent>) {
        let Some(alerts) = &self.alerts else {
            return;
        };
        if !alerts.wants(event.severity) {
            return;
        }
        let body = match chained {
            Some(chained) => serde_json::to_vec(chained),
            None => serde_json::to_vec(event),
        };
        if let Ok(body) = body {
            alerts.offer(body);
        }
    }

    /// Inserts one batch from the backlog; returns false when the database
    /// did not take it (it stays in the backlog for the next attempt).
    async fn flush(&mut self) -> bool {
        if self.backlog.is_empty() {
            return true;
        }
        let count = self.backlog.len().min(DB_BATCH);
        let batch = &self.backlog.make_contiguous()[..count];
        let inserted = tokio::time::timeout(DB_TIMEOUT, self.store.insert_audit_events(batch)).await;
        match inserted {
            Ok(Ok(())) => {
                self.backlog.drain(..count);
                true
            }
            Ok(Err(error)) => {
                self.metrics.audit_db_failures.inc();
                tracing::warn!(error = %error, "could not copy audit events to the database; will retry");
                false
            }
            Err(_) => {
                self.metrics.audit_db_failures.inc();
                tracing::warn!("copying audit events to the database timed out; will retry");
                false
            }
        }
    }
}

/// Deletes the database copy's events older than the retention period and
/// records the purge in the trail; returns how many were deleted.
///
/// # Errors
/// When the database fails or does not respond in time.
pub async fn purge_expired(
    store: &SharedStore,
    audit: &AuditLog,
    now: DateTime<Utc>,
    retention_days: u32,
) -> anyhow::Result<u64> {
    let before = now - chrono::Duration::days(i64::from(retention_days));
    let deleted = tokio::time::timeout(DB_TIMEOUT, store.purge_audit_events(before))
        .await
        .map_err(|_| anyhow::anyhow!("the retention purge timed out"))??;
    if deleted > 0 {
        let event = AuditEvent::new(
            now,
            "audit_retention_purge",
            "audit_retention_purge",
            Status::Success,
            Severity::Low,
        )
        .description(format!(
            "deleted {deleted} events older than {retention_days} days (AUDIT_RETENTION_DAYS) from the database copy"
        ));
        audit
            .record_durable(event)
            .await
            .map_err(|_| anyhow::anyhow!("the purge could not be recorded in the audit log"))?;
    }
    Ok(deleted)
}

/// Runs [`purge_expired`] at start-up and then hourly.
pub async fn purge_periodically(
    store: SharedStore,
    audit: AuditLog,
    clock: Arc<dyn crate::clock::Clock>,
    retention_days: u32,
) {
    let mut ticker = tokio::time::interval(PURGE_INTERVAL);
    loop {
        ticker.tick().await;
        if let Err(error) = purge_expired(&store, &audit, clock.now(), retention_days).await {
            tracing::warn!(error = %error, "audit retention purge failed; will retry");
        }
    }
}

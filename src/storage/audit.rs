//! The database side of the audit trail and of run-time settings, kept apart
//! from [`super::Store`]'s registry methods.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StorageResult;
use crate::audit::{ChainedEvent, Severity, Status};

/// Audit events per INSERT statement. A statement's values are bound on an
/// async worker without a pause, and the requests waiting on that worker
/// wait as long. With 500 rows, the p99 of reads at half load on PostgreSQL
/// was 4.7 to 5.8 ms. With 100 it was 3.1 to 3.5 ms (docs/benchmarks.md).
pub const EVENTS_PER_STATEMENT: usize = 100;

/// Filters of `GET /api/v1/admin/audit` and `audit query`; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// That severity and above.
    pub min_severity: Option<Severity>,
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<Status>,
    /// Inclusive lower bound.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub until: Option<DateTime<Utc>>,
    /// Only events older than this sequence number (the cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A stored event with its position, which the cursor refers to.
#[derive(Debug, Clone)]
pub struct StoredAuditEvent {
    pub seq: i64,
    pub event: ChainedEvent,
}

/// Numeric rank of a severity, stored for "this level and above" queries.
pub fn severity_rank(severity: Severity) -> i16 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Inserts events; an event already stored (same `event_id`) is skipped,
    /// so a retried batch is harmless.
    async fn insert_audit_events(&self, events: &[ChainedEvent]) -> StorageResult<()>;
    async fn query_audit_events(&self, query: &AuditQuery) -> StorageResult<Vec<StoredAuditEvent>>;
    /// Deletes events older than `before`; returns how many.
    async fn purge_audit_events(&self, before: DateTime<Utc>) -> StorageResult<u64>;

    /// Reads a run-time setting (JSON text).
    async fn get_setting(&self, key: &str) -> StorageResult<Option<String>>;
    /// Writes a run-time setting (JSON text).
    async fn put_setting(&self, key: &str, value: &str, now: DateTime<Utc>) -> StorageResult<()>;
}

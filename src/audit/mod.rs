//! The audit trail: one JSON object per line in `AUDIT_LOG_FILE`, hash-chained
//! so that a deleted or edited line is detectable, with a queryable copy in
//! the database, detectors and alerts.
//!
//! Events go through a bounded channel to a single writer thread, so request
//! handlers never open or lock the file. A full channel makes senders wait
//! (back-pressure) rather than drop events. Security events are flushed to
//! disk before [`AuditLog::record_durable`] returns. After each batch the
//! writer hands the written lines to the pipeline (database copy, alerts),
//! which never makes the writer wait.

pub mod alerts;
pub mod detector;
mod event;
mod file;
mod format;
pub mod pipeline;
mod writer;

pub use event::{check_manual_event, AuditEvent, ChainedEvent, Severity, Status};
pub use file::{rotated_files, ROTATION_EVENT};
pub use format::{render_line, verify_chain, ChainError, GENESIS_HASH};
pub use pipeline::{AuditPipeline, PipelineOptions};
pub use writer::{AuditLog, AuditUnavailable};

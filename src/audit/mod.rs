//! The audit trail: one JSON object per line in `AUDIT_LOG_FILE`, hash-chained
//! so that a deleted or edited line is detectable.
//!
//! Events go through a bounded channel to a single writer thread, so request
//! handlers never open or lock the file. A full channel makes senders wait
//! (back-pressure) rather than drop events. Security events are flushed to
//! disk before [`AuditLog::record_durable`] returns.

pub mod detector;
mod event;
mod format;
mod writer;

pub use event::{AuditEvent, ChainedEvent, Severity, Status};
pub use format::{verify_chain, ChainError, GENESIS_HASH};
pub use writer::{AuditLog, AuditUnavailable};

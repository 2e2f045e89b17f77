use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Outcome of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failed,
    Denied,
}

/// Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// One audit record. The field order here is the order in the file; the
/// writer adds `prev_hash` and `hash`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub timestamp: String,
    pub event_id: String,
    pub event_type: String,
    pub action: String,
    pub status: Status,
    pub severity: Severity,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub client_ip: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub http_status: Option<u16>,
    pub request_id: Option<String>,
    pub description: String,
}

impl AuditEvent {
    /// Starts an event at `now`; the request fields stay empty until set.
    pub fn new(now: DateTime<Utc>, event_type: &str, action: &str, status: Status, severity: Severity) -> Self {
        AuditEvent {
            timestamp: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            event_id: Uuid::new_v4().to_string(),
            event_type: event_type.to_string(),
            action: action.to_string(),
            status,
            severity,
            user_id: None,
            api_key_id: None,
            client_ip: None,
            method: None,
            path: None,
            http_status: None,
            request_id: None,
            description: String::new(),
        }
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    pub fn user(mut self, user_id: Option<String>, api_key_id: Option<String>) -> Self {
        self.user_id = user_id;
        self.api_key_id = api_key_id;
        self
    }
}

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Outcome of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failed,
    Denied,
}

impl Status {
    pub fn parse(name: &str) -> Option<Status> {
        match name {
            "success" => Some(Status::Success),
            "failed" => Some(Status::Failed),
            "denied" => Some(Status::Denied),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failed => "failed",
            Status::Denied => "denied",
        }
    }
}

/// Ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Parses the lowercase name used in the trail and the API.
    pub fn parse(name: &str) -> Option<Severity> {
        match name {
            "info" => Some(Severity::Info),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One audit record. The field order here is the order in the file; the
/// writer adds `prev_hash` and `hash`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The verified subject of the client certificate, under mutual TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_subject: Option<String>,
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
            client_cert_subject: None,
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

/// An event as written: with its place in the hash chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainedEvent {
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// Checks the fields of an operator's manual event (HTTP and CLI).
///
/// # Errors
/// A message naming the field that is invalid.
pub fn check_manual_event(event_type: &str, description: &str, user_id: Option<&str>) -> Result<(), String> {
    let type_ok = (1..=64).contains(&event_type.len())
        && event_type.starts_with(|c: char| c.is_ascii_lowercase())
        && event_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.'));
    if !type_ok {
        return Err("`event_type` must be 1 to 64 characters of a-z, 0-9, `_` and `.`, starting with a letter".into());
    }
    let length = description.chars().count();
    if length == 0 || length > 2000 || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err("`description` must be 1 to 2000 characters without control characters".into());
    }
    if let Some(user_id) = user_id {
        let id_ok = (1..=128).contains(&user_id.len())
            && user_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'));
        if !id_ok {
            return Err("`user_id` must be 1 to 128 characters of letters, digits and -_.@:".into());
        }
    }
    Ok(())
}

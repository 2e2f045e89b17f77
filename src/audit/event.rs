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
            // Time-ordered, so the database copy's unique index on event_id
            // grows at its end instead of at random pages.
            event_id: Uuid::now_v7().to_string(),
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

/// Event types that the server itself writes. A manual event may not use
/// them, so that no operator note can pass for a login, a detector alarm or
/// the rotation event that `audit verify` trusts at the head of a file.
pub const RESERVED_EVENT_TYPES: [&str; 45] = [
    "access",
    "account_locked",
    "admin_address_denied",
    "api_key_burst",
    "api_key_created",
    "api_key_revoked",
    "api_key_rotated",
    "audit_log_recovered",
    "audit_log_rotated",
    "audit_log_unwritable",
    "audit_retention_purge",
    "authentication_failed",
    "brute_force_suspected",
    "configuration_warning",
    "emergency_mode_disabled",
    "emergency_mode_enabled",
    "encryption_rewrap",
    "entries_imported",
    "expired_api_key_used",
    "invalid_api_key_used",
    "log_level_changed",
    "login_failed",
    "login_success",
    "logout",
    "mfa_disable_failed",
    "mfa_disabled",
    "mfa_enabled",
    "mfa_setup_started",
    "password_change_failed",
    "password_changed",
    "permission_denial_burst",
    "permission_denied",
    "rate_limit_abuse",
    "rate_limit_exceeded",
    "refresh_token_reused",
    "revoked_api_key_alarm",
    "revoked_api_key_used",
    "role_created",
    "role_deleted",
    "role_updated",
    "rotated_api_key_used",
    "token_refresh_failed",
    "token_refreshed",
    "user_created",
    "user_updated",
];

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
    if RESERVED_EVENT_TYPES.contains(&event_type) {
        return Err(format!(
            "`event_type` `{event_type}` is written by the server itself; choose another name, e.g. incident_note"
        ));
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

//! Audit trail, detector, alert and metrics settings.

use std::net::SocketAddr;

use super::vars::Vars;
use super::{ConfigError, SecretString};
use crate::audit::Severity;

/// Thresholds of the detectors: how many events of one kind from one
/// subject within `window_minutes` raise a security event.
#[derive(Debug, Clone, Copy)]
pub struct DetectorThresholds {
    /// `DETECTOR_WINDOW_MINUTES`, default 5.
    pub window_minutes: u32,
    /// `DETECTOR_FAILED_LOGINS`, default 10, per address and per account.
    pub failed_logins: u32,
    /// `DETECTOR_PERMISSION_DENIALS`, default 20, per principal.
    pub permission_denials: u32,
    /// `DETECTOR_RATE_LIMIT_REJECTIONS`, default 50, per client.
    pub rate_limit_rejections: u32,
    /// `DETECTOR_INVALID_API_KEYS`, default 20, per address.
    pub invalid_api_keys: u32,
}

/// Destination of security alerts.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// `ALERT_WEBHOOK_URL`: an `http://` or `https://` URL.
    pub webhook_url: String,
    /// `ALERT_WEBHOOK_SECRET`: HMAC-SHA256 key of the signature header.
    pub webhook_secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `AUDIT_LOG_MAX_BYTES`, default 100 MiB: the file is rotated past this size.
    pub max_file_bytes: u64,
    /// `AUDIT_RETENTION_DAYS`, default 365: age at which the database copy is purged.
    pub retention_days: u32,
    /// Set when `ALERT_WEBHOOK_URL` is.
    pub alerts: Option<AlertConfig>,
    /// `ALERT_MIN_SEVERITY`, default `high`.
    pub alert_min_severity: Severity,
    /// `METRICS_ADDRESS`: where Prometheus `/metrics` listens, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    pub detectors: DetectorThresholds,
}

impl AuditConfig {
    pub(super) fn from_vars(vars: &Vars) -> Result<AuditConfig, ConfigError> {
        let alert_min_severity = match vars.get("ALERT_MIN_SEVERITY") {
            None => Severity::High,
            Some(raw) => Severity::parse(&raw.to_ascii_lowercase()).ok_or_else(|| ConfigError {
                variable: "ALERT_MIN_SEVERITY",
                problem: format!("unknown severity `{raw}`"),
                fix: "use one of info, low, medium, high, critical".into(),
            })?,
        };
        let alerts = match vars.get("ALERT_WEBHOOK_URL") {
            None => {
                if vars.secret("ALERT_WEBHOOK_SECRET").is_some() {
                    return Err(ConfigError {
                        variable: "ALERT_WEBHOOK_SECRET",
                        problem: "set without ALERT_WEBHOOK_URL".into(),
                        fix: "set ALERT_WEBHOOK_URL to the receiver's address, or unset the secret".into(),
                    });
                }
                None
            }
            Some(url) => {
                let valid = (url.starts_with("https://") || url.starts_with("http://"))
                    && !url.chars().any(|c| c.is_whitespace() || c.is_control());
                if !valid {
                    // The URL may embed a token, so it is not echoed.
                    return Err(ConfigError {
                        variable: "ALERT_WEBHOOK_URL",
                        problem: "not an http:// or https:// URL".into(),
                        fix: "set it to the receiver's address, e.g. https://alerts.example.com/hooks/registry".into(),
                    });
                }
                Some(AlertConfig {
                    webhook_url: url,
                    webhook_secret: vars.secret("ALERT_WEBHOOK_SECRET"),
                })
            }
        };
        let metrics_address = match vars.get("METRICS_ADDRESS") {
            None => None,
            Some(_) => Some(vars.parse("METRICS_ADDRESS", "", "an address such as 127.0.0.1:9100")?),
        };
        Ok(AuditConfig {
            max_file_bytes: vars.number("AUDIT_LOG_MAX_BYTES", 100 * 1024 * 1024, 1024, 1 << 40)?,
            retention_days: vars.number("AUDIT_RETENTION_DAYS", 365, 1, 36_500)?,
            alerts,
            alert_min_severity,
            metrics_address,
            detectors: DetectorThresholds {
                window_minutes: vars.number("DETECTOR_WINDOW_MINUTES", 5, 1, 24 * 60)?,
                failed_logins: vars.number("DETECTOR_FAILED_LOGINS", 10, 1, 1_000_000)?,
                permission_denials: vars.number("DETECTOR_PERMISSION_DENIALS", 20, 1, 1_000_000)?,
                rate_limit_rejections: vars.number("DETECTOR_RATE_LIMIT_REJECTIONS", 50, 1, 1_000_000)?,
                invalid_api_keys: vars.number("DETECTOR_INVALID_API_KEYS", 20, 1, 1_000_000)?,
            },
        })
    }
}

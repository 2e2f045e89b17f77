//! Checklist items about running the service: rate limits, the audit log,
//! log shipping, backups and alerts.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{finding, Finding, Verdict};
use crate::config::{Config, LogFormat};

/// A backup older than this is reported as stale.
pub(super) const BACKUP_MAX_AGE_DAYS: i64 = 7;

pub(super) fn rate_limits(config: &Config) -> Finding {
    const ITEM: &str = "rate limiting thresholds";
    let detail = format!(
        "RATE_LIMIT_PER_MINUTE={} (burst {}), LOGIN_RATE_LIMIT_PER_MINUTE={}, shared through Redis: {}",
        config.rate_limit_per_minute,
        config.rate_limit_burst,
        config.login_rate_limit_per_minute,
        if config.redis_url.is_some() { "yes" } else { "no" }
    );
    // The security guide suggests 10 to 30 requests per minute for public
    // APIs and 100 to 1000 for internal ones. More than that per client, or a
    // login budget above a person's pace, deserves a second look.
    if config.rate_limit_per_minute > 1000 || config.login_rate_limit_per_minute > 30 {
        return finding(
            ITEM,
            Verdict::Warn,
            detail,
            Some("keep RATE_LIMIT_PER_MINUTE at or below 1000 unless the traffic needs more, and LOGIN_RATE_LIMIT_PER_MINUTE at or below 30"),
        );
    }
    finding(ITEM, Verdict::Pass, detail, None)
}

pub(super) fn audit_log(config: &Config) -> Finding {
    const ITEM: &str = "audit logging";
    let path = &config.audit_log_file;
    match audit_log_problem(path) {
        None => finding(
            ITEM,
            Verdict::Pass,
            format!("AUDIT_LOG_FILE {} is writable", path.display()),
            None,
        ),
        Some(problem) => finding(
            ITEM,
            Verdict::Fail,
            format!("AUDIT_LOG_FILE {}: {problem}", path.display()),
            Some("point AUDIT_LOG_FILE at a file in a directory the server's user can write"),
        ),
    }
}

/// Returns why the audit log cannot be written, without creating it: a
/// file made here by another user (say root) could lock the server out.
fn audit_log_problem(path: &Path) -> Option<String> {
    if path.exists() {
        return match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(_) => None,
            Err(error) => Some(format!("cannot be opened for appending ({error})")),
        };
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The nearest existing ancestor is where the server would create it.
    let existing = parent.ancestors().find(|dir| dir.exists())?;
    match std::fs::metadata(existing) {
        Ok(metadata) if !metadata.is_dir() => Some(format!("{} is not a directory", existing.display())),
        // NOTE: this reads the mode bits, not this user's access, so a
        // directory owned by another user can still pass.
        Ok(metadata) if metadata.permissions().readonly() => Some(format!("{} is read-only", existing.display())),
        Ok(_) => None,
        Err(error) => Some(format!("{} cannot be inspected ({error})", existing.display())),
    }
}

pub(super) fn log_aggregation(config: &Config) -> Finding {
    let format = match config.log_format {
        LogFormat::Json => "the application log is JSON Lines on standard output, ready for a collector",
        LogFormat::Pretty => "LOG_FORMAT=pretty is meant for terminals; collectors parse LOG_FORMAT=json",
    };
    finding(
        "log aggregation",
        Verdict::Manual,
        format!("{format}; ship it and AUDIT_LOG_FILE to central storage"),
        Some("forward both logs to your log platform and keep the audit log beyond AUDIT_RETENTION_DAYS there"),
    )
}

pub(super) fn backups(config: &Config, now: DateTime<Utc>) -> Finding {
    const ITEM: &str = "backup and recovery";
    if !config.uses_sqlite() {
        return finding(
            ITEM,
            Verdict::Manual,
            "PostgreSQL is backed up with pg_dump or the provider's snapshots, which this command cannot see",
            Some("schedule pg_dump as described under \"Backups\" in docs/deployment.md, and test a restore"),
        );
    }
    let fix = Some(
        "run `hyper-registry backup --out FILE` on a schedule and keep the copies off this machine; \
         backups made by other means are not seen here, so check those by hand",
    );
    let record = config.data_dir.join(crate::cli::backup::LAST_BACKUP_FILE);
    let completed_at = std::fs::read_to_string(&record)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|value| value["completed_at"].as_str().map(str::to_string))
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|time| time.with_timezone(&Utc));
    match completed_at {
        None => finding(
            ITEM,
            Verdict::Warn,
            "no run of `hyper-registry backup` is recorded in DATA_DIR",
            fix,
        ),
        Some(time) if now - time > chrono::Duration::days(BACKUP_MAX_AGE_DAYS) => finding(
            ITEM,
            Verdict::Warn,
            format!(
                "the last `hyper-registry backup` ran at {}, more than {BACKUP_MAX_AGE_DAYS} days ago",
                time.to_rfc3339()
            ),
            fix,
        ),
        Some(time) => finding(
            ITEM,
            Verdict::Pass,
            format!("the last `hyper-registry backup` ran at {}", time.to_rfc3339()),
            None,
        ),
    }
}

pub(super) fn alerts(config: &Config) -> Finding {
    const ITEM: &str = "monitoring and alerts";
    let metrics = match config.audit.metrics_address {
        Some(address) => format!("metrics on {address}"),
        None => "no METRICS_ADDRESS".to_string(),
    };
    match &config.audit.alerts {
        Some(alerts) if alerts.webhook_secret.is_some() => finding(
            ITEM,
            Verdict::Pass,
            format!("ALERT_WEBHOOK_URL and ALERT_WEBHOOK_SECRET are set; {metrics}"),
            None,
        ),
        Some(_) => finding(
            ITEM,
            Verdict::Warn,
            format!("ALERT_WEBHOOK_URL is set without ALERT_WEBHOOK_SECRET, so receivers cannot verify alerts; {metrics}"),
            Some("set ALERT_WEBHOOK_SECRET to a random value shared with the receiver"),
        ),
        None => finding(
            ITEM,
            Verdict::Warn,
            format!("ALERT_WEBHOOK_URL is not set, so security alerts reach nobody; {metrics}"),
            Some("set ALERT_WEBHOOK_URL (and ALERT_WEBHOOK_SECRET) to your alerting endpoint, and scrape /metrics via METRICS_ADDRESS"),
        ),
    }
}

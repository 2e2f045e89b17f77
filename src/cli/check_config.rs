//! `hyper-registry check-config`: walks the production checklist of the
//! security guide against the configuration in the environment.
//!
//! Each item is PASS, FAIL or WARN with the fix, or MANUAL when no program
//! can check it (firewall rules, a VPN, log aggregation, where keys are
//! documented). The command exits non-zero when any item fails. It prints
//! whether secrets are set and how strong they are, never their values.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::{Config, Environment, LogFormat};

/// A backup older than this is reported as stale.
const BACKUP_MAX_AGE_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Pass,
    Warn,
    Fail,
    Manual,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Manual => "MANUAL",
        }
    }
}

/// One line of the report: the checklist item, the verdict, what was found
/// and, unless it passed, what to do.
pub(super) struct Finding {
    item: &'static str,
    verdict: Verdict,
    detail: String,
    fix: Option<String>,
}

fn finding(item: &'static str, verdict: Verdict, detail: impl Into<String>, fix: Option<&str>) -> Finding {
    Finding {
        item,
        verdict,
        detail: detail.into(),
        fix: fix.map(str::to_string),
    }
}

/// Reads the configuration without the production refusals, prints every
/// finding and returns failure when any item fails.
pub(super) fn run() -> ExitCode {
    let config = match Config::from_env_unchecked() {
        Ok(config) => config,
        Err(error) => {
            println!("FAIL    configuration: {error}");
            return ExitCode::FAILURE;
        }
    };

    let findings = check(&config, Utc::now());
    for finding in &findings {
        println!("{:<7} {}: {}", finding.verdict.label(), finding.item, finding.detail);
        if let Some(fix) = &finding.fix {
            println!("        fix: {fix}");
        }
    }
    let failed = findings.iter().filter(|f| f.verdict == Verdict::Fail).count();
    let warned = findings.iter().filter(|f| f.verdict == Verdict::Warn).count();
    let manual = findings.iter().filter(|f| f.verdict == Verdict::Manual).count();
    println!("\n{failed} failed, {warned} warnings, {manual} to check by hand");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Returns the findings in the order of the checklist.
pub(super) fn check(config: &Config, now: DateTime<Utc>) -> Vec<Finding> {
    vec![
        production_mode(config),
        jwt_secret(config),
        certificates(config),
        finding(
            "firewall rules",
            Verdict::Manual,
            format!("expose only BIND_ADDRESS ({}) to the clients that need it", config.bind_address),
            Some("allow the listen port from the load balancer or clients only, and the database and Redis from the instances only"),
        ),
        https_only(config),
        finding(
            "authentication on all endpoints",
            Verdict::Pass,
            "built in: every route but /health, /ready and /auth/login needs a token or an API key",
            None,
        ),
        rate_limits(config),
        audit_log(config),
        log_aggregation(config),
        backups(config, now),
        finding(
            "API keys and secrets documented",
            Verdict::Manual,
            "record where JWT_SECRET_KEY and ENCRYPTION_KEY are kept, who can read them and how they are rotated",
            Some("keep both keys in a secret manager; losing ENCRYPTION_KEY makes every encrypted value unreadable"),
        ),
        alerts(config),
        cors(config),
        encryption_key(config),
        database_transport(config),
        admin_addresses(config),
        finding(
            "VPN for admin access",
            Verdict::Manual,
            "no program can see whether admins reach the service through a VPN",
            Some("put the admin network behind a VPN and list it in ADMIN_ALLOWED_CIDRS"),
        ),
        mfa(config),
    ]
}

fn production_mode(config: &Config) -> Finding {
    match config.environment {
        Environment::Production => finding("production mode", Verdict::Pass, "HYPER_REGISTRY_ENV=production", None),
        Environment::Development => finding(
            "production mode",
            Verdict::Fail,
            "HYPER_REGISTRY_ENV is development, which allows generated keys",
            Some("set HYPER_REGISTRY_ENV=production"),
        ),
    }
}

fn jwt_secret(config: &Config) -> Finding {
    const ITEM: &str = "strong JWT secret key (at least 32 characters)";
    let fix = Some("set JWT_SECRET_KEY to the output of `hyper-registry secret generate`");
    let Some(key) = &config.jwt_secret_key else {
        return finding(
            ITEM,
            Verdict::Fail,
            "JWT_SECRET_KEY is not set, so a generated development key is used",
            fix,
        );
    };
    let length = key.expose().trim().chars().count();
    let distinct: std::collections::HashSet<char> = key.expose().chars().collect();
    if length < 32 || distinct.len() < 8 {
        return finding(
            ITEM,
            Verdict::Fail,
            format!(
                "JWT_SECRET_KEY is set but weak ({length} characters, {} distinct)",
                distinct.len()
            ),
            fix,
        );
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("JWT_SECRET_KEY is set ({length} characters)"),
        None,
    )
}

fn certificates(config: &Config) -> Finding {
    const ITEM: &str = "TLS certificates";
    if let Some(tls) = &config.transport.tls {
        let problems: Vec<String> = [
            (&tls.cert_file, "SSL_CERT_FILE", "CERTIFICATE-----"),
            (&tls.key_file, "SSL_KEY_FILE", "PRIVATE KEY-----"),
        ]
        .into_iter()
        .filter_map(|(path, variable, marker)| {
            pem_problem(path, marker).map(|problem| format!("{variable}: {problem}"))
        })
        .collect();
        if !problems.is_empty() {
            return finding(
                ITEM,
                Verdict::Fail,
                problems.join("; "),
                Some("point SSL_CERT_FILE and SSL_KEY_FILE at readable PEM files (certbot's fullchain.pem and privkey.pem)"),
            );
        }
        // NOTE: whether the key matches the certificate is checked when the
        // server starts and loads them, not here.
        return finding(
            ITEM,
            Verdict::Pass,
            "SSL_CERT_FILE and SSL_KEY_FILE are readable PEM files; the server checks at start-up that they match",
            None,
        );
    }
    if config.transport.tls_terminated_by_proxy {
        return finding(
            ITEM,
            Verdict::Pass,
            "TLS ends at a proxy in TRUSTED_PROXIES (TLS_TERMINATED_BY_PROXY=true)",
            None,
        );
    }
    finding(
        ITEM,
        Verdict::Fail,
        "no certificate and no TLS-terminating proxy: traffic is plain HTTP",
        Some("set SSL_CERT_FILE and SSL_KEY_FILE, or TLS_TERMINATED_BY_PROXY=true with TRUSTED_PROXIES"),
    )
}

/// Returns what is wrong with a PEM file, or `None` when it is readable and
/// contains a block ending in `marker`.
fn pem_problem(path: &Path, marker: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains(marker) => None,
        Ok(_) => Some(format!("{} has no PEM block ending in {marker}", path.display())),
        Err(error) => Some(format!("{} cannot be read ({error})", path.display())),
    }
}

fn https_only(config: &Config) -> Finding {
    const ITEM: &str = "HTTPS only";
    if config.transport.https_only {
        return finding(
            ITEM,
            Verdict::Pass,
            "HTTPS_ONLY=true: no start without TLS, HSTS sent",
            None,
        );
    }
    finding(
        ITEM,
        Verdict::Fail,
        "HTTPS_ONLY is not set",
        Some("set HTTPS_ONLY=true"),
    )
}

fn rate_limits(config: &Config) -> Finding {
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

fn audit_log(config: &Config) -> Finding {
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

fn log_aggregation(config: &Config) -> Finding {
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

fn backups(config: &Config, now: DateTime<Utc>) -> Finding {
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
    let record = config.data_dir.join(super::backup::LAST_BACKUP_FILE);
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

fn alerts(config: &Config) -> Finding {
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

fn cors(config: &Config) -> Finding {
    const ITEM: &str = "CORS restrictions";
    let origins = &config.transport.cors_allowed_origins;
    if origins.is_empty() {
        return finding(
            ITEM,
            Verdict::Pass,
            "CORS_ALLOWED_ORIGINS is empty: no cross-origin access",
            None,
        );
    }
    let plain_http: Vec<&str> = origins
        .iter()
        .map(String::as_str)
        .filter(|origin| origin.starts_with("http://"))
        .collect();
    if !plain_http.is_empty() {
        return finding(
            ITEM,
            Verdict::Warn,
            format!("plain-HTTP origins are allowed: {}", plain_http.join(", ")),
            Some("list only https:// origins in CORS_ALLOWED_ORIGINS in production"),
        );
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("exact origins only: {}", origins.join(", ")),
        None,
    )
}

fn encryption_key(config: &Config) -> Finding {
    const ITEM: &str = "database encryption (ENCRYPTION_KEY)";
    let fix = Some("set ENCRYPTION_KEY to the output of `hyper-registry secret generate`");
    let Some(key) = &config.encryption_key else {
        return finding(
            ITEM,
            Verdict::Fail,
            "ENCRYPTION_KEY is not set, so a generated development key is used",
            fix,
        );
    };
    let distinct: std::collections::HashSet<u8> = key.iter().copied().collect();
    if distinct.len() < 8 {
        return finding(ITEM, Verdict::Fail, "ENCRYPTION_KEY is set but has repeated bytes", fix);
    }
    let previous = config.encryption_key_previous.len();
    let detail = format!(
        "ENCRYPTION_KEY is set (key id {}); {previous} old keys in ENCRYPTION_KEY_PREVIOUS",
        hex::encode(crate::crypto::key_id(key))
    );
    if previous > 0 {
        return finding(
            ITEM,
            Verdict::Warn,
            detail,
            Some("finish the rotation with `hyper-registry encryption rewrap`, then remove ENCRYPTION_KEY_PREVIOUS"),
        );
    }
    finding(ITEM, Verdict::Pass, detail, None)
}

fn database_transport(config: &Config) -> Finding {
    const ITEM: &str = "database connection";
    let url = config.database_url.expose();
    if config.uses_sqlite() {
        return sqlite_file(url);
    }
    let parameters: Vec<(String, String)> = url
        .split_once('?')
        .map(|(_, query)| form_urlencoded::parse(query.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let sslmode = parameters
        .iter()
        .find(|(name, _)| name == "sslmode")
        .map(|(_, value)| value.as_str());
    match sslmode {
        Some("verify-full") => finding(
            ITEM,
            Verdict::Pass,
            "PostgreSQL over TLS with sslmode=verify-full",
            None,
        ),
        Some(mode @ ("require" | "verify-ca")) => finding(
            ITEM,
            Verdict::Pass,
            format!("PostgreSQL over TLS with sslmode={mode}; verify-full also checks the server's name"),
            None,
        ),
        other => finding(
            ITEM,
            Verdict::Fail,
            format!(
                "PostgreSQL without required TLS (sslmode={})",
                other.unwrap_or("unset, which lets a man in the middle downgrade to plain text")
            ),
            Some("add ?sslmode=verify-full (or at least sslmode=require) to DATABASE_URL"),
        ),
    }
}

fn sqlite_file(url: &str) -> Finding {
    const ITEM: &str = "database connection";
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path) {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return finding(
                    ITEM,
                    Verdict::Warn,
                    format!("SQLite file {path} has mode {mode:o}, readable by other users"),
                    Some("chmod 600 the database file and chmod 700 DATA_DIR"),
                );
            }
        }
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("SQLite file {path} on this machine: no network connection to protect"),
        None,
    )
}

fn admin_addresses(config: &Config) -> Finding {
    const ITEM: &str = "admin API restricted by address";
    let allowed = &config.transport.admin_allowed_cidrs;
    if allowed.is_empty() {
        return finding(
            ITEM,
            Verdict::Fail,
            "ADMIN_ALLOWED_CIDRS is empty: /api/v1/admin/* answers from any address",
            Some("set ADMIN_ALLOWED_CIDRS to the admin or VPN network, e.g. 10.8.0.0/24"),
        );
    }
    let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    if allowed.iter().any(|network| network.prefix_len() == 0) {
        return finding(
            ITEM,
            Verdict::Fail,
            format!(
                "ADMIN_ALLOWED_CIDRS contains a network of every address: {}",
                list.join(", ")
            ),
            Some("list only the admin or VPN networks"),
        );
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("ADMIN_ALLOWED_CIDRS={}", list.join(", ")),
        None,
    )
}

fn mfa(config: &Config) -> Finding {
    const ITEM: &str = "multi-factor authentication";
    let roles = &config.mfa_required_roles;
    if roles.iter().any(|role| role == "admin") {
        return finding(
            ITEM,
            Verdict::Pass,
            format!("MFA_REQUIRED_ROLES={}", roles.join(",")),
            None,
        );
    }
    let detail = if roles.is_empty() {
        "MFA_REQUIRED_ROLES is empty: nobody must use MFA".to_string()
    } else {
        format!("MFA_REQUIRED_ROLES={} does not include admin", roles.join(","))
    };
    finding(
        ITEM,
        Verdict::Warn,
        detail,
        Some("set MFA_REQUIRED_ROLES=admin (and other privileged roles)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    fn verdict_of(findings: &[Finding], item: &str) -> Verdict {
        findings
            .iter()
            .find(|f| f.item.starts_with(item))
            .map(|f| f.verdict)
            .unwrap_or_else(|| panic!("no item {item}"))
    }

    #[test]
    fn database_sslmode_matrix() {
        let cases = [
            ("postgres://db.internal/registry?sslmode=verify-full", Verdict::Pass),
            ("postgres://db.internal/registry?sslmode=require", Verdict::Pass),
            ("postgres://db.internal/registry?sslmode=prefer", Verdict::Fail),
            ("postgres://db.internal/registry?sslmode=disable", Verdict::Fail),
            ("postgres://db.internal/registry", Verdict::Fail),
        ];
        for (url, expected) in cases {
            let findings = check(&config(&[("DATABASE_URL", url)]), Utc::now());
            assert_eq!(verdict_of(&findings, "database connection"), expected, "{url}");
        }
    }

    #[test]
    fn admin_cidrs_matrix() {
        let cases = [
            ("", Verdict::Fail),
            ("0.0.0.0/0", Verdict::Fail),
            ("10.8.0.0/24", Verdict::Pass),
        ];
        for (cidrs, expected) in cases {
            let findings = check(&config(&[("ADMIN_ALLOWED_CIDRS", cidrs)]), Utc::now());
            assert_eq!(verdict_of(&findings, "admin API"), expected, "{cidrs:?}");
        }
    }

    #[test]
    fn backup_age_decides_verdict() {
        let data_dir = tempfile::tempdir().unwrap();
        let data_path = data_dir.path().to_string_lossy().to_string();
        let config = config(&[("DATA_DIR", &data_path)]);
        let now = Utc::now();
        assert_eq!(
            verdict_of(&check(&config, now), "backup"),
            Verdict::Warn,
            "none recorded"
        );

        let record = serde_json::json!({"completed_at": (now - chrono::Duration::days(1)).to_rfc3339(), "file": "x"});
        std::fs::write(
            data_dir.path().join(super::super::backup::LAST_BACKUP_FILE),
            record.to_string(),
        )
        .unwrap();
        assert_eq!(verdict_of(&check(&config, now), "backup"), Verdict::Pass, "a day old");
        let later = now + chrono::Duration::days(BACKUP_MAX_AGE_DAYS + 1);
        assert_eq!(verdict_of(&check(&config, later), "backup"), Verdict::Warn, "stale");
    }
}

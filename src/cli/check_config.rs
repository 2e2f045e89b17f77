//! `hyper-registry check-config`: walks the production checklist of the
//! security guide against the configuration in the environment.
//!
//! Each item is PASS, FAIL or WARN with the fix, or MANUAL when no program
//! can check it (firewall rules, a VPN, log aggregation, where keys are
//! documented). The command exits non-zero when any item fails. It prints
//! whether secrets are set and how strong they are, never their values.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::config::Config;

mod credentials;
mod operations;
mod transport;

use credentials::{encryption_key, jwt_secret, mfa, production_mode};
use operations::{alerts, audit_log, backups, log_aggregation, rate_limits};
use transport::{admin_addresses, certificates, cors, database_transport, https_only, trusted_proxies};

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
        trusted_proxies(config),
        finding(
            "VPN for admin access",
            Verdict::Manual,
            "no program can see whether admins reach the service through a VPN",
            Some("put the admin network behind a VPN and list it in ADMIN_ALLOWED_CIDRS"),
        ),
        mfa(config),
    ]
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
        let later = now + chrono::Duration::days(operations::BACKUP_MAX_AGE_DAYS + 1);
        assert_eq!(verdict_of(&check(&config, later), "backup"), Verdict::Warn, "stale");
    }
}

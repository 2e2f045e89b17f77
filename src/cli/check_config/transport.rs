//! Checklist items about the network: certificates, HTTPS, CORS, the
//! database connection and the admin address allow-list.

use std::path::Path;

use super::{finding, Finding, Verdict};
use crate::config::Config;

pub(super) fn certificates(config: &Config) -> Finding {
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

pub(super) fn https_only(config: &Config) -> Finding {
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

pub(super) fn cors(config: &Config) -> Finding {
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

pub(super) fn database_transport(config: &Config) -> Finding {
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

pub(super) fn admin_addresses(config: &Config) -> Finding {
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

pub(super) fn trusted_proxies(config: &Config) -> Finding {
    const ITEM: &str = "trusted proxies";
    let proxies = &config.transport.trusted_proxies;
    if proxies.is_empty() {
        return finding(
            ITEM,
            Verdict::Pass,
            "TRUSTED_PROXIES is empty: X-Forwarded-For is ignored",
            None,
        );
    }
    let list: Vec<String> = proxies.iter().map(ToString::to_string).collect();
    if proxies.iter().any(|network| network.prefix_len() == 0) {
        return finding(
            ITEM,
            Verdict::Fail,
            format!(
                "TRUSTED_PROXIES contains a network of every address, so any client chooses its own address: {}",
                list.join(", ")
            ),
            Some("list only the addresses of your proxies or load balancers"),
        );
    }
    finding(
        ITEM,
        Verdict::Pass,
        format!("TRUSTED_PROXIES={}", list.join(", ")),
        None,
    )
}

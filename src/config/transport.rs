//! Transport and perimeter settings: TLS files, client certificates, CORS,
//! trusted proxies and the admin address allow-list.

use std::path::PathBuf;

use ipnet::IpNet;

use super::vars::Vars;
use super::ConfigError;

/// Whether a client certificate must be presented (`SSL_CLIENT_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// The certificate files of an HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `SSL_CERT_FILE`: the PEM chain, leaf first.
    pub cert_file: PathBuf,
    /// `SSL_KEY_FILE`: the PEM private key.
    pub key_file: PathBuf,
    /// `SSL_CLIENT_CA_FILE` with `SSL_CLIENT_AUTH`: verify client certificates.
    pub client_ca: Option<(PathBuf, ClientAuth)>,
}

/// Everything about who may connect and how.
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    /// Set when both `SSL_CERT_FILE` and `SSL_KEY_FILE` are.
    pub tls: Option<TlsFiles>,
    /// `HTTPS_ONLY`: refuse to start without TLS and send HSTS.
    pub https_only: bool,
    /// `TLS_TERMINATED_BY_PROXY`: TLS ends at a proxy in `TRUSTED_PROXIES`.
    pub tls_terminated_by_proxy: bool,
    /// `CORS_ALLOWED_ORIGINS`: exact origins such as `https://app.example.com`.
    pub cors_allowed_origins: Vec<String>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `ADMIN_ALLOWED_CIDRS`: where `/api/v1/admin/*` may be called from;
    /// empty means anywhere.
    pub admin_allowed_cidrs: Vec<IpNet>,
    /// Set in development when `SSL_CERT_FILE` was set without
    /// `SSL_KEY_FILE` and ignored, to be logged at start-up.
    pub ignored_cert_file: Option<PathBuf>,
}

impl TransportConfig {
    pub(super) fn from_vars(vars: &Vars, production: bool) -> Result<TransportConfig, ConfigError> {
        // OpenSSL reads SSL_CERT_FILE as its CA bundle, and many machines set
        // it globally. Without SSL_KEY_FILE it is therefore ignored in
        // development (with a warning), so the server starts with zero set-up.
        // Production still rejects it, because it must not fall back to HTTP.
        let lone_cert_file = vars.get("SSL_KEY_FILE").is_none() && vars.get("SSL_CLIENT_CA_FILE").is_none();
        let ignored_cert_file = match vars.get("SSL_CERT_FILE") {
            Some(path) if lone_cert_file && !production => Some(PathBuf::from(path)),
            _ => None,
        };
        let tls = if ignored_cert_file.is_some() {
            None
        } else {
            tls_files(vars)?
        };
        let https_only = vars.flag("HTTPS_ONLY")?;
        let tls_terminated_by_proxy = vars.flag("TLS_TERMINATED_BY_PROXY")?;
        let trusted_proxies = cidr_list(vars, "TRUSTED_PROXIES")?;
        if https_only && tls.is_none() && !tls_terminated_by_proxy {
            return Err(ConfigError {
                variable: "HTTPS_ONLY",
                problem: "set to true but no certificate is configured".into(),
                fix: "set SSL_CERT_FILE and SSL_KEY_FILE, or TLS_TERMINATED_BY_PROXY=true with TRUSTED_PROXIES when a proxy ends TLS".into(),
            });
        }
        if tls_terminated_by_proxy && trusted_proxies.is_empty() {
            return Err(ConfigError {
                variable: "TLS_TERMINATED_BY_PROXY",
                problem: "set to true but TRUSTED_PROXIES is empty".into(),
                fix: "list the proxy addresses in TRUSTED_PROXIES (CIDRs, comma-separated)".into(),
            });
        }
        Ok(TransportConfig {
            tls,
            https_only,
            tls_terminated_by_proxy,
            cors_allowed_origins: origins(vars)?,
            trusted_proxies,
            admin_allowed_cidrs: cidr_list(vars, "ADMIN_ALLOWED_CIDRS")?,
            ignored_cert_file,
        })
    }
}

fn tls_files(vars: &Vars) -> Result<Option<TlsFiles>, ConfigError> {
    let cert_file = vars.get("SSL_CERT_FILE").map(PathBuf::from);
    let key_file = vars.get("SSL_KEY_FILE").map(PathBuf::from);
    let client_ca_file = vars.get("SSL_CLIENT_CA_FILE").map(PathBuf::from);
    let client_auth = match vars.get("SSL_CLIENT_AUTH").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("required") => ClientAuth::Required,
        Some("optional") => ClientAuth::Optional,
        Some(other) => {
            return Err(ConfigError {
                variable: "SSL_CLIENT_AUTH",
                problem: format!("unknown mode `{other}`"),
                fix: "use `required` or `optional`".into(),
            })
        }
    };
    if vars.get("SSL_CLIENT_AUTH").is_some() && client_ca_file.is_none() {
        return Err(ConfigError {
            variable: "SSL_CLIENT_AUTH",
            problem: "set without SSL_CLIENT_CA_FILE".into(),
            fix: "set SSL_CLIENT_CA_FILE to the CA bundle that signs client certificates".into(),
        });
    }
    match (cert_file, key_file) {
        (None, None) => {
            if client_ca_file.is_some() {
                return Err(ConfigError {
                    variable: "SSL_CLIENT_CA_FILE",
                    problem: "client certificates need HTTPS, but SSL_CERT_FILE and SSL_KEY_FILE are not set".into(),
                    fix: "set SSL_CERT_FILE and SSL_KEY_FILE as well".into(),
                });
            }
            Ok(None)
        }
        (Some(_), None) => Err(ConfigError {
            variable: "SSL_KEY_FILE",
            problem: "SSL_CERT_FILE is set but SSL_KEY_FILE is not".into(),
            fix: "set both to serve HTTPS, or neither (SSL_CERT_FILE may be set for OpenSSL's CA bundle: unset it for this process)".into(),
        }),
        (None, Some(_)) => Err(ConfigError {
            variable: "SSL_CERT_FILE",
            problem: "SSL_KEY_FILE is set but SSL_CERT_FILE is not".into(),
            fix: "set both to serve HTTPS, or neither".into(),
        }),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
            client_ca: client_ca_file.map(|path| (path, client_auth)),
        })),
    }
}

/// Parses a comma-separated list of CIDRs; a bare address counts as a
/// single-host network.
fn cidr_list(vars: &Vars, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
    let Some(raw) = vars.get(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| ConfigError {
                    variable: name,
                    problem: format!("`{item}` is not an address or CIDR"),
                    fix: "use comma-separated CIDRs such as 10.0.0.0/8, 192.168.1.10 or fd00::/8".into(),
                })
        })
        .collect()
}

/// Parses `CORS_ALLOWED_ORIGINS`: each item must be exactly an origin
/// (scheme, host, optional port), since the list is matched byte for byte.
fn origins(vars: &Vars) -> Result<Vec<String>, ConfigError> {
    let Some(raw) = vars.get("CORS_ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            if is_exact_origin(item) {
                Ok(item.to_string())
            } else {
                Err(ConfigError {
                    variable: "CORS_ALLOWED_ORIGINS",
                    problem: format!("`{item}` is not an exact origin (wildcards and `null` are not allowed)"),
                    fix: "list origins as scheme://host[:port], e.g. https://app.example.com, comma-separated".into(),
                })
            }
        })
        .collect()
}

fn is_exact_origin(item: &str) -> bool {
    let Some((scheme, rest)) = item.split_once("://") else {
        return false;
    };
    if scheme != "http" && scheme != "https" {
        return false;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => (host, Some(port)),
        _ => (rest, None),
    };
    let port_ok = port.is_none_or(|port| !port.is_empty() && port.parse::<u16>().is_ok());
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_origins_accepted_and_patterns_rejected() {
        for good in ["https://app.example.com", "http://localhost:3000", "https://[::1]:8443"] {
            assert!(is_exact_origin(good), "{good}");
        }
        for bad in [
            "*",
            "null",
            "https://*.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "app.example.com",
            "https://App.Example.com",
            "https://app.example.com:port",
        ] {
            assert!(!is_exact_origin(bad), "{bad}");
        }
    }
}

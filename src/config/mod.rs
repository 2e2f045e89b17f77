//! Reads every environment variable the server uses into one typed [`Config`],
//! validating each value once at start-up.
//!
//! Nothing here runs after start-up. Errors name the variable, the problem and
//! the fix, and never echo a secret value.

mod audit;
mod secret;
mod transport;
mod vars;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use audit::{AlertConfig, AuditConfig, DetectorThresholds};
pub use secret::SecretString;
pub use transport::{ClientAuth, TlsFiles, TransportConfig};
use vars::Vars;

/// The deployment mode: development allows generated secrets with a warning,
/// production rejects start-up without explicit ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// Output format of the application log (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A secret that either came from the environment or was generated into the
/// data directory for a development setup.
#[derive(Debug, Clone)]
pub struct ProvidedSecret {
    pub value: Option<SecretString>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    /// `BIND_ADDRESS`, default `127.0.0.1:8000`.
    pub bind_address: SocketAddr,
    /// `DATA_DIR`, default `./data`.
    pub data_dir: PathBuf,
    /// `DATABASE_URL`, default `sqlite://$DATA_DIR/hyper_registry.db`.
    pub database_url: SecretString,
    /// `DATABASE_POOL_SIZE`, default 10: most PostgreSQL connections per instance.
    pub database_pool_size: u32,
    /// `REDIS_URL`: shared rate limits and change announcements when set.
    pub redis_url: Option<SecretString>,
    /// `REDIS_KEY_PREFIX`, default `hyper-registry`: namespaces every key and
    /// channel, so that several deployments can share one Redis.
    pub redis_key_prefix: String,
    /// `JWT_SECRET_KEY`: `None` means a development key is generated.
    pub jwt_secret_key: Option<SecretString>,
    /// `JWT_SECRET_KEY_PREVIOUS`: older keys still accepted for verification.
    pub jwt_secret_key_previous: Vec<SecretString>,
    /// `JWT_EXPIRE_MINUTES`, default 60.
    pub jwt_expire_minutes: u32,
    /// `JWT_REFRESH_EXPIRE_DAYS`, default 7.
    pub jwt_refresh_expire_days: u32,
    /// `JWT_ISSUER`, default `hyper-registry`.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`, default `hyper-registry-api`.
    pub jwt_audience: String,
    /// `JWT_LEEWAY_SECONDS`, default 30, at most 60.
    pub jwt_leeway_seconds: u32,
    /// `API_KEY_EXPIRE_DAYS`, default 365.
    pub api_key_expire_days: u32,
    /// `API_KEY_MAX_EXPIRE_DAYS`, default 730.
    pub api_key_max_expire_days: u32,
    /// `API_KEY_MAX_PER_USER`, default 20: live keys a user may hold. Each key
    /// has its own rate-limit bucket, so this also caps a user's total rate.
    pub api_key_max_per_user: u32,
    /// `RATE_LIMIT_PER_MINUTE`, default 60: token refill rate per client.
    pub rate_limit_per_minute: u32,
    /// `RATE_LIMIT_BURST`, default equal to the per-minute rate: bucket capacity.
    pub rate_limit_burst: u32,
    /// `LOGIN_RATE_LIMIT_PER_MINUTE`, default 10, per client IP and per username.
    pub login_rate_limit_per_minute: u32,
    /// `LOGIN_MAX_FAILED_ATTEMPTS`, default 5.
    pub login_max_failed_attempts: u32,
    /// `LOGIN_LOCKOUT_MINUTES`, default 15.
    pub login_lockout_minutes: u32,
    /// `ENCRYPTION_KEY`: 32 bytes, `None` means a development key is generated.
    pub encryption_key: Option<[u8; 32]>,
    /// `ENCRYPTION_KEY_PREVIOUS`: older keys that still decrypt.
    pub encryption_key_previous: Vec<[u8; 32]>,
    /// `AUDIT_LOG_FILE`, default `$DATA_DIR/audit.log`.
    pub audit_log_file: PathBuf,
    /// Rotation, retention, detectors, alerts and metrics.
    pub audit: AuditConfig,
    /// TLS, client certificates, CORS, proxies and the admin allow-list.
    pub transport: TransportConfig,
    /// `MAX_BODY_BYTES`, default 1 MiB: larger bodies get 413.
    pub max_body_bytes: usize,
    /// `LOG_LEVEL`, default `info`.
    pub log_level: String,
    /// `LOG_FORMAT`, default `json`.
    pub log_format: LogFormat,
    /// `MFA_REQUIRED_ROLES`: holders of these roles must enable MFA.
    pub mfa_required_roles: Vec<String>,
    /// `ADMIN_USERNAME` for the bootstrap administrator, default `admin`.
    pub admin_username: String,
    /// `ADMIN_PASSWORD`: `None` means a random one is printed once.
    pub admin_password: Option<SecretString>,
}

/// A configuration value that stops start-up.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {problem}. Fix: {fix}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
    pub fix: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// Returns the first invalid variable, with a message that names it.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the configuration from explicit variables (tests use this so that
    /// they never depend on the environment of the process running them).
    ///
    /// # Errors
    /// Returns the first invalid variable, with a message that names it.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let config = Self::from_vars_unchecked(vars)?;
        config.check_production()?;
        Ok(config)
    }

    /// Reads the configuration from the process environment without the
    /// production-mode requirements, so that `check-config` can report each
    /// of them instead of stopping at the first.
    ///
    /// # Errors
    /// Returns the first invalid variable, with a message that names it.
    pub fn from_env_unchecked() -> Result<Config, ConfigError> {
        Self::from_vars_unchecked(std::env::vars())
    }

    fn from_vars_unchecked<I, K, V>(vars: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = Vars::new(vars);

        let environment = match vars.get("HYPER_REGISTRY_ENV").as_deref() {
            None | Some("development") | Some("dev") => Environment::Development,
            Some("production") | Some("prod") => Environment::Production,
            Some(_) => {
                return Err(ConfigError {
                    variable: "HYPER_REGISTRY_ENV",
                    problem: "unknown environment".into(),
                    fix: "set it to `development` or `production`".into(),
                })
            }
        };

        let bind_address = vars.parse("BIND_ADDRESS", "127.0.0.1:8000", "an address such as 127.0.0.1:8000")?;
        let data_dir = PathBuf::from(vars.get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = vars
            .get("DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}/hyper_registry.db", data_dir.display()));
        validate_database_url(&database_url)?;

        let redis_url = vars.secret("REDIS_URL");
        if let Some(url) = &redis_url {
            let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|scheme| url.expose().starts_with(scheme));
            if !scheme_ok {
                return Err(ConfigError {
                    variable: "REDIS_URL",
                    problem: "unsupported scheme".into(),
                    fix: "use redis://HOST:PORT[/DB] or rediss:// for TLS".into(),
                });
            }
        }

        let jwt_secret_key = vars.secret("JWT_SECRET_KEY");
        if let Some(key) = &jwt_secret_key {
            validate_jwt_key("JWT_SECRET_KEY", key)?;
        }
        let jwt_secret_key_previous = vars.secret_list("JWT_SECRET_KEY_PREVIOUS");
        for key in &jwt_secret_key_previous {
            validate_jwt_key("JWT_SECRET_KEY_PREVIOUS", key)?;
        }

        let rate_limit_per_minute = vars.number("RATE_LIMIT_PER_MINUTE", 60, 1, 1_000_000)?;
        let rate_limit_burst = vars.number("RATE_LIMIT_BURST", rate_limit_per_minute, 1, 1_000_000)?;
        let api_key_max_expire_days = vars.number("API_KEY_MAX_EXPIRE_DAYS", 730, 1, 3650)?;
        let api_key_expire_days = vars.number("API_KEY_EXPIRE_DAYS", 365, 1, 3650)?;
        if api_key_expire_days > api_key_max_expire_days {
            return Err(ConfigError {
                variable: "API_KEY_EXPIRE_DAYS",
                problem: format!(
                    "{api_key_expire_days} is longer than API_KEY_MAX_EXPIRE_DAYS ({api_key_max_expire_days})"
                ),
                fix: "lower API_KEY_EXPIRE_DAYS or raise API_KEY_MAX_EXPIRE_DAYS".into(),
            });
        }

        let encryption_key = match vars.secret("ENCRYPTION_KEY") {
            Some(value) => Some(decode_encryption_key("ENCRYPTION_KEY", &value)?),
            None => None,
        };
        let mut encryption_key_previous = Vec::new();
        for value in vars.secret_list("ENCRYPTION_KEY_PREVIOUS") {
            encryption_key_previous.push(decode_encryption_key("ENCRYPTION_KEY_PREVIOUS", &value)?);
        }

        let audit_log_file = vars
            .get("AUDIT_LOG_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("audit.log"));

        let log_level = vars
            .get("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        if !matches!(
            log_level.as_str(),
            "trace" | "debug" | "info" | "warn" | "warning" | "error"
        ) {
            return Err(ConfigError {
                variable: "LOG_LEVEL",
                problem: format!("unknown level `{log_level}`"),
                fix: "use one of TRACE, DEBUG, INFO, WARN, ERROR".into(),
            });
        }
        let log_format = match vars.get("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT",
                    problem: format!("unknown format `{other}`"),
                    fix: "use `json` or `pretty`".into(),
                })
            }
        };

        let admin_password = vars.secret("ADMIN_PASSWORD");
        if let Some(password) = &admin_password {
            if let Err(problem) = crate::auth::password::check_policy(password.expose()) {
                return Err(ConfigError {
                    variable: "ADMIN_PASSWORD",
                    problem: problem.to_string(),
                    fix: "choose a longer, less common password or unset it to have one generated".into(),
                });
            }
        }

        let admin_username = vars.get("ADMIN_USERNAME").unwrap_or_else(|| "admin".into());
        if !crate::app::users::is_valid_username(&admin_username) {
            return Err(ConfigError {
                variable: "ADMIN_USERNAME",
                problem: format!("{admin_username:?} is not a valid username"),
                fix: format!("choose another name: {}", crate::app::users::USERNAME_RULE),
            });
        }

        let config = Config {
            environment,
            bind_address,
            data_dir,
            database_url: SecretString::new(database_url),
            database_pool_size: vars.number("DATABASE_POOL_SIZE", 10, 1, 1000)?,
            redis_url,
            redis_key_prefix: vars.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "hyper-registry".into()),
            jwt_secret_key,
            jwt_secret_key_previous,
            jwt_expire_minutes: vars.number("JWT_EXPIRE_MINUTES", 60, 1, 24 * 60)?,
            jwt_refresh_expire_days: vars.number("JWT_REFRESH_EXPIRE_DAYS", 7, 1, 365)?,
            jwt_issuer: vars.get("JWT_ISSUER").unwrap_or_else(|| "hyper-registry".into()),
            jwt_audience: vars.get("JWT_AUDIENCE").unwrap_or_else(|| "hyper-registry-api".into()),
            jwt_leeway_seconds: vars.number("JWT_LEEWAY_SECONDS", 30, 0, 60)?,
            api_key_expire_days,
            api_key_max_expire_days,
            api_key_max_per_user: vars.number("API_KEY_MAX_PER_USER", 20, 1, 1000)?,
            rate_limit_per_minute,
            rate_limit_burst,
            login_rate_limit_per_minute: vars.number("LOGIN_RATE_LIMIT_PER_MINUTE", 10, 1, 1_000_000)?,
            login_max_failed_attempts: vars.number("LOGIN_MAX_FAILED_ATTEMPTS", 5, 1, 1000)?,
            login_lockout_minutes: vars.number("LOGIN_LOCKOUT_MINUTES", 15, 1, 24 * 60)?,
            encryption_key,
            encryption_key_previous,
            audit_log_file,
            audit: AuditConfig::from_vars(&vars)?,
            transport: TransportConfig::from_vars(&vars, environment == Environment::Production)?,
            max_body_bytes: vars.number("MAX_BODY_BYTES", 1_048_576, 1024, 1 << 30)?,
            log_level,
            log_format,
            mfa_required_roles: vars
                .get("MFA_REQUIRED_ROLES")
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            admin_username,
            admin_password,
        };
        Ok(config)
    }

    /// Refuses development shortcuts when `HYPER_REGISTRY_ENV=production`.
    fn check_production(&self) -> Result<(), ConfigError> {
        if self.environment != Environment::Production {
            return Ok(());
        }
        if self.jwt_secret_key.is_none() {
            return Err(ConfigError {
                variable: "JWT_SECRET_KEY",
                problem: "not set in production mode".into(),
                fix: "set it to at least 32 random characters, e.g. from `hyper-registry secret generate`".into(),
            });
        }
        if self.encryption_key.is_none() {
            return Err(ConfigError {
                variable: "ENCRYPTION_KEY",
                problem: "not set in production mode".into(),
                fix: "set it to the output of `hyper-registry secret generate`".into(),
            });
        }
        if self.transport.tls.is_none() && !self.transport.tls_terminated_by_proxy {
            return Err(ConfigError {
                variable: "SSL_CERT_FILE",
                problem: "production mode needs HTTPS, but no certificate is configured".into(),
                fix: "set SSL_CERT_FILE and SSL_KEY_FILE, or TLS_TERMINATED_BY_PROXY=true with TRUSTED_PROXIES when a proxy ends TLS".into(),
            });
        }
        // An old key still verifies tokens, so a weak one is as dangerous as
        // a weak current key.
        let current = self.jwt_secret_key.iter().map(|key| ("JWT_SECRET_KEY", key));
        let previous = self
            .jwt_secret_key_previous
            .iter()
            .map(|key| ("JWT_SECRET_KEY_PREVIOUS", key));
        if let Some((variable, _)) = current.chain(previous).find(|(_, key)| is_weak_jwt_key(key.expose())) {
            return Err(ConfigError {
                variable,
                problem: "too predictable for production (blank or repeated characters)".into(),
                fix: "use the output of `hyper-registry secret generate`".into(),
            });
        }
        if let Some(network) = self
            .transport
            .trusted_proxies
            .iter()
            .find(|network| network.prefix_len() == 0)
        {
            return Err(ConfigError {
                variable: "TRUSTED_PROXIES",
                problem: format!(
                    "{network} contains every address, so any client could choose its own address with X-Forwarded-For"
                ),
                fix: "list only the addresses of your proxies or load balancers".into(),
            });
        }
        if let Some(key) = &self.encryption_key {
            let distinct: std::collections::HashSet<u8> = key.iter().copied().collect();
            if distinct.len() < 8 {
                return Err(ConfigError {
                    variable: "ENCRYPTION_KEY",
                    problem: "too predictable for production (repeated bytes)".into(),
                    fix: "use the output of `hyper-registry secret generate`".into(),
                });
            }
        }
        check_audit_log_writable(&self.audit_log_file)
    }

    /// Returns whether the database is the embedded SQLite file.
    pub fn uses_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

/// Checks whether a JWT signing key is too weak for production: fewer than
/// 32 characters after trimming, or fewer than 8 distinct ones.
pub fn is_weak_jwt_key(key: &str) -> bool {
    let distinct: std::collections::HashSet<char> = key.chars().collect();
    key.trim().chars().count() < 32 || distinct.len() < 8
}

/// Opens the audit log for appending, creating it and its directory when
/// missing, as the audit writer does a moment later. Production refuses to
/// start without a writable trail rather than run with every change refused.
fn check_audit_log_writable(path: &std::path::Path) -> Result<(), ConfigError> {
    let opened = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::OpenOptions::new().append(true).create(true).open(path));
    match opened {
        Ok(_) => Ok(()),
        Err(error) => Err(ConfigError {
            variable: "AUDIT_LOG_FILE",
            problem: format!("{} cannot be opened for writing ({error})", path.display()),
            fix: "point AUDIT_LOG_FILE at a file in a directory this user can write, or fix the owner and mode of the file and its directory".into(),
        }),
    }
}

fn validate_database_url(url: &str) -> Result<(), ConfigError> {
    let supported = ["sqlite:", "postgres://", "postgresql://", "postgresql+asyncpg://"];
    if supported.iter().any(|prefix| url.starts_with(prefix)) {
        return Ok(());
    }
    Err(ConfigError {
        variable: "DATABASE_URL",
        problem: "unsupported scheme".into(),
        fix: "use sqlite://PATH, postgres://… or postgresql://…".into(),
    })
}

fn validate_jwt_key(variable: &'static str, key: &SecretString) -> Result<(), ConfigError> {
    let length = key.expose().chars().count();
    if length >= 32 {
        return Ok(());
    }
    Err(ConfigError {
        variable,
        problem: format!("too short ({length} characters, at least 32 are required)"),
        fix: "generate one with `hyper-registry secret generate` or `openssl rand -base64 32`".into(),
    })
}

fn decode_encryption_key(variable: &'static str, value: &SecretString) -> Result<[u8; 32], ConfigError> {
    use base64::Engine;

    let invalid = |problem: &str| ConfigError {
        variable,
        problem: problem.into(),
        fix: "set it to base64 of 32 random bytes, e.g. the output of `hyper-registry secret generate`".into(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.expose().trim())
        .map_err(|_| invalid("not valid base64"))?;
    bytes
        .try_into()
        .map_err(|_| invalid("does not decode to exactly 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_apply_without_variables() {
        let config = config(&[]).unwrap();
        assert_eq!(config.bind_address.to_string(), "127.0.0.1:8000");
        assert_eq!(config.rate_limit_burst, 60);
        assert_eq!(config.jwt_audience, "hyper-registry-api");
        assert!(config.uses_sqlite());
    }

    #[test]
    fn short_jwt_key_names_variable_without_value() {
        let error = config(&[("JWT_SECRET_KEY", "tooshort-secret")]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("JWT_SECRET_KEY"), "{message}");
        assert!(message.contains("secret generate"), "{message}");
        assert!(!message.contains("tooshort-secret"), "{message}");
    }

    #[test]
    fn encryption_key_must_be_32_bytes() {
        let error = config(&[("ENCRYPTION_KEY", "c2hvcnQ=")]).unwrap_err();
        assert_eq!(error.variable, "ENCRYPTION_KEY");
        assert!(!error.to_string().contains("c2hvcnQ="));
    }

    #[test]
    fn rate_limit_out_of_range_rejected() {
        let error = config(&[("RATE_LIMIT_PER_MINUTE", "0")]).unwrap_err();
        assert_eq!(error.variable, "RATE_LIMIT_PER_MINUTE");
        let error = config(&[("RATE_LIMIT_PER_MINUTE", "ten")]).unwrap_err();
        assert_eq!(error.variable, "RATE_LIMIT_PER_MINUTE");
    }

    #[test]
    fn api_key_max_per_user_range() {
        assert_eq!(config(&[]).unwrap().api_key_max_per_user, 20);
        assert_eq!(
            config(&[("API_KEY_MAX_PER_USER", "1000")])
                .unwrap()
                .api_key_max_per_user,
            1000
        );
        for bad in ["0", "1001", "many"] {
            let error = config(&[("API_KEY_MAX_PER_USER", bad)]).unwrap_err();
            assert_eq!(error.variable, "API_KEY_MAX_PER_USER", "{bad}");
        }
    }

    #[test]
    fn admin_username_outside_username_rule_rejected() {
        assert_eq!(config(&[]).unwrap().admin_username, "admin");
        assert!(config(&[("ADMIN_USERNAME", "root@example.com")]).is_ok());
        for bad in ["ad min", "c\u{430}rol", &"x".repeat(65)] {
            let error = config(&[("ADMIN_USERNAME", bad)]).unwrap_err();
            assert_eq!(error.variable, "ADMIN_USERNAME", "{bad}");
            assert!(error.fix.contains("ASCII letter"), "{error}");
        }
    }

    #[test]
    fn leeway_capped_at_sixty_seconds() {
        let error = config(&[("JWT_LEEWAY_SECONDS", "61")]).unwrap_err();
        assert_eq!(error.variable, "JWT_LEEWAY_SECONDS");
    }

    #[test]
    fn production_requires_explicit_secrets() {
        let error = config(&[("HYPER_REGISTRY_ENV", "production")]).unwrap_err();
        assert_eq!(error.variable, "JWT_SECRET_KEY");
    }

    fn production_vars(audit_log_file: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HYPER_REGISTRY_ENV", "production".into()),
            ("JWT_SECRET_KEY", "a-production-signing-key-0123456789abcdefgh".into()),
            ("ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into()),
            ("TRUSTED_PROXIES", "10.0.0.1".into()),
            ("TLS_TERMINATED_BY_PROXY", "true".into()),
            ("AUDIT_LOG_FILE", audit_log_file.into()),
        ]
    }

    #[test]
    fn production_requires_writable_audit_log() {
        let directory = tempfile::tempdir().unwrap();
        // A directory cannot be opened for appending, even by root.
        let unwritable = directory.path().to_string_lossy().to_string();
        let writable = directory.path().join("logs/audit.log").to_string_lossy().to_string();

        let error = Config::from_vars(production_vars(&unwritable)).unwrap_err();

        assert_eq!(error.variable, "AUDIT_LOG_FILE");
        assert!(error.fix.contains("AUDIT_LOG_FILE"), "{error}");
        assert!(Config::from_vars(production_vars(&writable)).is_ok());
    }

    #[test]
    fn production_rejects_a_weak_previous_jwt_key() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("audit.log").to_string_lossy().to_string();
        let mut vars = production_vars(&log);
        vars.push(("JWT_SECRET_KEY_PREVIOUS", "a".repeat(32)));

        let error = Config::from_vars(vars).unwrap_err();

        assert_eq!(error.variable, "JWT_SECRET_KEY_PREVIOUS");
        assert!(
            !error.to_string().contains(&"a".repeat(32)),
            "no secret echoed: {error}"
        );
    }

    #[test]
    fn production_rejects_trusted_proxies_of_every_address() {
        let directory = tempfile::tempdir().unwrap();
        let log = directory.path().join("audit.log").to_string_lossy().to_string();
        for catch_all in ["0.0.0.0/0", "10.0.0.1,::/0"] {
            let mut vars = production_vars(&log);
            vars.retain(|(name, _)| *name != "TRUSTED_PROXIES");
            vars.push(("TRUSTED_PROXIES", catch_all.into()));

            let error = Config::from_vars(vars).unwrap_err();

            assert_eq!(error.variable, "TRUSTED_PROXIES", "{catch_all}");
        }
    }

    #[test]
    fn unknown_database_scheme_rejected() {
        let error = config(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
        assert_eq!(error.variable, "DATABASE_URL");
        assert!(!error.to_string().contains("hunter2"));
    }
}

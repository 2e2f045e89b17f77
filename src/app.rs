//! The application state shared by every request handler and CLI command,
//! built once from the configuration.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::audit::alerts::Alerts;
use crate::audit::detector::Detectors;
use crate::audit::{AuditLog, AuditPipeline, PipelineOptions};
use crate::auth::jwt::TokenSigner;
use crate::auth::service::AuthSettings;
use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};

use crate::config::{Config, SecretString};
use crate::crypto::{hmac_sha256, AesGcmCipher, Cipher};
use crate::events::{EventBus, RedisLink};
use crate::ratelimit::redis::RedisRateLimiter;
use crate::ratelimit::{LocalRateLimiter, RateLimiter};
use crate::registry::Registry;
use crate::storage::{self, SharedStore};

pub mod accounts;
mod background;
mod dev_secrets;
pub mod key_check;
pub mod rewrap;
pub mod roles;
pub mod users;

pub use users::{create_user, ensure_admin, CreateUserError, NewUser};

/// Secrets in force, from the environment or generated for development.
pub struct Secrets {
    pub jwt_secret_key: SecretString,
    pub encryption_key: [u8; 32],
    /// Keys that were generated rather than configured, for the start-up warning.
    pub generated: Vec<&'static str>,
}

impl Secrets {
    /// Uses the configured secrets or loads or creates development ones in
    /// the data directory (mode 0600).
    ///
    /// # Errors
    /// Fails when a generated secret cannot be read or written.
    pub fn resolve(config: &Config) -> anyhow::Result<Secrets> {
        let mut generated = Vec::new();
        let jwt_secret_key = match &config.jwt_secret_key {
            Some(key) => key.clone(),
            None => {
                generated.push("JWT_SECRET_KEY");
                dev_secrets::jwt_secret(&config.data_dir)?
            }
        };
        let encryption_key = match config.encryption_key {
            Some(key) => key,
            None => {
                generated.push("ENCRYPTION_KEY");
                dev_secrets::encryption_key(&config.data_dir)?
            }
        };
        Ok(Secrets {
            jwt_secret_key,
            encryption_key,
            generated,
        })
    }
}

/// Everything a request handler needs. axum clones the state several times
/// per request, so the parts sit behind one reference count: a clone is one
/// atomic increment instead of one per part.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The shared services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub auth: Arc<Authenticator>,
    pub registry: Registry,
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// The Redis connection when `REDIS_URL` is set.
    pub redis: Option<Arc<RedisLink>>,
    pub audit: AuditLog,
    pub clock: Arc<dyn Clock>,
    /// Key for signing pagination cursors, so a client cannot forge one.
    pub cursor_key: Arc<[u8; 32]>,
    /// Failed logins, denials, rate-limit rejections and bad keys, counted
    /// per subject; a burst raises a security event.
    pub detectors: Arc<Detectors>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Emergency mode and the log level, shared by every instance.
    pub runtime: Arc<crate::incident::RuntimeSettings>,
    /// Requests per principal since start, for analytics.
    pub request_counts: Arc<Mutex<HashMap<uuid::Uuid, u64>>>,
}

/// Derives the pepper for API-key hashes from an encryption key, so that it
/// lives outside the database.
pub fn api_key_pepper(encryption_key: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(encryption_key, b"hyper-registry api-key pepper")
}

/// The parts of the application that CLI commands need without a server.
pub struct Core {
    pub store: SharedStore,
    pub registry: Registry,
    pub secrets: Secrets,
    pub cipher: Arc<dyn Cipher>,
}

impl Core {
    /// Opens storage and the cipher, and checks the encryption key against
    /// the database.
    ///
    /// # Errors
    /// Fails when secrets or storage cannot be opened, or when the
    /// encryption key does not match the database.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Core> {
        ensure_data_dir(&config.data_dir)?;
        let secrets = Secrets::resolve(config)?;
        if let Some(path) = config.database_url.expose().strip_prefix("sqlite://") {
            create_private_file(Path::new(path.split('?').next().unwrap_or(path)))?;
        }
        let store = storage::connect_with_pool(config.database_url.expose(), config.database_pool_size)
            .await
            .context("could not open the database named by DATABASE_URL")?;
        let cipher: Arc<dyn Cipher> = Arc::new(AesGcmCipher::new(
            &secrets.encryption_key,
            &config.encryption_key_previous,
        ));
        key_check::verify_or_create(&store, cipher.as_ref(), clock.now()).await?;
        let registry = Registry::new(store.clone(), cipher.clone(), clock.clone());

        let generated = ensure_admin(
            &store,
            &config.admin_username,
            config.admin_password.as_ref(),
            clock.now(),
        )
        .await?;
        if let Some(password) = generated {
            // Printed to the terminal once, never to the structured log.
            eprintln!(
                "\nCreated the administrator `{}` with the generated password:\n\n    {}\n\nIt is shown only this once. Log in and change it.\n",
                config.admin_username,
                password.expose()
            );
        }
        Ok(Core {
            store,
            registry,
            secrets,
            cipher,
        })
    }
}

/// Creates an empty database file readable by this user only, before SQLite
/// opens it: SQLite gives its WAL and shared-memory files the same mode.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("could not create the database file {}", path.display()))?;
    Ok(())
}

/// Creates the data directory, private to this user.
fn ensure_data_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("could not create DATA_DIR {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

impl AppState {
    /// Builds the state: storage, secrets, authenticator, limiter and the
    /// audit writer (whose thread handle is returned for shutdown).
    ///
    /// # Errors
    /// Fails when any of them cannot be opened.
    pub async fn build(config: Config, clock: Option<Arc<dyn Clock>>) -> anyhow::Result<(AppState, AuditPipeline)> {
        Self::build_with(config, clock, true).await
    }

    /// As [`AppState::build`] for a one-shot CLI command: the audit file is
    /// appended to but never rotated. Alerts of its events are delivered
    /// before [`AuditPipeline::finish`] returns.
    ///
    /// # Errors
    /// As [`AppState::build`].
    pub async fn build_for_cli(config: Config) -> anyhow::Result<(AppState, AuditPipeline)> {
        Self::build_with(config, None, false).await
    }

    async fn build_with(
        config: Config,
        clock: Option<Arc<dyn Clock>>,
        server: bool,
    ) -> anyhow::Result<(AppState, AuditPipeline)> {
        let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
        let core = Core::open(&config, clock.clone()).await?;
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let alerts = match &config.audit.alerts {
            Some(alert_config) => Some(Alerts::start(
                alert_config,
                config.audit.alert_min_severity,
                metrics.clone(),
            )?),
            None => None,
        };
        let options = PipelineOptions {
            store: core.store.clone(),
            metrics: metrics.clone(),
            alerts,
            rotate: server,
        };
        let (audit, audit_pipeline) = AuditPipeline::start(&config, options).with_context(|| {
            format!(
                "could not open AUDIT_LOG_FILE {}: make it writable by this user or point AUDIT_LOG_FILE elsewhere",
                config.audit_log_file.display()
            )
        })?;

        let signer = TokenSigner::new(
            &core.secrets.jwt_secret_key,
            &config.jwt_secret_key_previous,
            &config.jwt_issuer,
            &config.jwt_audience,
            config.jwt_leeway_seconds,
        );
        let mut peppers = vec![api_key_pepper(&core.secrets.encryption_key)];
        peppers.extend(config.encryption_key_previous.iter().map(api_key_pepper));
        let settings = AuthSettings {
            access_token_minutes: config.jwt_expire_minutes,
            max_failed_attempts: config.login_max_failed_attempts,
            lockout_minutes: config.login_lockout_minutes,
            refresh_token_days: config.jwt_refresh_expire_days,
            mfa_required_roles: config.mfa_required_roles.clone(),
            max_api_keys_per_user: config.api_key_max_per_user,
        };
        let auth = Authenticator::new(
            core.store.clone(),
            signer,
            peppers,
            clock.clone(),
            settings,
            core.cipher.clone(),
        )
        .await?;
        let cursor_key = hmac_sha256(
            core.secrets.jwt_secret_key.expose().as_bytes(),
            b"hyper-registry cursor key",
        );

        let auth = Arc::new(auth);

        // With Redis, rate limits are shared and changes are announced to
        // every instance; without it, this instance works on its own.
        let (rate_limiter, redis): (Arc<dyn RateLimiter>, Option<Arc<RedisLink>>) = match &config.redis_url {
            Some(url) => {
                let client = redis::Client::open(url.expose()).context("REDIS_URL is not a valid Redis URL")?;
                let link = Arc::new(RedisLink::new(client));
                let bus = EventBus::new(link.clone(), &config.redis_key_prefix);
                tokio::spawn(EventBus::subscribe(
                    link.client().clone(),
                    bus.channel().to_string(),
                    auth.clone(),
                    core.registry.clone(),
                ));
                core.registry.set_event_bus(bus.clone());
                auth.set_event_bus(bus);
                (
                    Arc::new(RedisRateLimiter::new(link.clone(), &config.redis_key_prefix)),
                    Some(link),
                )
            }
            None => (Arc::new(LocalRateLimiter::new()), None),
        };

        let config_detectors = config.audit.detectors;
        let state = AppState(Arc::new(Services {
            config: Arc::new(config),
            store: core.store,
            auth,
            registry: core.registry,
            rate_limiter,
            redis,
            audit,
            clock,
            cursor_key: Arc::new(cursor_key),
            detectors: Arc::new(Detectors::new(config_detectors)),
            metrics,
            runtime: Arc::new(crate::incident::RuntimeSettings::default()),
            request_counts: Arc::new(Mutex::new(HashMap::new())),
        }));
        if let Some(path) = &state.config.transport.ignored_cert_file {
            tracing::warn!(
                ssl_cert_file = %path.display(),
                "SSL_CERT_FILE is set without SSL_KEY_FILE (often OpenSSL's CA bundle): serving plain HTTP; set both to serve HTTPS"
            );
        }
        for name in &core.secrets.generated {
            tracing::warn!(
                variable = name,
                "no {name} set: using a generated key stored in DATA_DIR; this is a development setup"
            );
            if server {
                let event = crate::audit::AuditEvent::new(
                    state.clock.now(),
                    "configuration_warning",
                    "configuration_warning",
                    crate::audit::Status::Success,
                    crate::audit::Severity::Medium,
                )
                .description(format!("no {name} set: a generated development key is in use"));
                state.audit.record(event).await;
            }
        }
        state.runtime.load(&state.store, state.clock.now()).await;
        Ok((state, audit_pipeline))
    }
}

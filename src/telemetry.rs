//! The application log: `tracing` with `LOG_LEVEL` and `LOG_FORMAT`, and a
//! level that operators can change at run time (`PUT /api/v1/admin/logging`).

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the filter of the installed subscriber; set by [`init`].
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Levels that `LOG_LEVEL` and the logging endpoint accept.
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Noisy dependencies stay at `warn` whatever our own level is. Targets match
/// by prefix, so `hyper=…` would also silence `hyper_registry`.
fn filter(level: &str) -> EnvFilter {
    let level = if level == "warning" { "warn" } else { level };
    EnvFilter::try_new(format!(
        "{level},sqlx=warn,hyper_util=warn,h2=warn,tower=warn,rustls=warn,reqwest=warn"
    ))
    .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber; a second call (tests) is ignored.
pub fn init(level: &str, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = RELOAD.set(Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())));
            }
        }
        LogFormat::Pretty => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            if builder.try_init().is_ok() {
                let _ = RELOAD.set(Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string())));
            }
        }
    }
}

/// Changes the log level of this process. Returns false when no subscriber
/// of ours is installed (some tests run without one).
pub fn set_level(level: &str) -> bool {
    match RELOAD.get() {
        Some(reload) => match reload(filter(level)) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(error = %error, "could not change the log level");
                false
            }
        },
        None => false,
    }
}

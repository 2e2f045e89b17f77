//! Incident-response settings that operators change at run time: emergency
//! mode and the log level. Both live in the database, so that the HTTP API
//! and the CLI of any instance change them for every instance. Each instance
//! re-reads them every two seconds.

use std::sync::RwLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{SharedStore, StorageResult};

const EMERGENCY_KEY: &str = "emergency";
const LOG_LEVEL_KEY: &str = "log_level";
/// How often each instance re-reads the settings.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// Maximum duration of an emergency set at once: one week.
const MAX_EMERGENCY_MINUTES: u32 = 7 * 24 * 60;

/// Checks an emergency request; shared with the CLI.
///
/// # Errors
/// A message naming the field that is out of range.
pub fn check_emergency(rate_limit_per_minute: u32, reason: &str, duration_minutes: Option<u32>) -> Result<(), String> {
    if !(1..=1_000_000).contains(&rate_limit_per_minute) {
        return Err("`rate_limit_per_minute` must be from 1 to 1000000".into());
    }
    let length = reason.chars().count();
    if length == 0 || length > 500 || reason.chars().any(char::is_control) {
        return Err("`reason` must be 1 to 500 characters without control characters".into());
    }
    if duration_minutes.is_some_and(|minutes| !(1..=MAX_EMERGENCY_MINUTES).contains(&minutes)) {
        return Err(format!("`duration_minutes` must be from 1 to {MAX_EMERGENCY_MINUTES}"));
    }
    Ok(())
}

/// Emergency mode: every client without `security:admin` is held to
/// `rate_limit_per_minute` until it is lifted or `expires_at` passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Emergency {
    pub rate_limit_per_minute: u32,
    pub reason: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Starter of the emergency: a user id, or `command line`.
    pub started_by: String,
}

impl Emergency {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// This instance's view of the shared settings.
#[derive(Default)]
pub struct RuntimeSettings {
    emergency: RwLock<Option<Emergency>>,
    log_level: RwLock<Option<String>>,
}

impl RuntimeSettings {
    /// Returns emergency mode if it is on and not expired.
    pub fn emergency(&self, now: DateTime<Utc>) -> Option<Emergency> {
        let current = self.emergency.read().ok()?.clone()?;
        current.is_active(now).then_some(current)
    }

    /// Returns the log level set at run time, if any.
    pub fn log_level(&self) -> Option<String> {
        self.log_level.read().ok()?.clone()
    }

    /// Re-reads both settings from the database and applies a changed log
    /// level. A database error keeps the last known values.
    pub async fn load(&self, store: &SharedStore, _now: DateTime<Utc>) {
        match store.get_setting(EMERGENCY_KEY).await {
            Ok(value) => {
                let emergency = value.and_then(|text| serde_json::from_str::<Option<Emergency>>(&text).ok().flatten());
                if let Ok(mut slot) = self.emergency.write() {
                    *slot = emergency;
                }
            }
            Err(error) => tracing::debug!(error = %error, "could not read emergency mode"),
        }
        match store.get_setting(LOG_LEVEL_KEY).await {
            Ok(Some(text)) => {
                if let Ok(level) = serde_json::from_str::<String>(&text) {
                    self.apply_log_level(level);
                }
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(error = %error, "could not read the log level"),
        }
    }

    fn apply_log_level(&self, level: String) {
        let Ok(mut slot) = self.log_level.write() else {
            return;
        };
        if slot.as_deref() != Some(level.as_str()) {
            crate::telemetry::set_level(&level);
            *slot = Some(level);
        }
    }

    /// Turns emergency mode on (`Some`) or off (`None`) for every instance.
    ///
    /// # Errors
    /// When the database cannot store it.
    pub async fn set_emergency(
        &self,
        store: &SharedStore,
        emergency: Option<Emergency>,
        now: DateTime<Utc>,
    ) -> StorageResult<()> {
        let text = serde_json::to_string(&emergency).unwrap_or_else(|_| "null".into());
        store.put_setting(EMERGENCY_KEY, &text, now).await?;
        if let Ok(mut slot) = self.emergency.write() {
            *slot = emergency;
        }
        Ok(())
    }

    /// Sets the log level of every instance.
    ///
    /// # Errors
    /// When the database cannot store it.
    pub async fn set_log_level(&self, store: &SharedStore, level: &str, now: DateTime<Utc>) -> StorageResult<()> {
        let text = serde_json::to_string(level).unwrap_or_default();
        store.put_setting(LOG_LEVEL_KEY, &text, now).await?;
        self.apply_log_level(level.to_string());
        Ok(())
    }
}

/// Re-reads the settings every [`SYNC_INTERVAL`] until the process ends.
pub async fn sync_periodically(state: crate::app::AppState) {
    let mut ticker = tokio::time::interval(SYNC_INTERVAL);
    loop {
        ticker.tick().await;
        state.runtime.load(&state.store, state.clock.now()).await;
    }
}

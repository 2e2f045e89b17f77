//! The tasks a server runs beside its requests.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::AppState;

/// How often coalesced API-key `last_used_at` values are written.
const KEY_USAGE_FLUSH: Duration = Duration::from_secs(30);

impl AppState {
    /// Starts the background tasks: API-key usage writes, the audit
    /// retention purge, the settings sync and, with `METRICS_ADDRESS`, the
    /// metrics listener. Abort the handles at shutdown.
    ///
    /// # Errors
    /// When the metrics address cannot be bound.
    pub async fn start_background(&self) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let mut tasks = vec![
            tokio::spawn(flush_key_usage(self.clone())),
            tokio::spawn(crate::audit::pipeline::purge_periodically(
                self.store.clone(),
                self.audit.clone(),
                self.clock.clone(),
                self.config.audit.retention_days,
            )),
            tokio::spawn(crate::incident::sync_periodically(self.clone())),
        ];
        if let Some(address) = self.config.audit.metrics_address {
            tasks.push(crate::metrics::serve(address, self.metrics.clone(), self.audit.clone()).await?);
        }
        Ok(tasks)
    }
}

async fn flush_key_usage(state: AppState) {
    let mut interval = tokio::time::interval(KEY_USAGE_FLUSH);
    loop {
        interval.tick().await;
        if let Err(error) = state.auth.flush_key_usage().await {
            tracing::warn!(error = %error, "could not write API key usage; will retry");
        }
    }
}

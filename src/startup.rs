//! Building and running the server: used by `main` and by the tests, so both
//! run exactly the same code.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::app::AppState;
use crate::clock::Clock;
use crate::config::Config;

/// hyper's read buffer, which bounds a request head. The middleware rejects
/// heads over `api::MAX_HEAD_BYTES` with a problem response; heads too large
/// even for this buffer get hyper's own bodiless 431.
const READ_BUFFER_BYTES: usize = 128 * 1024;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    audit_pipeline: crate::audit::AuditPipeline,
}

impl Application {
    /// Opens storage, bootstraps the administrator and binds the listener.
    ///
    /// # Errors
    /// Fails when storage, secrets, the audit log or the address cannot be opened.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, None).await
    }

    /// As [`Application::build`], with an injected clock (tests).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(config: Config, clock: Option<Arc<dyn Clock>>) -> anyhow::Result<Application> {
        let bind_address = config.bind_address;
        // Opening the state also creates the bootstrap administrator.
        let (state, audit_pipeline) = AppState::build(config, clock).await?;

        let listener = TcpListener::bind(bind_address)
            .await
            .with_context(|| format!("could not listen on BIND_ADDRESS {bind_address}"))?;
        Ok(Application {
            listener,
            state,
            audit_pipeline,
        })
    }

    /// The address actually bound (the port is chosen by the OS for `:0`).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until Ctrl-C or SIGTERM.
    ///
    /// # Errors
    /// As [`Application::run_until`].
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests
    /// in flight finish (up to 30 s) and flushes the audit log.
    ///
    /// # Errors
    /// Only for failures outside individual connections.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            audit_pipeline,
        } = self;
        let address = listener.local_addr()?;
        tracing::info!(address = %address, "listening");

        let background = state.start_background().await?;
        let router = crate::api::router(state.clone());
        let graceful = GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(READ_BUFFER_BYTES);
        tokio::pin!(shutdown);

        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let router = router.clone();
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request.map(axum::body::Body::new))
            });
            let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(error = %error, "connection closed with an error");
                }
            });
        }

        tracing::info!("shutting down");
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after 30 s were dropped");
        }
        for task in &background {
            task.abort();
        }
        if let Err(error) = state.auth.flush_key_usage().await {
            tracing::warn!(error = %error, "could not write API key usage at shutdown");
        }
        // The writer drains what was queued before this, syncs the file and
        // exits; the database copy is then brought up to date.
        drop(router);
        drop(state);
        audit_pipeline.finish().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

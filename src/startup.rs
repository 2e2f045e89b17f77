//! Building and running the server: used by `main` and by the tests, so both
//! run exactly the same code.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::app::AppState;
use crate::clock::Clock;
use crate::config::Config;
use crate::tls::{ClientCertSubject, ServerTls};

/// hyper's read buffer, which bounds a request head. The middleware rejects
/// heads over `api::MAX_HEAD_BYTES` with a problem response; heads too large
/// even for this buffer get hyper's own bodiless 431.
const READ_BUFFER_BYTES: usize = 128 * 1024;
/// How long a client has to finish the TLS handshake after connecting.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Sent on every response over TLS: browsers then use HTTPS only for a year.
const STRICT_TRANSPORT_SECURITY: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    audit_pipeline: crate::audit::AuditPipeline,
    /// Set when `SSL_CERT_FILE` and `SSL_KEY_FILE` are: the listener then
    /// speaks HTTPS only.
    tls: Option<Arc<ServerTls>>,
}

impl Application {
    /// Opens storage, bootstraps the administrator and binds the listener.
    ///
    /// # Errors
    /// Fails when the certificate files, storage, secrets, the audit log or
    /// the address cannot be opened.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, None).await
    }

    /// As [`Application::build`], with an injected clock (tests).
    ///
    /// # Errors
    /// As [`Application::build`].
    pub async fn build_with_clock(config: Config, clock: Option<Arc<dyn Clock>>) -> anyhow::Result<Application> {
        let bind_address = config.bind_address;
        // Certificates first: a broken file should stop start-up before
        // anything is written to storage.
        let tls = match &config.transport.tls {
            Some(files) => Some(Arc::new(ServerTls::load(files)?)),
            None => None,
        };

        // Opening the state also creates the bootstrap administrator.
        let (state, audit_pipeline) = AppState::build(config, clock).await?;

        let listener = TcpListener::bind(bind_address)
            .await
            .with_context(|| format!("could not listen on BIND_ADDRESS {bind_address}"))?;
        Ok(Application {
            listener,
            state,
            audit_pipeline,
            tls,
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

    /// Returns the TLS configuration, so that tests can reload it as SIGHUP
    /// would. Returns `None` for plain HTTP.
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
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
            tls,
        } = self;
        let address = listener.local_addr()?;
        let reloader = match &tls {
            Some(tls) => Some(
                tls.clone()
                    .spawn_reloader()
                    .context("could not install the SIGHUP handler for certificate reloads")?,
            ),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %address, scheme, "listening");

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
            let connection = Connection {
                router: router.clone(),
                builder: builder.clone(),
                peer,
                // Taken here, before a shutdown can begin, so that shutdown
                // also waits for connections still in their handshake.
                watcher: graceful.watcher(),
            };
            match &tls {
                None => {
                    tokio::spawn(connection.serve(stream, false, None));
                }
                Some(tls) => {
                    tokio::spawn(connection.serve_tls(stream, tls.acceptor()));
                }
            }
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
        if let Some(reloader) = reloader {
            reloader.abort();
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

/// One accepted connection, before its handshake (under TLS) and service.
struct Connection {
    router: axum::Router,
    builder: http1::Builder,
    peer: SocketAddr,
    watcher: Watcher,
}

impl Connection {
    /// Completes the TLS handshake within [`TLS_HANDSHAKE_TIMEOUT`], then
    /// serves HTTP over it. This runs in the connection's own task, so a slow
    /// handshake never holds up the accept loop.
    async fn serve_tls(self, stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        let peer = self.peer;
        let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(peer = %peer, error = %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %peer, "TLS handshake timed out");
                return;
            }
        };

        // rustls only completes a handshake whose client certificate, if
        // any, verified against SSL_CLIENT_CA_FILE.
        let subject = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| ClientCertSubject::from_der(leaf.as_ref()));
        self.serve(stream, true, subject).await;
    }

    /// Serves HTTP/1.1 on `io`, which is a TLS stream when `over_tls` is set.
    async fn serve<I>(self, io: I, over_tls: bool, client_cert_subject: Option<ClientCertSubject>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = ConnectionService {
            router: self.router,
            peer: self.peer,
            over_tls,
            client_cert_subject,
        };
        let connection = self
            .watcher
            .watch(self.builder.serve_connection(TokioIo::new(io), service));
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "connection closed with an error");
        }
    }
}

/// The per-connection hyper service: adds the connection's peer address and
/// client certificate to each request, and HSTS to each response under TLS.
#[derive(Clone)]
struct ConnectionService {
    router: axum::Router,
    peer: SocketAddr,
    over_tls: bool,
    client_cert_subject: Option<ClientCertSubject>,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        if let Some(subject) = &self.client_cert_subject {
            request.extensions_mut().insert(subject.clone());
        }
        let response = self.router.clone().oneshot(request.map(axum::body::Body::new));
        let over_tls = self.over_tls;
        Box::pin(async move {
            let mut response = response.await?;
            if over_tls {
                response
                    .headers_mut()
                    .insert(header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY);
            }
            Ok(response)
        })
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

//! HTTPS for the listener. This module loads the certificate chain, private
//! key and client CA named by `SSL_CERT_FILE`, `SSL_KEY_FILE` and
//! `SSL_CLIENT_CA_FILE` into a rustls server configuration (ring provider,
//! TLS 1.2 and 1.3 only). It reloads them when the files change or on SIGHUP,
//! and names the verified client certificate of each connection.
//!
//! The accept loop in `startup` owns the sockets and the handshake; this
//! module never touches HTTP.

mod error;
pub(crate) mod load;
mod server;
mod subject;

pub use error::TlsError;
pub use load::ring_provider;
pub use server::{ServerTls, RELOAD_POLL_INTERVAL};
pub use subject::ClientCertSubject;

//! Hyper Registry: a self-hosted registry of an organization's components,
//! secure in production by default.
//!
//! The binary is a thin shell over this library: [`startup::Application`]
//! runs the server and [`cli`] holds the operator commands. See the README
//! for a map from concepts to modules.

// Shipped code handles every failure; unit tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod events;
pub mod incident;
pub mod metrics;
pub mod ratelimit;
pub mod rbac;
pub mod registry;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tls;

/// Entry points for the fuzz targets in `fuzz/` to parsers that are not
/// public otherwise. Each one forwards to the code that the server runs.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::{Path, PathBuf};

    use crate::config::{ClientAuth, TlsFiles};
    use crate::registry::EntryInput;
    use crate::tls::TlsError;

    pub use crate::api::cursor::{decode as decode_cursor, encode as encode_cursor};

    /// Parses one NDJSON import line as the import endpoint and the CLI do.
    ///
    /// # Errors
    /// The report code and detail of a rejected line.
    pub fn parse_import_line(line: &[u8]) -> Result<EntryInput, (&'static str, String)> {
        crate::registry::parse_import_line(line)
    }

    /// Loads PEM bytes as the contents of `SSL_CERT_FILE`, `SSL_KEY_FILE`
    /// and, when given, `SSL_CLIENT_CA_FILE` with client certificates
    /// required. Returns the subject of the server certificate.
    ///
    /// # Errors
    /// The [`TlsError`] that the server would report for these files.
    pub fn load_tls_pem(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<String, TlsError> {
        let files = TlsFiles {
            cert_file: PathBuf::from("cert.pem"),
            key_file: PathBuf::from("key.pem"),
            client_ca: client_ca.map(|_| (PathBuf::from("client-ca.pem"), ClientAuth::Required)),
        };
        let read = |variable: &'static str, _path: &Path| -> Result<Vec<u8>, TlsError> {
            let bytes = match variable {
                "SSL_CERT_FILE" => cert,
                "SSL_KEY_FILE" => key,
                _ => client_ca.unwrap_or_default(),
            };
            Ok(bytes.to_vec())
        };
        crate::tls::load::load_with(&files, &read).map(|loaded| loaded.subject)
    }
}

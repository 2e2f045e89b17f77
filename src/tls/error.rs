//! Errors from loading the certificate files. Each names the variable to fix
//! and never contains key material.

use std::path::PathBuf;

/// A certificate, key or client CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{variable}: cannot read {}: {io_error}. Fix: point {variable} at a readable PEM file", path.display())]
    Unreadable {
        variable: &'static str,
        path: PathBuf,
        io_error: std::io::Error,
    },

    #[error("{variable}: {} is not valid PEM (a broken BEGIN/END line or base64 body). Fix: replace it with the file as issued", path.display())]
    MalformedPem { variable: &'static str, path: PathBuf },

    #[error("{variable}: no certificate (BEGIN CERTIFICATE) found in {}. Fix: {fix}", path.display())]
    NoCertificate {
        variable: &'static str,
        path: PathBuf,
        fix: &'static str,
    },

    #[error("{variable}: the certificate in {} is invalid: {reason}. Fix: {fix}", path.display())]
    InvalidCertificate {
        variable: &'static str,
        path: PathBuf,
        reason: String,
        fix: &'static str,
    },

    #[error("SSL_KEY_FILE: no private key found in {}. Fix: point SSL_KEY_FILE at the key (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY); with certbot this is privkey.pem", path.display())]
    NoPrivateKey { path: PathBuf },

    #[error("SSL_KEY_FILE: the private key in {} is encrypted. Fix: store it unencrypted with mode 0600, e.g. `openssl pkey -in ENCRYPTED.pem -out KEY.pem`", path.display())]
    EncryptedKey { path: PathBuf },

    #[error("SSL_KEY_FILE: the private key in {} is corrupt or of an unsupported type (RSA, ECDSA P-256/P-384 and Ed25519 are supported). Fix: use the key issued with the certificate", path.display())]
    InvalidKey { path: PathBuf },

    #[error("SSL_KEY_FILE: the key in {} does not match the certificate in SSL_CERT_FILE {}. Fix: use the key created with that certificate (with certbot, privkey.pem from the same live directory), and put the server's own certificate first in SSL_CERT_FILE", key_path.display(), cert_path.display())]
    KeyMismatch { cert_path: PathBuf, key_path: PathBuf },

    #[error("SSL_CLIENT_CA_FILE: {reason}. Fix: point SSL_CLIENT_CA_FILE at the PEM certificates of the CA that signs client certificates")]
    InvalidClientCa { reason: String },

    #[error("TLS setup failed: {reason}")]
    Setup { reason: String },
}

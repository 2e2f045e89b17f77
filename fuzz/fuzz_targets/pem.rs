//! TLS file loading: the PEM contents of `SSL_CERT_FILE`, `SSL_KEY_FILE`
//! and, optionally, `SSL_CLIENT_CA_FILE`, as the input split at NUL bytes.
//!
//! Loading never panics. An error never quotes the key file: no base64
//! line of the key appears in its message. An encrypted key is always
//! reported as encrypted. A configuration is only built from input that
//! has a certificate and a private key section.

#![no_main]

use hyper_registry::fuzzing::load_tls_pem;
use hyper_registry::tls::TlsError;
use libfuzzer_sys::fuzz_target;

/// Minimum length of a key line that is checked against messages. PEM
/// bodies have lines of 64 characters, and shorter text could occur in a
/// message by chance.
const MIN_SECRET_LINE: usize = 40;

/// Returns whether `line` looks like a line of a PEM body: base64 with at
/// least one digit, `+` or `/`, which English words in a message lack.
fn is_pem_body_line(line: &str) -> bool {
    line.len() >= MIN_SECRET_LINE
        && line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        && line.bytes().any(|b| b.is_ascii_digit() || matches!(b, b'+' | b'/'))
}

fn is_encrypted(key: &str) -> bool {
    key.contains("BEGIN ENCRYPTED PRIVATE KEY") || key.contains("Proc-Type: 4,ENCRYPTED")
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&byte| byte == 0);
    let cert = parts.next().unwrap_or_default();
    let key = parts.next().unwrap_or_default();
    let client_ca = parts.next();

    let key_text = String::from_utf8_lossy(key);
    match load_tls_pem(cert, key, client_ca) {
        Ok(_subject) => {
            let cert_text = String::from_utf8_lossy(cert);
            assert!(
                cert_text.contains("-----BEGIN CERTIFICATE-----"),
                "loaded without a certificate"
            );
            assert!(key_text.contains("PRIVATE KEY-----"), "loaded without a private key");
            assert!(!is_encrypted(&key_text), "loaded an encrypted key");
        }
        Err(error) => {
            let message = error.to_string();
            for line in key_text.lines() {
                let line = line.trim();
                assert!(
                    !is_pem_body_line(line) || !message.contains(line),
                    "error message quotes the key file: {message}"
                );
            }
            if is_encrypted(&key_text) {
                let misreported = matches!(
                    error,
                    TlsError::NoPrivateKey { .. } | TlsError::InvalidKey { .. } | TlsError::KeyMismatch { .. }
                ) || matches!(
                    error,
                    TlsError::MalformedPem {
                        variable: "SSL_KEY_FILE",
                        ..
                    }
                );
                assert!(!misreported, "encrypted key reported as: {message}");
            }
        }
    }
});

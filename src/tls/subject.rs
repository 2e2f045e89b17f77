//! The identity that a client certificate carries into each request.

use std::fmt;

use x509_cert::der::Decode;

/// Maximum length of a recorded subject, in characters. A longer subject is
/// cut so that one certificate cannot bloat every audit line of its connection.
const MAX_SUBJECT_CHARS: usize = 512;

/// The subject of a client certificate that rustls has verified against
/// `SSL_CLIENT_CA_FILE`, as an RFC 4514 string such as
/// `CN=build-agent,O=Example`. The accept loop places it in the extensions
/// of every request on that connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertSubject(String);

impl ClientCertSubject {
    /// Reads the subject of a DER certificate. Call it only on a certificate
    /// that the handshake verified. Returns `None` when the DER does not parse.
    pub fn from_der(certificate: &[u8]) -> Option<ClientCertSubject> {
        let certificate = x509_cert::Certificate::from_der(certificate).ok()?;
        let subject = certificate.tbs_certificate.subject.to_string();
        Some(ClientCertSubject(subject.chars().take(MAX_SUBJECT_CHARS).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientCertSubject {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

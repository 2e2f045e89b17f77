//! Reading the PEM files into a rustls server configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use x509_cert::der::Decode;

use super::TlsError;
use crate::config::{ClientAuth, TlsFiles};

const CERT_FILE_FIX: &str =
    "point SSL_CERT_FILE at the PEM certificate chain, server certificate first (with certbot, fullchain.pem)";
const CLIENT_CA_FIX: &str = "point SSL_CLIENT_CA_FILE at the PEM certificates of the CA that signs client certificates";

/// A server configuration built from the files, with the facts about the
/// server certificate that the log reports.
pub(crate) struct LoadedTls {
    pub config: Arc<ServerConfig>,
    pub subject: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Reads the file that `variable` names. [`load_with`] takes the reader as
/// a parameter so that the parsing can also run on bytes held in memory.
pub(crate) type ReadFile<'a> = &'a dyn Fn(&'static str, &Path) -> Result<Vec<u8>, TlsError>;

/// Loads the chain, key and client CA named in `files`.
///
/// # Errors
/// A [`TlsError`] naming the variable whose file cannot be used.
pub(super) fn load(files: &TlsFiles) -> Result<LoadedTls, TlsError> {
    load_with(files, &read_file)
}

/// As [`load`], with every file read through `read`.
pub(crate) fn load_with(files: &TlsFiles, read: ReadFile<'_>) -> Result<LoadedTls, TlsError> {
    let provider = Arc::new(ring_provider());

    let chain = read_certificates(read, "SSL_CERT_FILE", &files.cert_file, CERT_FILE_FIX)?;
    let leaf = parse_certificate(&files.cert_file, &chain[0])?;
    let validity = &leaf.tbs_certificate.validity;

    let key = read_private_key(read, &files.key_file)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| TlsError::InvalidKey {
            path: files.key_file.clone(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    check_key_matches(&certified, files)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Setup {
            reason: error.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some((ca_file, mode)) => builder.with_client_cert_verifier(client_verifier(read, ca_file, *mode, provider)?),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    // The server speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(LoadedTls {
        config: Arc::new(config),
        subject: leaf.tbs_certificate.subject.to_string(),
        not_before: SystemTime::UNIX_EPOCH + validity.not_before.to_unix_duration(),
        not_after: SystemTime::UNIX_EPOCH + validity.not_after.to_unix_duration(),
    })
}

/// Returns rustls' provider backed by *ring*, with its default cipher suites
/// and key exchange groups.
// rustls 0.23.48 deprecates this provider because it lacks post-quantum key
// exchange; the alternative, aws-lc-rs, needs cmake and a C toolchain to build.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read_file(variable: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|io_error| TlsError::Unreadable {
        variable,
        path: path.to_path_buf(),
        io_error,
    })
}

/// Reads every certificate of a PEM file, in file order. Other sections,
/// such as a key in the same file, are skipped.
fn read_certificates(
    read: ReadFile<'_>,
    variable: &'static str,
    path: &Path,
    fix: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(variable, path)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::MalformedPem {
            variable,
            path: path.to_path_buf(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            variable,
            path: path.to_path_buf(),
            fix,
        });
    }
    Ok(certificates)
}

fn parse_certificate(path: &Path, der: &CertificateDer<'_>) -> Result<x509_cert::Certificate, TlsError> {
    x509_cert::Certificate::from_der(der.as_ref()).map_err(|error| TlsError::InvalidCertificate {
        variable: "SSL_CERT_FILE",
        path: path.to_path_buf(),
        reason: error.to_string(),
        fix: CERT_FILE_FIX,
    })
}

/// Reads the first private key of the file: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). Other sections, such as
/// the `EC PARAMETERS` block that `openssl ecparam -genkey` writes first,
/// are skipped. Errors never include the file's content.
fn read_private_key(read: ReadFile<'_>, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("SSL_KEY_FILE", path)?;

    // PKCS#8 encryption and the legacy `Proc-Type: 4,ENCRYPTED` header of
    // PKCS#1 and SEC1 keys; the PEM parser would report neither clearly.
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("BEGIN ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }

    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        },
        _ => TlsError::MalformedPem {
            variable: "SSL_KEY_FILE",
            path: path.to_path_buf(),
        },
    })
}

fn check_key_matches(certified: &CertifiedKey, files: &TlsFiles) -> Result<(), TlsError> {
    match certified.keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::KeyMismatch {
            cert_path: files.cert_file.clone(),
            key_path: files.key_file.clone(),
        }),
        // The provider cannot derive a public key from this key type, so the
        // pair cannot be compared here; a mismatch then fails every handshake.
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            tracing::warn!(
                key_file = %files.key_file.display(),
                "could not check that SSL_KEY_FILE matches SSL_CERT_FILE"
            );
            Ok(())
        }
        Err(error) => Err(TlsError::InvalidCertificate {
            variable: "SSL_CERT_FILE",
            path: files.cert_file.clone(),
            reason: error.to_string(),
            fix: CERT_FILE_FIX,
        }),
    }
}

/// Builds the verifier of client certificates. With [`ClientAuth::Optional`]
/// a client may present no certificate, but one that it presents must verify.
fn client_verifier(
    read: ReadFile<'_>,
    ca_file: &Path,
    mode: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(read, "SSL_CLIENT_CA_FILE", ca_file, CLIENT_CA_FIX)? {
        roots.add(certificate).map_err(|error| TlsError::InvalidClientCa {
            reason: format!(
                "a certificate in {} is not a usable CA certificate: {error}",
                ca_file.display()
            ),
        })?;
    }

    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|error| TlsError::InvalidClientCa {
        reason: format!("{} cannot verify client certificates: {error}", ca_file.display()),
    })
}

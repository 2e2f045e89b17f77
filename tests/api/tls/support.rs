//! Certificates, servers and a small HTTPS client for the TLS tests.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use hyper_registry::config::Config;
use hyper_registry::startup::Application;
use hyper_registry::tls::{ring_provider, ServerTls};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::helpers::{ADMIN_PASSWORD, JWT_SECRET};

pub const BOTH_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A committed fixture under tests/data/tls/.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls").join(name)
}

pub fn read_certificates(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("certificate file readable")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM")
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A certificate and its PKCS#8 key, as PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Issued {
    pub fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM");
        (vec![self.der.clone()], key)
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("certificate written");
        std::fs::write(&key, &self.key_pem).expect("key written");
        (cert, key)
    }
}

/// An ECDSA test CA made with rcgen for each test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(name, "Example");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            der: cert.der().clone(),
        }
    }

    /// Returns the CA certificate as the only trust anchor of a client.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    /// Writes the CA certificate as `ca.pem` into `dir`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem).expect("CA written");
        path
    }

    /// Issues a server certificate for localhost valid from one day ago for a year.
    pub fn server(&self, common_name: &str) -> Issued {
        let now = OffsetDateTime::now_utc();
        self.server_valid(
            common_name,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    pub fn server_valid(&self, common_name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server names");
        params.distinguished_name = name_of(common_name, "Example");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        self.issue(params)
    }

    pub fn client(&self, common_name: &str, organization: &str) -> Issued {
        let mut params = CertificateParams::default();
        params.distinguished_name = name_of(common_name, organization);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    fn issue(&self, mut params: CertificateParams) -> Issued {
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// `O=organization, CN=common_name`, which RFC 4514 writes CN first.
fn name_of(common_name: &str, organization: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    name.push(DnType::CommonName, common_name);
    name
}

/// Returns the configuration variables of a test server, plus `overrides`.
pub fn server_vars(data_dir: &Path, bind_address: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("BIND_ADDRESS".into(), bind_address.into()),
        ("DATA_DIR".into(), path_str(data_dir).into()),
        ("ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ("JWT_SECRET_KEY".into(), JWT_SECRET.into()),
        (
            "LOG_LEVEL".into(),
            std::env::var("TEST_LOG_LEVEL").unwrap_or_else(|_| "error".into()),
        ),
    ];
    for (name, value) in overrides {
        vars.retain(|(existing, _)| existing != name);
        vars.push((name.to_string(), value.to_string()));
    }
    vars
}

/// Builds the application as `main` does; the error is the start-up message.
pub async fn build(data_dir: &Path, overrides: &[(&str, &str)]) -> Result<Application, String> {
    let config = Config::from_vars(server_vars(data_dir, "127.0.0.1:0", overrides)).map_err(|e| e.to_string())?;
    Application::build_with_clock(config, None)
        .await
        .map_err(|error| format!("{error:#}"))
}

/// An in-process server on 127.0.0.1:0.
pub struct TlsTestServer {
    pub address: SocketAddr,
    pub tls: Arc<ServerTls>,
    pub data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TlsTestServer {
    pub async fn spawn(overrides: &[(&str, &str)]) -> TlsTestServer {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let application = build(data_dir.path(), overrides).await.expect("application builds");
        let address = application.local_addr().expect("bound address");
        let tls = application.tls().expect("TLS configured");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = application
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        TlsTestServer {
            address,
            tls,
            data_dir,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server gracefully, which also flushes the audit log, and
    /// returns whether it stopped within `limit`.
    pub async fn stop_within(&mut self, limit: Duration) -> bool {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => tokio::time::timeout(limit, server).await.is_ok(),
            None => true,
        }
    }

    /// Returns the audit events in the file, after a graceful stop.
    pub async fn stop_and_read_audit(mut self) -> Vec<serde_json::Value> {
        assert!(self.stop_within(Duration::from_secs(30)).await, "server stopped");
        let text = std::fs::read_to_string(self.data_dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
            .collect()
    }
}

/// Builds a client that trusts `roots` and presents `identity` when given.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("trust anchor");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(store);
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Builds a client that trusts `roots` but checks validity dates at `at`,
/// to talk to a server whose certificate has expired.
pub fn client_config_at(roots: &[CertificateDer<'static>], at: OffsetDateTime) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("trust anchor");
    }
    let provider = Arc::new(ring_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .expect("verifier");
    let seconds = u64::try_from(at.unix_timestamp()).expect("time after 1970");
    let verifier = VerifyAt {
        inner,
        at: UnixTime::since_unix_epoch(Duration::from_secs(seconds)),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(BOTH_VERSIONS)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// Verifies server certificates fully, but as of a fixed time.
#[derive(Debug)]
struct VerifyAt {
    inner: Arc<WebPkiServerVerifier>,
    at: UnixTime,
}

impl ServerCertVerifier for VerifyAt {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, self.at)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Opens a TLS connection to `address` for the name `localhost`.
pub async fn connect(address: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// Returns the certificates that the server sent on `stream`, leaf first.
pub fn served_chain(stream: &TlsStream<TcpStream>) -> Vec<CertificateDer<'static>> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .map(|chain| chain.iter().map(|cert| cert.clone().into_owned()).collect())
        .unwrap_or_default()
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `GET path` on an open connection, keeping it open, and reads the
/// response. The body is read and dropped; it must have a Content-Length,
/// as every response of the routes used here has.
pub async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> io::Result<HttpResponse> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no response within 10 s"))??;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };

    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Ok(HttpResponse { status, headers })
}

/// Connects, sends one `GET` and returns the response or the first error
/// (a rejected handshake shows up here, for TLS 1.3 on the first read).
pub async fn fetch(address: SocketAddr, config: Arc<ClientConfig>, path: &str) -> io::Result<HttpResponse> {
    let mut stream = connect(address, config).await?;
    get(&mut stream, path).await
}

/// A `hyper-registry serve` process; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub address: SocketAddr,
    _data_dir: TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts the binary with JSON logs at `info` on standard error.
    pub fn start(overrides: &[(&str, &str)]) -> ServerProcess {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut logged: Vec<(&str, &str)> = vec![("LOG_LEVEL", "info"), ("LOG_FORMAT", "json")];
        logged.extend_from_slice(overrides);
        let vars = server_vars(data_dir.path(), &address.to_string(), &logged);
        let child = Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
            .arg("serve")
            .env_clear()
            .envs(vars)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server process starts");
        ServerProcess {
            child,
            address,
            _data_dir: data_dir,
        }
    }

    /// Waits up to 60 s until `/health` returns 200 over TLS. Returns the
    /// certificate served.
    pub async fn wait_until_serving(&mut self, config: Arc<ClientConfig>) -> CertificateDer<'static> {
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early with {status}");
            }
            if let Ok(mut stream) = connect(self.address, config.clone()).await {
                if get(&mut stream, "/health")
                    .await
                    .is_ok_and(|response| response.status == 200)
                {
                    return served_chain(&stream).remove(0);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server did not serve HTTPS within 60 s");
    }

    /// Stops the process with SIGTERM and returns what it wrote to standard error.
    pub fn stop_and_read_stderr(mut self) -> String {
        let terminated = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if !terminated {
            let _ = self.child.kill();
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }
}

//! HTTPS: real handshakes against the server with a rustls client, for each
//! key format, protocol version, client-certificate mode and reload path.
//! The fixtures in tests/data/tls/ cover the RSA and SEC1 key formats, which
//! rcgen cannot make with ring; rcgen makes the rest per test.

pub(crate) mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ProtocolVersion;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{
    build, client_config, client_config_at, connect, fetch, fixture, get, path_str, read_certificates, served_chain,
    ServerProcess, TestCa, TlsTestServer, BOTH_VERSIONS,
};

const HSTS: &str = "max-age=31536000; includeSubDomains";

#[tokio::test]
async fn key_formats_served() {
    // (case, certificate file, key file, trusted root, certificates served)
    let cases = [
        (
            "RSA-4096 PKCS#8, self-signed",
            "rsa4096-pkcs8.pem",
            "rsa4096-pkcs8.key",
            "rsa4096-pkcs8.pem",
            1,
        ),
        ("RSA PKCS#1", "rsa-pkcs1.pem", "rsa-pkcs1.key", "ca.pem", 1),
        ("SEC1 EC after EC PARAMETERS", "ec-sec1.pem", "ec-sec1.key", "ca.pem", 1),
        (
            "leaf and intermediate, certbot names",
            "fullchain.pem",
            "privkey.pem",
            "ca.pem",
            2,
        ),
    ];
    for (case, cert, key, root, chain_length) in cases {
        let server = TlsTestServer::spawn(&[
            ("SSL_CERT_FILE", path_str(&fixture(cert))),
            ("SSL_KEY_FILE", path_str(&fixture(key))),
        ])
        .await;
        let config = client_config(&read_certificates(&fixture(root)), None, BOTH_VERSIONS);

        let mut stream = connect(server.address, config)
            .await
            .unwrap_or_else(|error| panic!("{case}: handshake failed: {error}"));
        let response = get(&mut stream, "/health").await.expect("health response");

        assert_eq!(response.status, 200, "{case}");
        assert_eq!(served_chain(&stream).len(), chain_length, "{case}: certificates served");
    }
}

#[tokio::test]
async fn tls12_and_tls13_accepted() {
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("ec-sec1.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("ec-sec1.key"))),
    ])
    .await;
    let roots = read_certificates(&fixture("ca.pem"));

    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(&roots, None, &[version]);
        let mut stream = connect(server.address, config).await.expect("handshake");
        let response = get(&mut stream, "/health").await.expect("health response");

        assert_eq!(stream.get_ref().1.protocol_version(), Some(expected));
        assert_eq!(response.status, 200, "{expected:?}");
    }
}

/// Appends a TLS extension: type, length, data.
fn push_extension(extensions: &mut Vec<u8>, extension_type: u16, data: &[u8]) {
    extensions.extend_from_slice(&extension_type.to_be_bytes());
    extensions.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
    extensions.extend_from_slice(data);
}

/// A ClientHello that offers TLS 1.1 at most (legacy version 3.2 and no
/// supported_versions extension). Suites, groups and signature schemes are
/// ones the server accepts, so that only the version can fail.
fn tls11_client_hello() -> Vec<u8> {
    let mut extensions = Vec::new();
    // server_name: localhost
    push_extension(&mut extensions, 0x0000, b"\x00\x0c\x00\x00\x09localhost");
    // supported_groups: x25519, secp256r1
    push_extension(&mut extensions, 0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    push_extension(&mut extensions, 0x000b, &[0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    push_extension(
        &mut extensions,
        0x000d,
        &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );

    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // client random
    body.push(0); // no session id
                  // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-SHA
    body.extend_from_slice(&[0x00, 0x06, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression only
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);

    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls11_client_hello_rejected() {
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("rsa-pkcs1.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("rsa-pkcs1.key"))),
    ])
    .await;
    let mut tcp = TcpStream::connect(server.address).await.unwrap();

    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut reply = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut reply))
        .await
        .expect("reply within 10 s")
        .expect("an alert record");

    assert_eq!(reply[0], 0x15, "alert record, not a ServerHello: {reply:?}");
    assert_eq!(reply[5], 2, "fatal alert: {reply:?}");
    assert_eq!(reply[6], 70, "protocol_version alert: {reply:?}");
}

/// Writes a PEM private key whose body is valid base64 but not a key.
/// Returns the body, which must never appear in a message.
fn write_corrupt_key(path: &Path) -> String {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDcorruptcorruptcorrupt0123456789";
    std::fs::write(
        path,
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    body.to_string()
}

/// The base64 lines of a PEM file, which a message must not contain.
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 16)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn startup_errors_name_variable() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt_key = dir.path().join("corrupt.key");
    let corrupt_body = write_corrupt_key(&corrupt_key);
    let missing = dir.path().join("missing.pem");
    let encrypted_key = dir.path().join("encrypted.key");
    std::fs::write(
        &encrypted_key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let ec_cert = fixture("ec-sec1.pem");
    let ec_key = fixture("ec-sec1.key");
    let rsa_key = fixture("rsa-pkcs1.key");

    // (case, cert file, key file, client CA file, variable, words in the message)
    let cases = [
        (
            "key of another certificate",
            &ec_cert,
            &rsa_key,
            None,
            "SSL_KEY_FILE",
            "does not match",
        ),
        ("corrupt key", &ec_cert, &corrupt_key, None, "SSL_KEY_FILE", "corrupt"),
        (
            "missing certificate file",
            &missing,
            &ec_key,
            None,
            "SSL_CERT_FILE",
            "cannot read",
        ),
        (
            "missing key file",
            &ec_cert,
            &missing,
            None,
            "SSL_KEY_FILE",
            "cannot read",
        ),
        (
            "certificate file holds a key",
            &ec_key,
            &ec_key,
            None,
            "SSL_CERT_FILE",
            "no certificate",
        ),
        (
            "key file holds a certificate",
            &ec_cert,
            &ec_cert,
            None,
            "SSL_KEY_FILE",
            "no private key",
        ),
        (
            "encrypted key",
            &ec_cert,
            &encrypted_key,
            None,
            "SSL_KEY_FILE",
            "encrypted",
        ),
        (
            "missing client CA file",
            &ec_cert,
            &ec_key,
            Some(&missing),
            "SSL_CLIENT_CA_FILE",
            "cannot read",
        ),
        (
            "client CA file holds a key",
            &ec_cert,
            &ec_key,
            Some(&ec_key),
            "SSL_CLIENT_CA_FILE",
            "no certificate",
        ),
    ];
    for (case, cert, key, client_ca, variable, words) in cases {
        let data_dir = tempfile::tempdir().unwrap();
        let mut vars = vec![("SSL_CERT_FILE", path_str(cert)), ("SSL_KEY_FILE", path_str(key))];
        if let Some(ca) = client_ca {
            vars.push(("SSL_CLIENT_CA_FILE", path_str(ca)));
        }

        let message = match build(data_dir.path(), &vars).await {
            Ok(_) => panic!("{case}: start-up succeeded"),
            Err(message) => message,
        };

        assert!(message.contains(variable), "{case}: names {variable}: {message}");
        assert!(message.contains(words), "{case}: says `{words}`: {message}");
        assert!(message.contains("Fix:"), "{case}: gives a fix: {message}");
        assert!(!message.contains(&corrupt_body), "{case}: no key bytes: {message}");
        for key_file in [&ec_key, &rsa_key] {
            for line in pem_body_lines(key_file) {
                assert!(!message.contains(&line), "{case}: no key bytes: {message}");
            }
        }
        assert!(
            !data_dir.path().join("hyper_registry.db").exists(),
            "{case}: stops before the database is created"
        );
    }
}

#[tokio::test]
async fn expired_certificate_warns_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Expiry CA");
    let now = OffsetDateTime::now_utc();
    let expired = ca.server_valid("expired", now - time::Duration::days(30), now - time::Duration::days(1));
    let (cert, key) = expired.write(dir.path(), "expired");
    let mut server = ServerProcess::start(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]);

    // A client that checks dates as of ten days ago accepts the certificate.
    let served = server
        .wait_until_serving(client_config_at(&ca.roots(), now - time::Duration::days(10)))
        .await;
    // A client with today's date rejects it: the certificate really is expired.
    let today = fetch(
        server.address,
        client_config(&ca.roots(), None, BOTH_VERSIONS),
        "/health",
    )
    .await;
    let stderr = server.stop_and_read_stderr();

    assert_eq!(served, expired.der, "the expired certificate is served");
    let error = today.err().expect("today's client rejects the certificate").to_string();
    assert!(error.contains("expired"), "rejected as expired: {error}");
    assert!(stderr.contains("EXPIRED"), "start-up warns: {stderr}");
    assert!(
        stderr.contains("SSL_CERT_FILE"),
        "the warning names the variable: {stderr}"
    );
}

#[tokio::test]
async fn hsts_sent_over_tls() {
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("fullchain.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("privkey.pem"))),
    ])
    .await;
    let config = client_config(&read_certificates(&fixture("ca.pem")), None, BOTH_VERSIONS);

    for path in ["/health", "/api/v1/registry/entries", "/no-such-route"] {
        let response = fetch(server.address, config.clone(), path).await.expect("response");

        assert_eq!(response.header("strict-transport-security"), Some(HSTS), "{path}");
    }
}

#[tokio::test]
async fn hsts_absent_over_plain_http() {
    let app = crate::helpers::TestApp::spawn().await;

    let response = app.client.get(app.url("/health")).send().await.unwrap();

    assert!(response.headers().get("strict-transport-security").is_none());
}

/// Starts a server with its own certificate and `client_ca` in `mode`.
async fn mtls_server(dir: &Path, client_ca: &TestCa, mode: &str) -> (TlsTestServer, TestCa) {
    let server_ca = TestCa::new("Server CA");
    let (cert, key) = server_ca.server("localhost").write(dir, "server");
    let ca_file = client_ca.write(dir);
    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&cert)),
        ("SSL_KEY_FILE", path_str(&key)),
        ("SSL_CLIENT_CA_FILE", path_str(&ca_file)),
        ("SSL_CLIENT_AUTH", mode),
    ])
    .await;
    (server, server_ca)
}

#[tokio::test]
async fn mtls_required_rejects_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("Client CA");
    let (server, server_ca) = mtls_server(dir.path(), &client_ca, "required").await;

    let result = fetch(
        server.address,
        client_config(&server_ca.roots(), None, BOTH_VERSIONS),
        "/health",
    )
    .await;

    let error = result.err().expect("no certificate, no response").to_string();
    assert!(
        error.contains("CertificateRequired"),
        "rejected for the missing certificate: {error}"
    );
}

#[tokio::test]
async fn mtls_required_records_subject_in_audit() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("Client CA");
    let (server, server_ca) = mtls_server(dir.path(), &client_ca, "required").await;
    let identity = client_ca.client("build-agent", "Example").identity();
    let config = client_config(&server_ca.roots(), Some(identity), BOTH_VERSIONS);

    let health = fetch(server.address, config.clone(), "/health")
        .await
        .expect("health response");
    // Not signed in, so 401, but audited with the certificate's subject.
    let entries = fetch(server.address, config, "/api/v1/registry/entries")
        .await
        .expect("entries response");
    let request_id = entries.header("x-request-id").expect("request id").to_string();
    let events = server.stop_and_read_audit().await;

    assert_eq!(health.status, 200);
    assert_eq!(entries.status, 401);
    let access = events
        .iter()
        .find(|event| event["request_id"] == request_id.as_str() && event["event_type"] == "access")
        .expect("access event of the request");
    assert_eq!(access["client_cert_subject"], "CN=build-agent,O=Example");
}

#[tokio::test]
async fn audit_omits_subject_without_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("Client CA");
    let (server, server_ca) = mtls_server(dir.path(), &client_ca, "optional").await;
    let config = client_config(&server_ca.roots(), None, BOTH_VERSIONS);

    let response = fetch(server.address, config, "/api/v1/registry/entries")
        .await
        .expect("response");
    let request_id = response.header("x-request-id").expect("request id").to_string();
    let events = server.stop_and_read_audit().await;

    let access = events
        .iter()
        .find(|event| event["request_id"] == request_id.as_str() && event["event_type"] == "access")
        .expect("access event of the request");
    assert!(access.get("client_cert_subject").is_none(), "{access}");
}

#[tokio::test]
async fn mtls_optional_accepts_missing_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("Client CA");
    let (server, server_ca) = mtls_server(dir.path(), &client_ca, "optional").await;

    let response = fetch(
        server.address,
        client_config(&server_ca.roots(), None, BOTH_VERSIONS),
        "/health",
    )
    .await
    .expect("served without a client certificate");

    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn mtls_optional_rejects_foreign_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("Client CA");
    let (server, server_ca) = mtls_server(dir.path(), &client_ca, "optional").await;
    let foreign = TestCa::new("Foreign CA").client("intruder", "Elsewhere").identity();

    let result = fetch(
        server.address,
        client_config(&server_ca.roots(), Some(foreign), BOTH_VERSIONS),
        "/health",
    )
    .await;

    let error = result
        .err()
        .expect("a certificate from another CA gets no response")
        .to_string();
    assert!(
        error.contains("UnknownCA") || error.contains("BadCertificate"),
        "{error}"
    );
}

/// Replaces `path` by renaming a new file over it, as certbot's symlink swap
/// and most deploy tools do, so the path gets a new inode.
fn replace_file(path: &Path, contents: &str) {
    let staging = path.with_extension("new");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

#[tokio::test]
async fn reload_serves_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Reload CA");
    let first = ca.server("first");
    let second = ca.server("second");
    let (cert, key) = first.write(dir.path(), "server");
    let server = TlsTestServer::spawn(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]).await;
    let config = client_config(&ca.roots(), None, BOTH_VERSIONS);
    let mut before = connect(server.address, config.clone()).await.expect("first connection");
    assert_eq!(get(&mut before, "/health").await.expect("health").status, 200);

    replace_file(&cert, &second.cert_pem);
    replace_file(&key, &second.key_pem);
    server.tls.reload().expect("reload");
    let mut after = connect(server.address, config).await.expect("new connection");
    let on_new = get(&mut after, "/health").await.expect("health on the new connection");
    let on_old = get(&mut before, "/health")
        .await
        .expect("health on the connection opened before");

    assert_eq!(
        served_chain(&after)[0],
        second.der,
        "new connections get the new certificate"
    );
    assert_eq!(on_new.status, 200);
    assert_eq!(
        served_chain(&before)[0],
        first.der,
        "the open connection keeps its session"
    );
    assert_eq!(on_old.status, 200, "the connection opened before still works");
}

#[tokio::test]
async fn reload_if_changed_detects_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Poll CA");
    let second = ca.server("second");
    let (cert, key) = ca.server("first").write(dir.path(), "server");
    let server = TlsTestServer::spawn(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]).await;
    let config = client_config(&ca.roots(), None, BOTH_VERSIONS);

    let untouched = server.tls.reload_if_changed();
    replace_file(&cert, &second.cert_pem);
    replace_file(&key, &second.key_pem);
    let replaced = server.tls.reload_if_changed();
    let again = server.tls.reload_if_changed();
    let stream = connect(server.address, config).await.expect("connection");

    assert!(untouched.is_none(), "no reload while the files are unchanged");
    assert!(matches!(replaced, Some(Ok(()))), "replaced files are loaded");
    assert!(again.is_none(), "loaded once per change");
    assert_eq!(served_chain(&stream)[0], second.der);
}

#[cfg(unix)]
#[tokio::test]
async fn symlink_swap_detected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Symlink CA");
    let archive = dir.path().join("archive");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&archive).unwrap();
    std::fs::create_dir_all(&live).unwrap();
    let first = ca.server("first");
    let second = ca.server("second");
    first.write(&archive, "cert1");
    second.write(&archive, "cert2");
    let link = |name: &str, target: &str| {
        let staging = live.join(format!("{name}.tmp"));
        std::os::unix::fs::symlink(archive.join(target), &staging).unwrap();
        std::fs::rename(&staging, live.join(name)).unwrap();
    };
    link("fullchain.pem", "cert1.pem");
    link("privkey.pem", "cert1.key");
    let cert = live.join("fullchain.pem");
    let key = live.join("privkey.pem");
    let server = TlsTestServer::spawn(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]).await;

    // As certbot renews: the links now point at the new files.
    link("fullchain.pem", "cert2.pem");
    link("privkey.pem", "cert2.key");
    let swapped = server.tls.reload_if_changed();
    let stream = connect(server.address, client_config(&ca.roots(), None, BOTH_VERSIONS))
        .await
        .expect("connection");

    assert!(matches!(swapped, Some(Ok(()))), "the swap is seen and loaded");
    assert_eq!(served_chain(&stream)[0], second.der);
}

#[tokio::test]
async fn file_change_reloads_without_call() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Watch CA");
    let second = ca.server("second");
    let (cert, key) = ca.server("first").write(dir.path(), "server");
    let server = TlsTestServer::spawn(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]).await;
    let config = client_config(&ca.roots(), None, BOTH_VERSIONS);

    replace_file(&key, &second.key_pem);
    replace_file(&cert, &second.cert_pem);
    // The reloader polls every RELOAD_POLL_INTERVAL (2 s); allow three polls.
    let mut served = None;
    for _ in 0..60 {
        let stream = connect(server.address, config.clone()).await.expect("connection");
        served = Some(served_chain(&stream).remove(0));
        if served.as_ref() == Some(&second.der) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(served, Some(second.der), "the new certificate within 6 s");
}

#[tokio::test]
async fn broken_replacement_keeps_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Broken CA");
    let first = ca.server("first");
    let second = ca.server("second");
    let (cert, key) = first.write(dir.path(), "server");
    let server = TlsTestServer::spawn(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]).await;
    let config = client_config(&ca.roots(), None, BOTH_VERSIONS);

    // A renewal caught half-way: the new certificate with the old key.
    replace_file(&cert, &second.cert_pem);
    let mismatched = server.tls.reload_if_changed();
    let repeated = server.tls.reload_if_changed();
    let stream = connect(server.address, config.clone()).await.expect("connection");
    // Then a corrupt key.
    write_corrupt_key(&key);
    let corrupt = server.tls.reload();
    let mut still = connect(server.address, config)
        .await
        .expect("connection after the corrupt key");

    let error = mismatched.expect("a change was seen").expect_err("mismatch reported");
    assert!(error.to_string().contains("does not match"), "{error}");
    assert!(repeated.is_none(), "a broken file is reported once, not at every poll");
    assert_eq!(
        served_chain(&stream)[0],
        first.der,
        "the old certificate stays in force"
    );
    assert!(corrupt.is_err(), "a corrupt key is reported");
    assert_eq!(served_chain(&still)[0], first.der, "still the old certificate");
    assert_eq!(get(&mut still, "/health").await.expect("health").status, 200);
}

/// Rewrites `path` in place with `contents` padded to the old length and the
/// old modification time, so that only an explicit reload can notice.
fn rewrite_unnoticed(path: &Path, contents: &str) {
    let metadata = std::fs::metadata(path).unwrap();
    let modified = metadata.modified().unwrap();
    let mut bytes = contents.as_bytes().to_vec();
    let length = usize::try_from(metadata.len()).unwrap();
    assert!(bytes.len() <= length, "the new file fits in the old length");
    bytes.resize(length, b'\n');

    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all(&bytes).unwrap();
    file.set_modified(modified).unwrap();
}

/// Writes `contents` padded with blank lines to 4 KiB; PEM parsers skip them.
fn write_padded(path: &Path, contents: &str) {
    let mut bytes = contents.as_bytes().to_vec();
    bytes.resize(4096, b'\n');
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn sighup_reloads_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Signal CA");
    let first = ca.server("first");
    let second = ca.server("second");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    write_padded(&cert, &first.cert_pem);
    write_padded(&key, &first.key_pem);
    let mut server = ServerProcess::start(&[("SSL_CERT_FILE", path_str(&cert)), ("SSL_KEY_FILE", path_str(&key))]);
    let config = client_config(&ca.roots(), None, BOTH_VERSIONS);
    let served_first = server.wait_until_serving(config.clone()).await;

    rewrite_unnoticed(&cert, &second.cert_pem);
    rewrite_unnoticed(&key, &second.key_pem);
    let signalled = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    let mut served_later: Option<CertificateDer<'static>> = None;
    for _ in 0..100 {
        let mut stream = connect(server.address, config.clone())
            .await
            .expect("connection after SIGHUP");
        assert_eq!(get(&mut stream, "/health").await.expect("health").status, 200);
        served_later = Some(served_chain(&stream).remove(0));
        if served_later.as_ref() == Some(&second.der) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still_running = server.child.try_wait().expect("process status").is_none();
    let stderr = server.stop_and_read_stderr();

    assert_eq!(served_first, first.der);
    assert!(signalled.success());
    assert!(still_running, "SIGHUP does not stop the server: {stderr}");
    assert_eq!(
        served_later,
        Some(second.der),
        "the new certificate within 10 s: {stderr}"
    );
    assert!(stderr.contains("SIGHUP received"), "{stderr}");
}

#[tokio::test]
async fn shutdown_closes_idle_tls_connection() {
    let mut server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&fixture("ec-sec1.pem"))),
        ("SSL_KEY_FILE", path_str(&fixture("ec-sec1.key"))),
    ])
    .await;
    let config = client_config(&read_certificates(&fixture("ca.pem")), None, BOTH_VERSIONS);
    let mut idle = connect(server.address, config).await.expect("connection");
    assert_eq!(get(&mut idle, "/health").await.expect("health").status, 200);

    let stopped = server.stop_within(Duration::from_secs(10)).await;

    assert!(stopped, "the server stops with a keep-alive TLS connection open");
}

fn cert_command(out: &Path, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hyper-registry"))
        .args(["cert", "self-signed", "--out", path_str(out)])
        .args(extra)
        .env_clear()
        .output()
        .expect("CLI runs")
}

#[tokio::test]
async fn cert_self_signed_output_serves_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dev-certs");

    let output = cert_command(
        &out,
        &["--hostname", "registry.test", "--client", "build-agent", "--days", "30"],
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for variable in ["SSL_CERT_FILE=", "SSL_KEY_FILE=", "SSL_CLIENT_CA_FILE="] {
        assert!(stdout.contains(variable), "prints {variable}: {stdout}");
    }
    #[cfg(unix)]
    for key in ["server.key", "client.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    assert!(!out.join("ca.key").exists(), "the CA key is not saved");

    let server = TlsTestServer::spawn(&[
        ("SSL_CERT_FILE", path_str(&out.join("server.pem"))),
        ("SSL_KEY_FILE", path_str(&out.join("server.key"))),
        ("SSL_CLIENT_CA_FILE", path_str(&out.join("ca.pem"))),
    ])
    .await;
    let client_key = std::fs::read_to_string(out.join("client.key")).unwrap();
    let identity = (
        read_certificates(&out.join("client.pem")),
        PrivateKeyDer::from_pem_slice(client_key.as_bytes()).unwrap(),
    );
    let config = client_config(&read_certificates(&out.join("ca.pem")), Some(identity), BOTH_VERSIONS);
    let response = fetch(server.address, config, "/api/v1/registry/entries")
        .await
        .expect("mutual TLS with the generated files");
    let request_id = response.header("x-request-id").unwrap().to_string();
    let events = server.stop_and_read_audit().await;

    let access = events
        .iter()
        .find(|event| event["request_id"] == request_id.as_str())
        .expect("access event");
    assert_eq!(
        access["client_cert_subject"],
        "CN=build-agent,O=Hyper Registry development"
    );
}

#[test]
fn cert_self_signed_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = cert_command(dir.path(), &[]);
    let key_before = std::fs::read(dir.path().join("server.key")).unwrap();

    let second = cert_command(dir.path(), &[]);

    assert!(first.status.success());
    assert!(!second.status.success(), "a second run into the same directory fails");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    let mut key_after = Vec::new();
    std::fs::File::open(dir.path().join("server.key"))
        .unwrap()
        .read_to_end(&mut key_after)
        .unwrap();
    assert_eq!(key_before, key_after, "the key is unchanged");
}

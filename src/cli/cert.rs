//! `cert self-signed`: a development CA with a server certificate and,
//! on request, a client certificate, for trying HTTPS and mutual TLS locally.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

/// Organization name in every certificate this command makes, so that they
/// are easy to recognize in a trust store.
const ORGANIZATION: &str = "Hyper Registry development";
/// Names that the server certificate always covers.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Subcommand)]
pub(super) enum CertCommand {
    /// Writes a development CA, a server certificate for localhost,
    /// 127.0.0.1 and ::1 and its key, and optionally a client certificate.
    /// Not for production: use a certificate from a public or company CA.
    SelfSigned(SelfSignedArgs),
}

#[derive(Args)]
pub(super) struct SelfSignedArgs {
    /// Directory to write into; created when missing. Existing files are
    /// never overwritten.
    #[arg(long)]
    out: PathBuf,
    /// Another DNS name or IP address for the server certificate (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// Validity of every certificate, in days (1 to 3650).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u16).range(1..=3650))]
    days: u16,
    /// Also writes a client certificate with this common name, signed by the
    /// same CA, for trying SSL_CLIENT_CA_FILE.
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
}

/// The files that one run writes.
struct OutputFiles {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client: Option<(PathBuf, PathBuf)>,
}

pub(super) fn run(command: &CertCommand) -> ExitCode {
    let CertCommand::SelfSigned(args) = command;
    match self_signed(args) {
        Ok(files) => {
            print_summary(args, &files);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn self_signed(args: &SelfSignedArgs) -> anyhow::Result<OutputFiles> {
    for hostname in &args.hostnames {
        if !is_valid_hostname(hostname) {
            anyhow::bail!("invalid --hostname `{hostname}`: use a DNS name such as registry.internal or an IP address");
        }
    }
    if let Some(name) = &args.client {
        let printable = name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if name.trim().is_empty() || name.len() > 64 || !printable {
            anyhow::bail!("invalid --client `{name}`: use 1 to 64 printable ASCII characters, e.g. build-agent");
        }
    }

    std::fs::create_dir_all(&args.out).with_context(|| format!("could not create --out {}", args.out.display()))?;
    let out = args
        .out
        .canonicalize()
        .with_context(|| format!("could not resolve --out {}", args.out.display()))?;
    let files = OutputFiles {
        ca: out.join("ca.pem"),
        server_cert: out.join("server.pem"),
        server_key: out.join("server.key"),
        client: args
            .client
            .as_ref()
            .map(|_| (out.join("client.pem"), out.join("client.key"))),
    };
    let mut all_paths = vec![&files.ca, &files.server_cert, &files.server_key];
    if let Some((cert, key)) = &files.client {
        all_paths.extend([cert, key]);
    }
    for path in &all_paths {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; choose another --out directory or remove the old files",
                path.display()
            );
        }
    }

    let now = OffsetDateTime::now_utc();
    // A few minutes back, so that a client whose clock is slightly behind
    // still accepts the certificates.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::days(i64::from(args.days));

    // The CA key is only kept in memory: once this run ends, the CA can sign
    // nothing else, which limits the harm of trusting it in a browser.
    let ca_key = KeyPair::generate().context("could not generate the CA key")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = distinguished_name("Hyper Registry development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca_params, not_before, not_after);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .context("could not sign the CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|name| name.to_string()).collect();
    names.extend(args.hostnames.iter().cloned());
    let mut server_params =
        CertificateParams::new(names).context("invalid --hostname: use a DNS name or an IP address")?;
    let common_name = args.hostnames.first().map_or("localhost", String::as_str);
    server_params.distinguished_name = distinguished_name(common_name);
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_leaf_fields(&mut server_params, not_before, not_after);
    let server_key = KeyPair::generate().context("could not generate the server key")?;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .context("could not sign the server certificate")?;

    write_file(&files.ca, ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&files.server_cert, server_cert.pem().as_bytes(), 0o644)?;
    write_file(&files.server_key, server_key.serialize_pem().as_bytes(), 0o600)?;

    if let (Some(name), Some((cert_path, key_path))) = (&args.client, &files.client) {
        let mut client_params = CertificateParams::default();
        client_params.distinguished_name = distinguished_name(name);
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_leaf_fields(&mut client_params, not_before, not_after);
        let client_key = KeyPair::generate().context("could not generate the client key")?;
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .context("could not sign the client certificate: --client must be printable text")?;
        write_file(cert_path, client_cert.pem().as_bytes(), 0o644)?;
        write_file(key_path, client_key.serialize_pem().as_bytes(), 0o600)?;
    }
    Ok(files)
}

/// Accepts an IP address, or a DNS name of letters, digits and hyphens in
/// labels of 1 to 63 characters, with an optional leading `*.` wildcard.
fn is_valid_hostname(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Builds `O=Hyper Registry development, CN=common_name`, which RFC 4514
/// prints as `CN=common_name,O=Hyper Registry development`.
fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, ORGANIZATION);
    name.push(DnType::CommonName, common_name);
    name
}

fn set_validity(params: &mut CertificateParams, not_before: OffsetDateTime, not_after: OffsetDateTime) {
    params.not_before = not_before;
    params.not_after = not_after;
    // 16 random bytes with the top bit cleared: a positive 127-bit serial.
    let mut serial = crate::crypto::random_bytes::<16>();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn set_leaf_fields(params: &mut CertificateParams, not_before: OffsetDateTime, not_after: OffsetDateTime) {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(params, not_before, not_after);
}

/// Creates `path` with `mode`; fails rather than replace an existing file.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("could not write {}", path.display()))
}

fn print_summary(args: &SelfSignedArgs, files: &OutputFiles) {
    let mut names: Vec<&str> = LOCAL_NAMES.to_vec();
    names.extend(args.hostnames.iter().map(String::as_str));

    println!("Wrote a development CA and certificates valid for {} days:", args.days);
    println!(
        "  {}  CA certificate: trust it in clients, e.g. curl --cacert",
        files.ca.display()
    );
    println!(
        "  {}  server certificate for {}",
        files.server_cert.display(),
        names.join(", ")
    );
    println!("  {}  server private key (mode 0600)", files.server_key.display());
    if let Some((cert, key)) = &files.client {
        println!("  {}  client certificate", cert.display());
        println!("  {}  client private key (mode 0600)", key.display());
    }
    println!("The CA's private key was not saved, so this CA can sign nothing else.");
    println!();
    println!("Serve HTTPS with:");
    println!("  export SSL_CERT_FILE={}", files.server_cert.display());
    println!("  export SSL_KEY_FILE={}", files.server_key.display());
    if files.client.is_some() {
        println!("  export SSL_CLIENT_CA_FILE={}", files.ca.display());
    }
    println!();
    let client_flags = match &files.client {
        Some((cert, key)) => format!(" --cert {} --key {}", cert.display(), key.display()),
        None => String::new(),
    };
    println!(
        "Try it: curl --cacert {}{} https://localhost:8000/health",
        files.ca.display(),
        client_flags
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_checked() {
        for good in [
            "registry.test",
            "a-b.example.com",
            "*.example.com",
            "10.0.0.1",
            "fd00::1",
            "localhost",
        ] {
            assert!(is_valid_hostname(good), "{good}");
        }
        for bad in [
            "",
            "bad name!",
            "-a.example.com",
            "a..b",
            "a_b.example.com",
            "*",
            "example.com/",
        ] {
            assert!(!is_valid_hostname(bad), "{bad}");
        }
    }
}

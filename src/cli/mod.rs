//! The operator's command line. Each subcommand calls the same service
//! functions as the HTTP API; none of them takes a secret as an argument.

mod audit;
mod backup;
mod cert;
mod check_config;
mod encryption;
mod export;
mod import;
mod incident;
mod keys;
mod roles;
mod secret;
mod users;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Hyper Registry: a registry of an organization's components, secure in
/// production by default. Configuration comes from environment variables
/// (see the README); nothing secret is ever passed as an argument.
#[derive(Parser)]
#[command(name = "hyper-registry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP server on BIND_ADDRESS (default 127.0.0.1:8000).
    Serve,
    /// Manages user accounts.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Manages API keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manages custom roles.
    #[command(subcommand)]
    Roles(roles::RolesCommand),
    /// Imports entries from a JSON Lines file (plain or .gz).
    Import(import::ImportArgs),
    /// Exports every entry as JSON Lines, in the import format.
    Export(export::ExportArgs),
    /// Generates secrets.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Works with the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Turns emergency mode on or off for every instance.
    #[command(subcommand)]
    Emergency(incident::EmergencyCommand),
    /// Changes the log level of every instance at run time.
    #[command(subcommand)]
    Logging(incident::LoggingCommand),
    /// Works with the encryption of stored secrets.
    #[command(subcommand)]
    Encryption(encryption::EncryptionCommand),
    /// Checks the configuration against the production checklist; exits
    /// non-zero when an item fails. Prints no secret.
    CheckConfig,
    /// Copies the SQLite database to a new file while the server runs.
    Backup(backup::BackupArgs),
    /// Makes certificates for trying HTTPS and client certificates locally.
    #[command(subcommand)]
    Cert(cert::CertCommand),
}

/// Parses the command line, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();

    // Commands that need no configuration run before it is read.
    match &cli.command {
        Command::Secret(command) => return secret::run(command),
        // Reads the configuration itself, so that production refusals
        // become report lines instead of stopping it.
        Command::CheckConfig => return check_config::run(),
        Command::Cert(command) => return cert::run(command),
        Command::Audit(audit::AuditCommand::Verify(args)) if args.file.is_some() => return audit::verify(args, None),
        _ => {}
    }

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&config.log_level, config.log_format);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Users(command) => users::run(command, &config).await,
            Command::Keys(command) => keys::run(command, config).await,
            Command::Roles(command) => roles::run(command, config).await,
            Command::Import(args) => import::run(args, &config).await,
            Command::Export(args) => export::run(args, &config).await,
            Command::Audit(command) => audit::run(command, &config).await,
            Command::Emergency(command) => incident::emergency(command, &config).await,
            Command::Logging(command) => incident::logging(command, &config).await,
            Command::Encryption(command) => encryption::run(command, &config).await,
            Command::Backup(args) => backup::run(args, &config).await,
            Command::Secret(_) | Command::CheckConfig | Command::Cert(_) => Ok(ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    // A file-size limit (ulimit -f) must surface as a failed write that the
    // audit writer handles (503 for changes until space returns), not as a
    // signal that kills the server.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" before other
    // threads use signals has no memory effects.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    tracing::info!(
        bind_address = %config.bind_address,
        database = if config.uses_sqlite() { "sqlite" } else { "postgresql" },
        jwt_secret_key = if config.jwt_secret_key.is_some() { "set" } else { "generated" },
        encryption_key = if config.encryption_key.is_some() { "set" } else { "generated" },
        audit_log_file = %config.audit_log_file.display(),
        "starting hyper-registry"
    );
    let application = crate::startup::Application::build(config).await?;
    application.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a secret from a file, or from standard input when the path is `-`
/// or absent. Only the first line counts, without its line break.
fn read_secret(path: Option<&std::path::Path>) -> anyhow::Result<crate::config::SecretString> {
    use std::io::BufRead;

    let mut line = String::new();
    match path {
        Some(path) if path.as_os_str() != "-" => {
            let file = std::fs::File::open(path)
                .map_err(|error| anyhow::anyhow!("could not open {}: {error}", path.display()))?;
            std::io::BufReader::new(file).read_line(&mut line)?;
        }
        _ => {
            std::io::stdin().lock().read_line(&mut line)?;
        }
    }
    let value = line.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        anyhow::bail!("no password given on standard input or in the file");
    }
    Ok(crate::config::SecretString::new(value))
}

/// Writes an operator's change to the audit trail, marked as made on the
/// command line, and waits until it is on disk.
async fn record_operator_event(
    state: &crate::app::AppState,
    event_type: &str,
    description: String,
) -> anyhow::Result<()> {
    record_operator_event_with(state, event_type, crate::audit::Severity::Medium, description).await
}

/// As [`record_operator_event`], with a chosen severity.
async fn record_operator_event_with(
    state: &crate::app::AppState,
    event_type: &str,
    severity: crate::audit::Severity,
    description: String,
) -> anyhow::Result<()> {
    use crate::audit::{AuditEvent, Status};

    let event = AuditEvent::new(state.clock.now(), event_type, event_type, Status::Success, severity)
        .description(format!("{description} (command line)"));
    state
        .audit
        .record_durable(event)
        .await
        .map_err(|_| anyhow::anyhow!("the audit log could not be written after the change; check AUDIT_LOG_FILE"))
}

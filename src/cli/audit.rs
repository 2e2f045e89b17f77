use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::audit::verify_chain;
use crate::config::Config;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Checks the hash chain of an audit log and exits non-zero at the first
    /// bad line.
    Verify(VerifyArgs),
}

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// The file to check. Default: AUDIT_LOG_FILE.
    pub file: Option<PathBuf>,
}

pub(super) fn verify(args: &VerifyArgs, config: Option<&Config>) -> ExitCode {
    let Some(path) = args.file.clone().or_else(|| config.map(|c| c.audit_log_file.clone())) else {
        eprintln!("error: no file given and AUDIT_LOG_FILE could not be read");
        return ExitCode::from(2);
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("error: could not open {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let lines: Result<Vec<String>, _> = std::io::BufReader::new(file).lines().collect();
    let lines = match lines {
        Ok(lines) => lines,
        Err(error) => {
            eprintln!("error: could not read {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    match verify_chain(lines.iter().map(String::as_str), crate::audit::GENESIS_HASH) {
        Ok((count, _)) => {
            println!("{}: {count} events, hash chain intact", path.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("{}: chain broken at {error}", path.display());
            ExitCode::FAILURE
        }
    }
}

use std::process::ExitCode;

use base64::Engine;
use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum SecretCommand {
    /// Prints a new random secret: base64 of 32 bytes from the OS CSPRNG,
    /// valid as both JWT_SECRET_KEY and ENCRYPTION_KEY.
    Generate,
}

pub(super) fn run(command: &SecretCommand) -> ExitCode {
    match command {
        SecretCommand::Generate => {
            let bytes = crate::crypto::random_bytes::<32>();
            println!("{}", base64::engine::general_purpose::STANDARD.encode(bytes));
            ExitCode::SUCCESS
        }
    }
}

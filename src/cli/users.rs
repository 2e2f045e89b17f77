use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::app::{create_user, Core, NewUser};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::rbac::builtin_roles;

#[derive(Subcommand)]
pub(super) enum UsersCommand {
    /// Creates a user. The password is read from standard input (one line)
    /// or from --password-file, never from the command line.
    Create(CreateArgs),
}

#[derive(Args)]
pub(super) struct CreateArgs {
    /// The username, often an e-mail address.
    #[arg(long)]
    username: String,
    /// A role to give the user; repeat for several. Default: user.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Reads the password from this file instead of standard input.
    #[arg(long)]
    password_file: Option<PathBuf>,
}

pub(super) async fn run(command: UsersCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::Create(args) => {
            let password = super::read_secret(args.password_file.as_deref())?;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let core = Core::open(config, clock.clone()).await?;
            let mut known: Vec<String> = builtin_roles().into_iter().map(|role| role.name).collect();
            known.extend(core.store.list_roles().await?.into_iter().map(|role| role.name));
            let roles = if args.roles.is_empty() {
                vec!["user".to_string()]
            } else {
                args.roles
            };
            let new = NewUser {
                username: args.username,
                password,
                roles,
            };
            let user = create_user(&core.store, &known, new, clock.now()).await?;
            println!(
                "created user {} ({}) with roles {}",
                user.username,
                user.id,
                user.roles.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use anyhow::Context;
use uuid::Uuid;

use crate::app::accounts::{change_account, operator_principal, AccountChange};
use crate::app::{create_user, AppState, Core, NewUser};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::rbac::builtin_roles;

#[derive(Subcommand)]
pub(super) enum UsersCommand {
    /// Creates a user. The password is read from standard input (one line)
    /// or from --password-file, never from the command line.
    Create(CreateArgs),
    /// Disables an account: its tokens, refresh tokens and keys stop at once.
    Disable(UserArgs),
    /// Enables a disabled account; tokens issued before the disable stay invalid.
    Enable(UserArgs),
    /// Clears a lockout after failed logins.
    Unlock(UserArgs),
    /// Replaces an account's roles.
    SetRoles(SetRolesArgs),
}

#[derive(Args)]
pub(super) struct UserArgs {
    /// The username.
    username: String,
}

#[derive(Args)]
pub(super) struct SetRolesArgs {
    /// The username.
    username: String,
    /// A role to give; repeat for several. The account's roles become exactly these.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
}

#[derive(Args)]
pub(super) struct CreateArgs {
    /// The username, often an e-mail address: 1 to 64 ASCII letters, digits
    /// or `.`, `_`, `-`, `@`, unique without regard to case.
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
    let (username, change) = match command {
        UsersCommand::Create(args) => return create(args, config).await,
        UsersCommand::Disable(args) => (
            args.username,
            AccountChange {
                disabled: Some(true),
                ..Default::default()
            },
        ),
        UsersCommand::Enable(args) => (
            args.username,
            AccountChange {
                disabled: Some(false),
                ..Default::default()
            },
        ),
        UsersCommand::Unlock(args) => (
            args.username,
            AccountChange {
                unlock: true,
                ..Default::default()
            },
        ),
        UsersCommand::SetRoles(args) => (
            args.username,
            AccountChange {
                roles: Some(args.roles),
                ..Default::default()
            },
        ),
    };
    let (state, audit_pipeline) = AppState::build_for_cli(config.clone()).await?;
    let result = apply_change(&state, &username, change).await;
    drop(state);
    audit_pipeline.finish().await;
    result
}

async fn apply_change(state: &AppState, username: &str, change: AccountChange) -> anyhow::Result<ExitCode> {
    let target = state
        .store
        .find_user_by_username(username)
        .await?
        .with_context(|| format!("no user `{username}`"))?;
    let operator = operator_principal(Uuid::nil(), "command line");
    let now = state.clock.now();
    let (user, description) = change_account(&state.auth, &operator, target, change, now).await?;
    super::record_operator_event(state, "user_updated", description.clone()).await?;
    println!(
        "{description}; roles now {}, disabled {}",
        user.roles.join(", "),
        user.disabled
    );
    Ok(ExitCode::SUCCESS)
}

async fn create(args: CreateArgs, config: &Config) -> anyhow::Result<ExitCode> {
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

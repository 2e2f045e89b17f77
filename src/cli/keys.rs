//! `keys create|list|rotate|revoke`: the API key lifecycle for operators,
//! audited like the HTTP API, so that "revoke the compromised key, issue a
//! replacement" is two commands.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::app::AppState;
use crate::auth::api_key::display_prefix;
use crate::auth::keys::{create_key, find_manageable_key, rotate_key, KeyLimits, KeyRequest};
use crate::config::Config;

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Creates a key and prints it once. A user may have at most
    /// API_KEY_MAX_PER_USER live keys (default 20).
    Create(CreateArgs),
    /// Lists keys (never the secrets).
    List(ListArgs),
    /// Issues a replacement; the old key stops after the grace period.
    Rotate(RotateArgs),
    /// Revokes a key at once.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub(super) struct CreateArgs {
    /// Username of the key's owner.
    #[arg(long)]
    user: String,
    /// A name for the key, e.g. the client that uses it.
    #[arg(long)]
    name: String,
    /// A permission for the key; repeat for several. Default: the owner's.
    #[arg(long = "permission")]
    permissions: Vec<String>,
    /// Lifetime in days. Default: API_KEY_EXPIRE_DAYS.
    #[arg(long)]
    expires_in_days: Option<u32>,
    /// Requests per minute for this key, overriding RATE_LIMIT_PER_MINUTE.
    #[arg(long)]
    rate_limit_per_minute: Option<u32>,
}

#[derive(Args)]
pub(super) struct ListArgs {
    /// Only the keys of this username.
    #[arg(long)]
    user: Option<String>,
}

#[derive(Args)]
pub(super) struct RotateArgs {
    /// The key id (the part after `hrk_`, shown by `keys list`).
    id: String,
    /// Hours the old key keeps working. Default: 0 (stops at once).
    #[arg(long, default_value_t = 0)]
    grace_period_hours: u32,
}

#[derive(Args)]
pub(super) struct RevokeArgs {
    /// The key id (the part after `hrk_`, shown by `keys list`).
    id: String,
}

fn pepper(state: &AppState) -> anyhow::Result<[u8; 32]> {
    state.auth.peppers().first().copied().context("no API key pepper")
}

pub(super) async fn run(command: KeysCommand, config: Config) -> anyhow::Result<ExitCode> {
    let (state, audit_pipeline) = AppState::build_for_cli(config).await?;
    let result = execute(command, &state).await;
    drop(state);
    audit_pipeline.finish().await;
    result
}

async fn execute(command: KeysCommand, state: &AppState) -> anyhow::Result<ExitCode> {
    let now = state.clock.now();
    match command {
        KeysCommand::Create(args) => {
            let owner = state
                .store
                .find_user_by_username(&args.user)
                .await?
                .with_context(|| format!("no user `{}`", args.user))?;
            let request = KeyRequest {
                name: args.name,
                permissions: (!args.permissions.is_empty()).then_some(args.permissions),
                expires_in_days: args.expires_in_days,
                rate_limit_per_minute: args.rate_limit_per_minute,
            };
            let limits = KeyLimits {
                default_days: state.config.api_key_expire_days,
                max_days: state.config.api_key_max_expire_days,
            };
            let created = create_key(&state.auth, &owner, request, limits, &pepper(state)?, now).await?;
            super::record_operator_event(
                state,
                "api_key_created",
                format!("API key {} created for user {}", created.record.id, owner.id),
            )
            .await?;
            eprintln!(
                "created key {} expiring {}; it is shown only this once:",
                created.record.id,
                created.record.expires_at.to_rfc3339()
            );
            println!("{}", created.key);
        }
        KeysCommand::List(args) => {
            let user_id = match args.user {
                None => None,
                Some(name) => Some(
                    state
                        .store
                        .find_user_by_username(&name)
                        .await?
                        .with_context(|| format!("no user `{name}`"))?
                        .id,
                ),
            };
            for key in state.store.list_api_keys(user_id).await? {
                let line = json!({
                    "id": key.id,
                    "prefix": display_prefix(&key.id),
                    "name": key.name,
                    "user_id": key.user_id.to_string(),
                    "permissions": key.permissions,
                    "expires_at": key.expires_at.to_rfc3339(),
                    "revoked_at": key.revoked_at.map(|at| at.to_rfc3339()),
                    "last_used_at": key.last_used_at.map(|at| at.to_rfc3339()),
                });
                println!("{line}");
            }
        }
        KeysCommand::Rotate(args) => {
            let old = find_manageable_key(&state.auth, &args.id, uuid::Uuid::nil(), true).await?;
            let created = rotate_key(&state.auth, &old, args.grace_period_hours, &pepper(state)?, now).await?;
            super::record_operator_event(
                state,
                "api_key_rotated",
                format!(
                    "API key {} rotated to {} with {} h grace",
                    old.id, created.record.id, args.grace_period_hours
                ),
            )
            .await?;
            eprintln!(
                "key {} replaced by {}; the new key is shown only this once:",
                old.id, created.record.id
            );
            println!("{}", created.key);
        }
        KeysCommand::Revoke(args) => {
            let key = find_manageable_key(&state.auth, &args.id, uuid::Uuid::nil(), true).await?;
            state.store.revoke_api_key(&key.id, now).await?;
            state.auth.key_changed(&key.id).await;
            super::record_operator_event(state, "api_key_revoked", format!("API key {} revoked", key.id)).await?;
            eprintln!("revoked key {}", key.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `roles list|create|delete`: custom roles from the command line, with the
//! same validation as the admin API.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;

use crate::app::accounts::operator_principal;
use crate::app::roles::{delete_role, effective_permissions, insert_role, validate_role, RoleDefinition};
use crate::app::AppState;
use crate::config::Config;

#[derive(Subcommand)]
pub(super) enum RolesCommand {
    /// Lists built-in and custom roles with their effective permissions.
    List,
    /// Creates a custom role.
    Create(CreateArgs),
    /// Deletes a custom role that no user has and no role inherits.
    Delete(DeleteArgs),
}

#[derive(Args)]
pub(super) struct CreateArgs {
    /// Role name: a lowercase letter, then lowercase letters, digits, '_' or '-'.
    name: String,
    /// A permission the role grants; repeat for several.
    #[arg(long = "permission")]
    permissions: Vec<String>,
    /// A role whose permissions this one inherits; repeat for several.
    #[arg(long = "inherits")]
    inherits: Vec<String>,
    /// A description of the role's purpose.
    #[arg(long)]
    description: Option<String>,
}

#[derive(Args)]
pub(super) struct DeleteArgs {
    /// The role name.
    name: String,
}

pub(super) async fn run(command: RolesCommand, config: Config) -> anyhow::Result<ExitCode> {
    let (state, audit_pipeline) = AppState::build_for_cli(config).await?;
    let result = execute(command, &state).await;
    drop(state);
    audit_pipeline.finish().await;
    result
}

async fn execute(command: RolesCommand, state: &AppState) -> anyhow::Result<ExitCode> {
    let roles = state.auth.roles();
    match command {
        RolesCommand::List => {
            let mut names: Vec<&String> = roles.keys().collect();
            names.sort();
            for role in names.iter().filter_map(|name| roles.get(*name)) {
                let line = json!({
                    "name": role.name,
                    "builtin": role.builtin,
                    "permissions": role.permissions,
                    "inherits": role.inherits,
                    "effective_permissions": effective_permissions(role, &roles).effective(),
                });
                println!("{line}");
            }
        }
        RolesCommand::Create(args) => {
            if roles.contains_key(&args.name) {
                anyhow::bail!("a role named `{}` already exists", args.name);
            }
            let definition = RoleDefinition {
                name: args.name,
                description: args.description,
                permissions: args.permissions,
                inherits: args.inherits,
            };
            let role = validate_role(definition, &roles, &operator_principal(Uuid::nil(), "command line"))?;
            insert_role(&state.store, &role, state.clock.now()).await?;
            super::record_operator_event(
                state,
                "role_created",
                format!("role {} created with {:?}", role.name, role.permissions),
            )
            .await?;
            println!("created role {}", role.name);
        }
        RolesCommand::Delete(args) => {
            delete_role(&state.store, &args.name, &roles).await?;
            super::record_operator_event(state, "role_deleted", format!("role {} deleted", args.name)).await?;
            println!("deleted role {}", args.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

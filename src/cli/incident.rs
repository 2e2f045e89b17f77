//! `emergency` and `logging`: the incident controls of the admin API, for
//! an operator at a shell. They change the shared settings in the database,
//! which every running instance picks up within a few seconds.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::record_operator_event_with;
use crate::app::AppState;
use crate::audit::Severity;
use crate::config::Config;
use crate::incident::{check_emergency, Emergency};

#[derive(Subcommand)]
pub(super) enum EmergencyCommand {
    /// Holds every client without security:admin to a low rate.
    Start(StartArgs),
    /// Lifts emergency mode.
    Stop,
    /// Shows whether emergency mode is on.
    Status,
}

#[derive(Args)]
pub(super) struct StartArgs {
    /// Requests per minute allowed to each client without security:admin.
    #[arg(long)]
    rate_limit_per_minute: u32,
    /// Why, for the audit trail and other operators.
    #[arg(long)]
    reason: String,
    /// Lift it by itself after this many minutes (at most a week). Default: until stopped.
    #[arg(long)]
    duration_minutes: Option<u32>,
}

#[derive(Subcommand)]
pub(super) enum LoggingCommand {
    /// Sets the log level of every instance: trace, debug, info, warn or error.
    Set { level: String },
    /// Shows the log level set at run time, if any.
    Show,
}

pub(super) async fn emergency(command: EmergencyCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let (state, pipeline) = AppState::build_for_cli(config.clone()).await?;
    let result = run_emergency(command, &state).await;
    drop(state);
    pipeline.finish().await;
    result
}

async fn run_emergency(command: EmergencyCommand, state: &AppState) -> anyhow::Result<ExitCode> {
    let now = state.clock.now();
    match command {
        EmergencyCommand::Start(args) => {
            check_emergency(args.rate_limit_per_minute, &args.reason, args.duration_minutes)
                .map_err(anyhow::Error::msg)?;
            let emergency = Emergency {
                rate_limit_per_minute: args.rate_limit_per_minute,
                reason: args.reason.clone(),
                started_at: now,
                expires_at: args
                    .duration_minutes
                    .map(|minutes| now + chrono::Duration::minutes(i64::from(minutes))),
                started_by: "command line".into(),
            };
            let description = format!(
                "emergency mode on: {} requests per minute for clients without security:admin; reason: {}",
                args.rate_limit_per_minute, args.reason
            );
            record_operator_event_with(state, "emergency_mode_enabled", Severity::Critical, description).await?;
            state.runtime.set_emergency(&state.store, Some(emergency), now).await?;
            println!("emergency mode on; running instances apply it within a few seconds");
        }
        EmergencyCommand::Stop => {
            state.runtime.set_emergency(&state.store, None, now).await?;
            record_operator_event_with(
                state,
                "emergency_mode_disabled",
                Severity::Critical,
                "emergency mode lifted".into(),
            )
            .await?;
            println!("emergency mode off");
        }
        EmergencyCommand::Status => {
            let view = crate::api::incident_routes::emergency_view(state.runtime.emergency(now).as_ref());
            println!("{view}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn logging(command: LoggingCommand, config: &Config) -> anyhow::Result<ExitCode> {
    let (state, pipeline) = AppState::build_for_cli(config.clone()).await?;
    let result = async {
        match command {
            LoggingCommand::Set { level } => {
                let level = level.to_ascii_lowercase();
                if !crate::telemetry::LEVELS.contains(&level.as_str()) {
                    anyhow::bail!("the level must be one of trace, debug, info, warn, error");
                }
                let description = format!("log level set to {level}");
                record_operator_event_with(&state, "log_level_changed", Severity::Medium, description).await?;
                state
                    .runtime
                    .set_log_level(&state.store, &level, state.clock.now())
                    .await?;
                println!("log level {level}; running instances apply it within a few seconds");
            }
            LoggingCommand::Show => {
                let level = state
                    .runtime
                    .log_level()
                    .unwrap_or_else(|| state.config.log_level.clone());
                println!("{level}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    drop(state);
    pipeline.finish().await;
    result
}

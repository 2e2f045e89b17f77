//! `hyper-registry encryption rewrap`: moves every encrypted value to the
//! current `ENCRYPTION_KEY` after a key rotation.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use crate::app::rewrap::{rewrap_all, RewrapReport, REWRAP_BATCH_SIZE};
use crate::app::Core;
use crate::audit::{AuditEvent, AuditPipeline, PipelineOptions, Severity, Status};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;

#[derive(Subcommand)]
pub(super) enum EncryptionCommand {
    /// Re-encrypts every stored encrypted value (entries' sensitive fields,
    /// TOTP secrets, pending TOTP secrets) under ENCRYPTION_KEY, in batches
    /// of 500, then moves the key check to it. Keep the old key in
    /// ENCRYPTION_KEY_PREVIOUS while it runs. Safe while servers run; run it
    /// again to resume after an interruption.
    Rewrap,
}

pub(super) async fn run(command: EncryptionCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        EncryptionCommand::Rewrap => rewrap(config).await,
    }
}

async fn rewrap(config: &Config) -> anyhow::Result<ExitCode> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let core = Core::open(config, clock.clone()).await?;
    let options = PipelineOptions {
        store: core.store.clone(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        alerts: None,
        rotate: false,
    };
    let (audit, audit_pipeline) = AuditPipeline::start(config, options)
        .with_context(|| format!("could not open AUDIT_LOG_FILE {}", config.audit_log_file.display()))?;

    eprintln!(
        "re-encrypting under key id {} in batches of {REWRAP_BATCH_SIZE}",
        core.cipher.current_key_id()
    );
    let result = rewrap_all(&core.store, core.cipher.as_ref(), clock.now()).await;

    let outcome = match &result {
        Ok(report) => {
            print_report(report);
            let event = rewrap_event(clock.now(), report);
            audit.record_durable(event).await.map_err(|_| {
                anyhow::anyhow!("the audit log could not be written after the rewrap; check AUDIT_LOG_FILE")
            })
        }
        Err(_) => Ok(()),
    };
    drop(audit);
    audit_pipeline.finish().await;

    let report = result.context("the rewrap stopped on a database error; run it again to resume")?;
    outcome?;
    if report.key_check_updated {
        println!("done: every encrypted value is under the current key");
        print_pepper_notice(&core, clock.now()).await?;
        Ok(ExitCode::SUCCESS)
    } else if report.failed() > 0 {
        println!(
            "incomplete: {} values could not be decrypted with ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS; \
             the log names their rows. Keep the old keys configured.",
            report.failed()
        );
        Ok(ExitCode::FAILURE)
    } else {
        println!(
            "incomplete: values kept being written under an old key, so a server may still run with it \
             as ENCRYPTION_KEY. Restart every server with the new key, then run the rewrap again."
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Prints what still needs the old keys. API-key secrets and recovery codes
/// are HMACs under a pepper derived from the key in force when they were
/// made, so they cannot be re-keyed without the secrets themselves.
async fn print_pepper_notice(core: &Core, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    let active_keys = core
        .store
        .list_api_keys(None)
        .await?
        .iter()
        .filter(|key| key.revoked_at.is_none() && key.expires_at > now)
        .count();
    println!(
        "note: {active_keys} active API keys, and MFA recovery codes, are verified with a pepper derived from the          ENCRYPTION_KEY in force when they were made. Keep old keys in ENCRYPTION_KEY_PREVIOUS until keys made          before the rotation are rotated (`hyper-registry keys rotate`) and users have new recovery codes;          removing an old key disables those."
    );
    Ok(())
}

fn print_report(report: &RewrapReport) {
    for (field, counts) in &report.fields {
        println!(
            "{}: {} rewrapped, {} already under the current key, {} changed concurrently, {} failed",
            field.name(),
            counts.rewrapped,
            counts.already_current,
            counts.changed_concurrently,
            counts.failed
        );
    }
    println!(
        "key check: {}",
        if report.key_check_updated {
            "under the current key"
        } else {
            "left under the old key"
        }
    );
}

fn rewrap_event(now: chrono::DateTime<chrono::Utc>, report: &RewrapReport) -> AuditEvent {
    let rewrapped: u64 = report.fields.iter().map(|(_, counts)| counts.rewrapped).sum();
    let (status, severity) = if report.key_check_updated {
        (Status::Success, Severity::Medium)
    } else {
        (Status::Failed, Severity::High)
    };
    AuditEvent::new(now, "encryption_rewrap", "encryption_rewrap", status, severity).description(format!(
        "re-encrypted {rewrapped} values under the current key; {} could not be decrypted; key check {} (command line)",
        report.failed(),
        if report.key_check_updated { "moved" } else { "not moved" }
    ))
}

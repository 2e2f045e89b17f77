use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::Core;
use crate::clock::SystemClock;
use crate::config::Config;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum OnConflict {
    /// Keep the existing entry and report the line as skipped.
    Skip,
    /// Replace the existing entry's content, keeping its id and owner.
    Update,
}

#[derive(Args)]
pub(super) struct ImportArgs {
    /// JSON Lines file, one entry per line; `.gz` files are decompressed.
    file: PathBuf,
    /// What to do when (category, name) already exists.
    #[arg(long, value_enum, default_value = "skip")]
    on_conflict: OnConflict,
    /// Username that will own the new entries. Default: ADMIN_USERNAME.
    #[arg(long)]
    owner: Option<String>,
}

/// Opens the file, decompressing gzip (by its magic bytes, whatever the name).
fn open_lines(path: &PathBuf) -> anyhow::Result<Box<dyn BufRead>> {
    let mut file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
    let mut magic = [0u8; 2];
    let is_gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = File::open(path)?;
    Ok(if is_gzip {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(256 * 1024, file))
    })
}

pub(super) async fn run(args: ImportArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let core = Core::open(config, Arc::new(SystemClock)).await?;
    let owner_name = args.owner.unwrap_or_else(|| config.admin_username.clone());
    let owner = core
        .store
        .find_user_by_username(&owner_name)
        .await?
        .with_context(|| format!("no user `{owner_name}`; pass --owner with an existing username"))?;

    let mut reader = open_lines(&args.file)?;
    let update = matches!(args.on_conflict, OnConflict::Update);
    let mut session = core.registry.start_import(owner.id, update, true);

    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} lines read, {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let max_line = config.max_body_bytes;
    let mut line = Vec::with_capacity(4096);
    let mut number: u64 = 0;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("could not read {}", args.file.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.len() > max_line && line.last() != Some(&b'\n') {
            session.reject_line(
                number,
                "line_too_long",
                format!("the line is longer than {max_line} bytes"),
            );
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            continue;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        session.push_line(number, &line).await?;
        if number.is_multiple_of(1000) {
            progress.set_position(number);
            let report = session.report();
            progress.set_message(format!("{} created, {} skipped", report.created, report.skipped));
        }
    }
    let report = session.finish().await?;
    progress.finish_and_clear();

    println!(
        "read {number} lines: {} created, {} updated, {} skipped",
        report.created, report.updated, report.skipped
    );
    for (code, count) in &report.counts_by_code {
        println!("  skipped, {code}: {count}");
    }
    if report.errors_omitted > 0 {
        println!("  (and {} more problems not itemised)", report.errors_omitted);
    }
    for error in report.errors.iter().take(20) {
        println!("  line {}: {}: {}", error.line, error.code, error.detail);
    }
    Ok(ExitCode::SUCCESS)
}

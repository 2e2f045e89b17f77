use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::app::Core;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::storage::EntryFilter;

#[derive(Args)]
pub(super) struct ExportArgs {
    /// Where to write. Default: standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Includes decrypted `sensitive` values. Off by default so that an
    /// export file does not become a copy of every secret.
    #[arg(long)]
    include_sensitive: bool,
}

pub(super) async fn run(args: ExportArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let core = Core::open(config, Arc::new(SystemClock)).await?;
    let operator = core
        .store
        .find_user_by_username(&config.admin_username)
        .await?
        .with_context(|| format!("no user `{}` (ADMIN_USERNAME)", config.admin_username))?;
    let principal = crate::app::accounts::operator_principal(operator.id, &operator.username);

    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(create_private(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut after = None;
    let mut count: u64 = 0;
    loop {
        let page = core
            .registry
            .list_entries(&principal, &EntryFilter::default(), after.as_ref(), 500)
            .await?;
        for item in &page.items {
            let mut line = item.to_import_line();
            if !args.include_sensitive {
                if let Some(object) = line.as_object_mut() {
                    object.remove("sensitive");
                }
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    eprintln!("exported {count} entries");
    Ok(ExitCode::SUCCESS)
}

/// Creates the output file readable by this user only: it may hold every
/// entry, and with `--include-sensitive` every secret.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("could not create {}", path.display()))
}

//! `hyper-registry backup --out FILE`: an online copy of the SQLite database.
//!
//! PostgreSQL deployments back up with `pg_dump`, which this command does
//! not wrap: it exits with a pointer to that procedure instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::Args;

use crate::config::Config;
use crate::storage::sqlite::SqliteStore;

/// The file in DATA_DIR where the last successful backup is recorded, which
/// `check-config` reads.
pub(super) const LAST_BACKUP_FILE: &str = "last-backup.json";

#[derive(Args)]
pub(super) struct BackupArgs {
    /// The file to write. It must not exist. It is created readable by this
    /// user only (mode 0600) because it contains every record.
    #[arg(long)]
    out: PathBuf,
}

pub(super) async fn run(args: BackupArgs, config: &Config) -> anyhow::Result<ExitCode> {
    if !config.uses_sqlite() {
        eprintln!(
            "error: DATABASE_URL names a PostgreSQL database, which this command does not copy. \
             Back it up with pg_dump as described under \"Backups\" in docs/deployment.md, e.g. \
             `pg_dump --format=custom --file=registry.dump \"$DATABASE_URL\"`."
        );
        return Ok(ExitCode::from(2));
    }

    create_private_empty(&args.out)?;
    let store = SqliteStore::connect(config.database_url.expose())
        .await
        .context("could not open the database named by DATABASE_URL")?;
    if let Err(error) = store.backup_into(&args.out).await {
        // The empty file was ours; leave no partial copy behind.
        let _ = std::fs::remove_file(&args.out);
        return Err(error).context("the backup failed");
    }

    record_last_backup(&config.data_dir, &args.out);
    println!("backed up the database to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` empty with mode 0600, failing if anything exists there,
/// so that a backup never replaces a file.
fn create_private_empty(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("{} already exists; choose a new file name", path.display())
        }
        Err(error) => Err(error).with_context(|| format!("could not create {}", path.display())),
    }
}

/// Notes the time and file of this backup for `check-config`. A failure
/// here does not undo the backup, so it is only reported.
fn record_last_backup(data_dir: &Path, out: &Path) {
    let file = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    let record = serde_json::json!({
        "completed_at": Utc::now().to_rfc3339(),
        "file": file.display().to_string(),
    });
    if let Err(error) = std::fs::write(data_dir.join(LAST_BACKUP_FILE), record.to_string()) {
        eprintln!("warning: could not record the backup in DATA_DIR/{LAST_BACKUP_FILE}: {error}");
    }
}

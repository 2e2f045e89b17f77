use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::app::AppState;
use crate::audit::{verify_chain, Severity, Status, GENESIS_HASH, ROTATION_EVENT};
use crate::config::Config;
use crate::storage::audit::AuditQuery;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Checks the hash chain and exits non-zero at the first bad line.
    /// Without FILE it checks AUDIT_LOG_FILE and its rotated files
    /// (AUDIT_LOG_FILE.<timestamp>), oldest first, across file boundaries.
    Verify(VerifyArgs),
    /// Prints the last lines of AUDIT_LOG_FILE, and with --follow new ones
    /// as they are written.
    Tail(TailArgs),
    /// Queries the database copy of the trail, newest first, as JSON Lines.
    Query(QueryArgs),
    /// Records an incident note or a manual security event in the trail.
    Record(RecordArgs),
}

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// The file to check. Default: AUDIT_LOG_FILE and its rotated files.
    pub file: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct TailArgs {
    /// How many of the last lines to print.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    /// Keep printing lines as they are appended (checked every 500 ms).
    #[arg(short, long)]
    follow: bool,
}

#[derive(Args)]
pub(super) struct QueryArgs {
    /// This severity and above: info, low, medium, high or critical.
    #[arg(long)]
    severity: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    /// E.g. `POST /api/v1/entries` or `login_failed`.
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    event_type: Option<String>,
    /// success, failed or denied.
    #[arg(long)]
    status: Option<String>,
    /// RFC 3339 time, inclusive.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 time, exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Maximum number of events to print.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(Args)]
pub(super) struct RecordArgs {
    /// E.g. `incident_note` or `api_key_compromised`.
    #[arg(long)]
    event_type: String,
    /// info, low, medium, high or critical.
    #[arg(long)]
    severity: String,
    #[arg(long)]
    description: String,
    /// The user the event is about, if any.
    #[arg(long)]
    user_id: Option<String>,
}

/// Reads every line of a file.
fn read_lines(path: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(path).map_err(|error| format!("could not open {}: {error}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .collect::<Result<Vec<String>, _>>()
        .map_err(|error| format!("could not read {}: {error}", path.display()))
}

/// Returns the hash a file's chain starts from: the genesis hash, or for a
/// file that begins with a rotation event, the hash that event continues.
fn start_hash(lines: &[String]) -> String {
    let first = lines
        .first()
        .and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok());
    match first {
        // The action too: a manual event cannot have it, whatever its type.
        Some(value)
            if value.get("event_type").and_then(|v| v.as_str()) == Some(ROTATION_EVENT)
                && value.get("action").and_then(|v| v.as_str()) == Some(ROTATION_EVENT) =>
        {
            value
                .get("prev_hash")
                .and_then(|v| v.as_str())
                .unwrap_or(GENESIS_HASH)
                .to_string()
        }
        _ => GENESIS_HASH.to_string(),
    }
}

pub(super) fn verify(args: &VerifyArgs, config: Option<&Config>) -> ExitCode {
    let files = match (&args.file, config) {
        (Some(file), _) => vec![file.clone()],
        (None, Some(config)) => {
            let mut files = crate::audit::rotated_files(&config.audit_log_file).unwrap_or_default();
            files.push(config.audit_log_file.clone());
            files
        }
        (None, None) => {
            eprintln!("error: no file given and AUDIT_LOG_FILE could not be read");
            return ExitCode::from(2);
        }
    };

    let mut previous: Option<String> = None;
    let mut total = 0;
    for path in &files {
        let lines = match read_lines(path) {
            Ok(lines) => lines,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(2);
            }
        };
        // The first file may continue a rotated file that is no longer
        // here; every later one must continue the file before it.
        let start = previous.clone().unwrap_or_else(|| start_hash(&lines));
        match verify_chain(lines.iter().map(String::as_str), &start) {
            Ok((count, last)) => {
                total += count;
                previous = Some(last);
            }
            Err(error) => {
                println!("{}: chain broken at {error}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let names: Vec<String> = files.iter().map(|path| path.display().to_string()).collect();
    println!("{}: {total} events, hash chain intact", names.join(", "));
    ExitCode::SUCCESS
}

pub(super) async fn run(command: AuditCommand, config: &Config) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify(args) => Ok(verify(&args, Some(config))),
        AuditCommand::Tail(args) => tail(&args, &config.audit_log_file).await,
        AuditCommand::Query(args) => {
            let (state, pipeline) = AppState::build_for_cli(config.clone()).await?;
            let result = query(&args, &state).await;
            drop(state);
            pipeline.finish().await;
            result
        }
        AuditCommand::Record(args) => {
            let (state, pipeline) = AppState::build_for_cli(config.clone()).await?;
            let result = record(&args, &state).await;
            drop(state);
            pipeline.finish().await;
            result
        }
    }
}

async fn tail(args: &TailArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let lines = read_lines(path).map_err(anyhow::Error::msg)?;
    for line in lines.iter().skip(lines.len().saturating_sub(args.lines)) {
        println!("{line}");
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut position = std::fs::metadata(path)?.len();
    let mut partial = String::new();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let length = match std::fs::metadata(path) {
            Ok(metadata) => metadata.len(),
            Err(_) => continue,
        };
        // A rotation starts a new, shorter file: read it from the start.
        if length < position {
            position = 0;
        }
        if length == position {
            continue;
        }
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(position))?;
        let mut chunk = String::new();
        file.read_to_string(&mut chunk)?;
        position += chunk.len() as u64;
        partial.push_str(&chunk);
        while let Some(end) = partial.find('\n') {
            println!("{}", &partial[..end]);
            partial.drain(..=end);
        }
    }
}

fn parse_time(name: &str, raw: Option<&String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    raw.map(|raw| {
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|time| time.with_timezone(&chrono::Utc))
            .map_err(|_| anyhow::anyhow!("--{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z"))
    })
    .transpose()
}

async fn query(args: &QueryArgs, state: &AppState) -> anyhow::Result<ExitCode> {
    let min_severity = match &args.severity {
        None => None,
        Some(raw) => Some(
            Severity::parse(raw)
                .ok_or_else(|| anyhow::anyhow!("--severity must be info, low, medium, high or critical"))?,
        ),
    };
    let status = match &args.status {
        None => None,
        Some(raw) => {
            Some(Status::parse(raw).ok_or_else(|| anyhow::anyhow!("--status must be success, failed or denied"))?)
        }
    };
    let filters = AuditQuery {
        min_severity,
        user_id: args.user_id.clone(),
        action: args.action.clone(),
        event_type: args.event_type.clone(),
        status,
        since: parse_time("since", args.since.as_ref())?,
        until: parse_time("until", args.until.as_ref())?,
        before_seq: None,
        limit: args.limit.clamp(1, 10_000),
    };
    for stored in state.store.query_audit_events(&filters).await? {
        println!("{}", serde_json::to_string(&stored.event)?);
    }
    Ok(ExitCode::SUCCESS)
}

async fn record(args: &RecordArgs, state: &AppState) -> anyhow::Result<ExitCode> {
    let severity = Severity::parse(&args.severity)
        .ok_or_else(|| anyhow::anyhow!("--severity must be info, low, medium, high or critical"))?;
    crate::audit::check_manual_event(&args.event_type, &args.description, args.user_id.as_deref())
        .map_err(anyhow::Error::msg)?;
    let event = crate::audit::AuditEvent::new(
        state.clock.now(),
        &args.event_type,
        "manual_event",
        Status::Success,
        severity,
    )
    .user(args.user_id.clone(), None)
    .description(format!("{} (recorded on the command line)", args.description));
    state
        .audit
        .record_durable(event)
        .await
        .map_err(|_| anyhow::anyhow!("the audit log could not be written; check AUDIT_LOG_FILE"))?;
    println!("recorded");
    Ok(ExitCode::SUCCESS)
}

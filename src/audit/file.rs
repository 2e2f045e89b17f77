//! The audit file on disk: opening, identity checks and rotation.
//!
//! A rotated file is renamed to `<AUDIT_LOG_FILE>.<UTC timestamp>`. The new
//! file starts with an `audit_log_rotated` event whose `prev_hash` is the
//! last hash of the rotated file, so the chain runs across files. A file
//! whose head was cut off is still detectable, because its first line is
//! then neither that event nor the start of the chain.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::format::{line_hash, GENESIS_HASH};

/// The event type that starts every file after the first.
pub const ROTATION_EVENT: &str = "audit_log_rotated";

pub(super) fn open_for_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Device and inode of a file, to notice when the path no longer names the
/// file this process writes to.
pub(super) type Identity = (u64, u64);

#[cfg(unix)]
pub(super) fn identity(metadata: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    (metadata.dev(), metadata.ino())
}

#[cfg(not(unix))]
pub(super) fn identity(metadata: &std::fs::Metadata) -> Identity {
    (0, metadata.len())
}

/// Reads the hash of the last line, or the genesis hash for a new file.
pub(super) fn read_last_hash(path: &Path) -> io::Result<String> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(GENESIS_HASH.to_string()),
        Err(error) => return Err(error),
    };
    last_hash_of(file)
}

pub(super) fn last_hash_of(mut file: File) -> io::Result<String> {
    let length = file.metadata()?.len();
    let tail_length = length.min(256 * 1024);
    file.seek(SeekFrom::Start(length - tail_length))?;
    let mut tail = Vec::with_capacity(tail_length as usize);
    file.read_to_end(&mut tail)?;
    // Work on bytes: the window may start inside a multi-byte character of
    // an earlier line, and only the last line needs to be text.
    let last_line = tail
        .split(|&byte| byte == b'\n')
        .rev()
        .find(|line| !line.iter().all(u8::is_ascii_whitespace));
    match last_line {
        None => Ok(GENESIS_HASH.to_string()),
        Some(line) => std::str::from_utf8(line).ok().and_then(line_hash).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the audit log's last line has no hash; it is not a Hyper Registry audit log",
            )
        }),
    }
}

/// Cuts a partial last line left by a write that failed midway (a full
/// disk), so the file again ends with a whole, hashed line.
pub(super) fn trim_partial_line(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(());
    }
    let tail_length = length.min(256 * 1024);
    file.seek(SeekFrom::Start(length - tail_length))?;
    let mut tail = Vec::with_capacity(tail_length as usize);
    file.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(position) => length - tail_length + position as u64 + 1,
        None if tail_length == length => 0,
        None => return Err(io::Error::other("the audit log ends with an overlong partial line")),
    };
    file.set_len(keep)?;
    file.sync_data()
}

/// Returns whether the file at `path` is a rotation successor of a file
/// that ended with `last_hash`: its first line is a rotation event chained
/// to that hash.
pub(super) fn continues_from(path: &Path, last_hash: &str) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let mut first = String::new();
    if BufReader::new(file).read_line(&mut first).is_err() {
        return false;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(first.trim_end()) else {
        return false;
    };
    value.get("event_type").and_then(|v| v.as_str()) == Some(ROTATION_EVENT)
        && value.get("action").and_then(|v| v.as_str()) == Some(ROTATION_EVENT)
        && value.get("prev_hash").and_then(|v| v.as_str()) == Some(last_hash)
}

/// Returns the name a file gets when it is rotated away.
pub(super) fn rotated_name(path: &Path, now: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{}", now.format("%Y%m%dT%H%M%S%.6fZ")));
    PathBuf::from(name)
}

/// Lists the rotated files of `path`, oldest first (their names sort by time).
///
/// # Errors
/// When the directory cannot be read.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let directory = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_path_buf(),
        None => PathBuf::from("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|name| {
                name.strip_prefix(&prefix)
                    .is_some_and(|stamp| stamp.ends_with('Z') && stamp.starts_with(|c: char| c.is_ascii_digit()))
            })
        })
        .map(|entry| entry.path())
        .collect();
    files.sort();
    Ok(files)
}

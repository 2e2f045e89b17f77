//! Line format and hash chain.
//!
//! A line is the event's JSON with `", "` and `": "` separators (so that
//! `grep '"severity": "critical"'` works), ending in `, "prev_hash": …,
//! "hash": …}`. `hash` is the SHA-256 of the line up to (not including)
//! `, "hash"`, closed with `}`; `prev_hash` is the hash of the line before
//! (64 zeros for the first line), so removing, editing or reordering lines
//! breaks the chain.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

use super::AuditEvent;
use crate::crypto::sha256_hex;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_MARKER: &str = ", \"hash\": \"";

/// serde_json's compact output with a space after `:` and `,`.
struct SpacedFormatter;

impl Formatter for SpacedFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[derive(Serialize)]
struct Chained<'a> {
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev_hash: &'a str,
}

/// Renders `event` as a chained line (without the newline); returns the line
/// and its hash.
pub fn render_line(event: &AuditEvent, prev_hash: &str) -> (String, String) {
    let mut buffer = Vec::with_capacity(512);
    let mut serializer = serde_json::Serializer::with_formatter(&mut buffer, SpacedFormatter);
    // Plain strings, numbers and enums always serialise.
    let _ = Chained { event, prev_hash }.serialize(&mut serializer);
    let body = String::from_utf8_lossy(&buffer).into_owned();
    let hash = sha256_hex(body.as_bytes());
    let open = body.strip_suffix('}').unwrap_or(&body);
    (format!("{open}{HASH_MARKER}{hash}\"}}"), hash)
}

/// Where and why a chain check failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct ChainError {
    pub line: usize,
    pub problem: String,
}

/// Splits a line into its hashed body and the recorded hash.
fn split_line(line: &str) -> Option<(String, &str)> {
    let position = line.rfind(HASH_MARKER)?;
    let hash = line[position + HASH_MARKER.len()..].strip_suffix("\"}")?;
    Some((format!("{}}}", &line[..position]), hash))
}

/// Returns the hash that a line records, for continuing a chain after restart.
pub fn line_hash(line: &str) -> Option<String> {
    split_line(line).map(|(_, hash)| hash.to_string())
}

/// Checks every line of a trail, starting from `start_hash`; returns the
/// number of lines and the last hash.
///
/// # Errors
/// The first line that is malformed, altered, or out of sequence.
pub fn verify_chain<'a>(lines: impl Iterator<Item = &'a str>, start_hash: &str) -> Result<(usize, String), ChainError> {
    let mut previous = start_hash.to_string();
    let mut count = 0;
    for (index, line) in lines.enumerate() {
        let number = index + 1;
        let problem = |problem: &str| ChainError {
            line: number,
            problem: problem.to_string(),
        };
        if line.is_empty() {
            return Err(problem("empty line"));
        }
        let (body, recorded) = split_line(line).ok_or_else(|| problem("no hash field"))?;
        if sha256_hex(body.as_bytes()) != recorded {
            return Err(problem("content does not match its hash (edited line)"));
        }
        let value: serde_json::Value = serde_json::from_str(&body).map_err(|_| problem("not valid JSON"))?;
        if value.get("prev_hash").and_then(|v| v.as_str()) != Some(previous.as_str()) {
            return Err(problem(
                "prev_hash does not match the line before (line removed, inserted or reordered)",
            ));
        }
        previous = recorded.to_string();
        count = number;
    }
    Ok((count, previous))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Severity, Status};

    fn chain(count: usize) -> Vec<String> {
        let mut previous = GENESIS_HASH.to_string();
        (0..count)
            .map(|i| {
                let event = AuditEvent::new(
                    chrono::Utc::now(),
                    "access",
                    "GET /health",
                    Status::Success,
                    Severity::Info,
                )
                .description(format!("event {i}"));
                let (line, hash) = render_line(&event, &previous);
                previous = hash;
                line
            })
            .collect()
    }

    #[test]
    fn line_uses_spaced_separators() {
        let line = &chain(1)[0];
        assert!(line.contains("\"severity\": \"info\""), "{line}");
        assert!(line.contains("\", \"event_id\": \""), "{line}");
    }

    #[test]
    fn intact_chain_verifies() {
        let lines = chain(5);
        let (count, _) = verify_chain(lines.iter().map(String::as_str), GENESIS_HASH).unwrap();
        assert_eq!(count, 5);
    }

    #[test]
    fn edited_line_detected() {
        let mut lines = chain(3);
        lines[1] = lines[1].replace("event 1", "event X");
        let error = verify_chain(lines.iter().map(String::as_str), GENESIS_HASH).unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn removed_line_detected() {
        let mut lines = chain(4);
        lines.remove(2);
        let error = verify_chain(lines.iter().map(String::as_str), GENESIS_HASH).unwrap_err();
        assert_eq!(error.line, 3);
    }

    #[test]
    fn reordered_lines_detected() {
        let mut lines = chain(3);
        lines.swap(0, 1);
        let error = verify_chain(lines.iter().map(String::as_str), GENESIS_HASH).unwrap_err();
        assert_eq!(error.line, 1);
    }
}

//! Bulk import of JSON Lines, one entry per line, in batched transactions.
//! A bad line is reported and skipped; it never stops the others.

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::entry::EntryInput;
use super::service::{Registry, RegistryResult};
use crate::storage::{ImportOutcome, ImportPolicy, StoredEntry};

/// Entries written per transaction.
pub const IMPORT_BATCH_SIZE: usize = 500;

/// Created or updated entries from which an import refreshes the planner's
/// statistics when it ends.
const STATISTICS_REFRESH_THRESHOLD: u64 = 1000;
/// Problems listed in a report; further ones are only counted.
const MAX_LISTED_ERRORS: usize = 1000;

/// A line that was not imported, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ImportError {
    pub line: u64,
    pub code: &'static str,
    pub detail: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub errors: Vec<ImportError>,
    /// Problems beyond the first 1000, counted but not listed.
    pub errors_omitted: u64,
    /// Every problem counted by its code, listed or not.
    #[serde(skip)]
    pub counts_by_code: std::collections::BTreeMap<&'static str, u64>,
}

impl ImportReport {
    fn note(&mut self, error: ImportError) {
        *self.counts_by_code.entry(error.code).or_insert(0) += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(error);
        } else {
            self.errors_omitted += 1;
        }
    }
}

/// An import in progress: feed it lines, then [`ImportSession::finish`].
pub struct ImportSession {
    registry: Registry,
    owner: Uuid,
    policy: ImportPolicy,
    batch: Vec<(u64, StoredEntry)>,
    report: ImportReport,
}

impl Registry {
    /// Starts an import whose new entries belong to `owner`. With
    /// `update_existing`, existing entries are updated where `owner` owns
    /// them or `may_update_any` is set; otherwise they are skipped.
    pub fn start_import(&self, owner: Uuid, update_existing: bool, may_update_any: bool) -> ImportSession {
        let policy = if update_existing {
            ImportPolicy::Update {
                importer: owner,
                may_update_any,
            }
        } else {
            ImportPolicy::Skip
        };
        ImportSession {
            registry: self.clone(),
            owner,
            policy,
            batch: Vec::with_capacity(IMPORT_BATCH_SIZE),
            report: ImportReport::default(),
        }
    }
}

/// Parses and validates one import line. A rejected line yields the report
/// code (`invalid_utf8`, `invalid_json` or `invalid_entry`) and its detail.
pub(crate) fn parse_line(line: &[u8]) -> Result<EntryInput, (&'static str, String)> {
    let text = std::str::from_utf8(line).map_err(|_| ("invalid_utf8", "the line is not valid UTF-8".to_string()))?;
    // serde_json stops at 128 levels of nesting, so a hostile line cannot
    // exhaust the stack.
    let value: Value = serde_json::from_str(text).map_err(|error| {
        let detail = error.to_string();
        let detail = detail.split(" at line ").next().unwrap_or(&detail).to_string();
        ("invalid_json", detail)
    })?;
    EntryInput::from_value(value).map_err(|errors| {
        let detail = errors
            .iter()
            .map(|error| format!("{}: {}", error.field, error.message))
            .collect::<Vec<_>>()
            .join("; ");
        ("invalid_entry", detail)
    })
}

impl ImportSession {
    /// Parses one line (numbered from 1) and queues it; writes a batch when full.
    ///
    /// # Errors
    /// Only storage failures; bad lines are recorded in the report.
    pub async fn push_line(&mut self, number: u64, line: &[u8]) -> RegistryResult<()> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match self.parse(line) {
            Ok(entry) => self.batch.push((number, entry)),
            Err((code, detail)) => {
                self.report.skipped += 1;
                self.report.note(ImportError {
                    line: number,
                    code,
                    detail,
                });
            }
        }
        if self.batch.len() >= IMPORT_BATCH_SIZE {
            self.flush().await?;
        }
        Ok(())
    }

    /// Records a line that was too long to read, without parsing it.
    pub fn reject_line(&mut self, number: u64, code: &'static str, detail: String) {
        self.report.skipped += 1;
        self.report.note(ImportError {
            line: number,
            code,
            detail,
        });
    }

    fn parse(&self, line: &[u8]) -> Result<StoredEntry, (&'static str, String)> {
        let input = parse_line(line)?;
        let mut entry = self.registry.blank_entry(self.owner);
        let sensitive = self.registry.encrypt_sensitive(entry.id, &input);
        input.apply_to(&mut entry, sensitive);
        Ok(entry)
    }

    async fn flush(&mut self) -> RegistryResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let entries: Vec<StoredEntry> = self.batch.iter().map(|(_, entry)| entry.clone()).collect();
        let _evict = matches!(self.policy, ImportPolicy::Update { .. }).then(|| self.registry.evict_all_after());
        let outcomes = self.registry.store.import_entries(&entries, self.policy).await?;
        for ((number, entry), outcome) in self.batch.drain(..).zip(outcomes) {
            match outcome {
                ImportOutcome::Created => self.report.created += 1,
                ImportOutcome::Updated => self.report.updated += 1,
                ImportOutcome::SkippedExisting => {
                    self.report.skipped += 1;
                    self.report.note(ImportError {
                        line: number,
                        code: "already_exists",
                        detail: format!("{}/{} already exists", entry.category, entry.name),
                    });
                }
                ImportOutcome::SkippedNotOwner => {
                    self.report.skipped += 1;
                    self.report.note(ImportError {
                        line: number,
                        code: "not_owner",
                        detail: format!("{}/{} belongs to another user", entry.category, entry.name),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the last batch and returns the report.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn finish(mut self) -> RegistryResult<ImportReport> {
        self.flush().await?;
        if self.report.created + self.report.updated >= STATISTICS_REFRESH_THRESHOLD {
            // The import itself succeeded, so a failure here only costs speed.
            if let Err(error) = self.registry.store.refresh_entry_statistics().await {
                tracing::warn!(%error, "could not refresh the planner statistics after an import");
            }
        }
        Ok(self.report)
    }

    /// The report so far (for progress display).
    pub fn report(&self) -> &ImportReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_line_keeps_numbers_exact() {
        let line = br#"{"name":"x","category":"c","metadata":{"n":23.0e50,"m":0.1}}"#;
        let input = parse_line(line).unwrap();
        let metadata = input.metadata.clone().unwrap();
        assert_eq!(metadata["n"].as_f64(), Some(2.3e51));
        assert_eq!(metadata["m"].as_f64(), Some(0.1));

        let written = serde_json::to_vec(&input).unwrap();
        assert_eq!(parse_line(&written).unwrap(), input);
    }

    #[test]
    fn import_line_rejections_have_codes() {
        let cases: [(&[u8], &str); 4] = [
            (b"{\"name\":\"\xff\",\"category\":\"c\"}", "invalid_utf8"),
            (b"{\"name\":", "invalid_json"),
            (b"[1,2]", "invalid_entry"),
            (b"{\"id\":\"1\",\"name\":\"x\",\"category\":\"c\"}", "invalid_entry"),
        ];
        for (line, expected) in cases {
            let (code, detail) = parse_line(line).unwrap_err();
            assert_eq!(code, expected, "{}", String::from_utf8_lossy(line));
            assert!(!detail.contains(" at line "), "{detail}");
        }
    }
}

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::file::{self, Identity, ROTATION_EVENT};
use super::format::render_line;
use super::{AuditEvent, ChainedEvent, Severity, Status};
use crate::metrics::Metrics;

/// Events waiting for the writer; senders wait when it is full.
pub(super) const CHANNEL_CAPACITY: usize = 8192;
/// Most events written between two flushes.
const MAX_BATCH: usize = 512;
/// Unwritten events kept while the file cannot be written; beyond this the
/// oldest are dropped (and counted), since memory is finite too.
const MAX_PENDING: usize = 100_000;
/// How long the writer waits for more access events before it writes a
/// batch that is not full. Under load, events arrive one at a time and
/// faster than the thread wakes up, so a short wait turns many small writes
/// (and as many wake-ups) into one. Security events are written at once.
const LINGER: Duration = Duration::from_millis(2);
/// How often the writer looks for new events while it waits.
const LINGER_STEP: Duration = Duration::from_micros(250);
/// How often an unhealthy writer retries without new events.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

enum Command {
    Write {
        event: Box<AuditEvent>,
        /// Present for security events: completed once the line is on disk.
        durable: Option<oneshot::Sender<bool>>,
    },
    /// Flush, sync and stop; events queued before it are written first.
    Shutdown,
}

/// Report of the writer to the rest of the pipeline after each batch.
pub(super) enum Report {
    /// Lines now in the file, in order.
    Written(Vec<ChainedEvent>),
    /// The file could not be written (the first failure of an outage).
    Failed(String),
    /// Writes succeed again after a failure.
    Recovered,
}

/// The audit log could not record an event durably.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is not writable")]
pub struct AuditUnavailable;

/// Options of the writer thread.
pub(super) struct WriterOptions {
    /// Rotate once the file reaches this size; `None` for one-shot CLI
    /// writers, which leave rotation to the server.
    pub max_file_bytes: Option<u64>,
    pub reports: Option<mpsc::Sender<Report>>,
    pub metrics: Arc<Metrics>,
}

/// Handle to the audit writer. Cloning is cheap; the writer thread stops
/// once every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<Command>,
    healthy: Arc<AtomicBool>,
}

impl AuditLog {
    /// Opens (creating if needed) the trail and starts the writer thread,
    /// continuing the hash chain from the file's last line.
    ///
    /// # Errors
    /// Fails when the file cannot be opened or its last line is not ours.
    pub(super) fn open(path: &Path, options: WriterOptions) -> io::Result<(AuditLog, std::thread::JoinHandle<()>)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let last_hash = file::read_last_hash(path)?;
        let opened = file::open_for_append(path)?;
        let identity = file::identity(&opened.metadata()?);
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            path: path.to_path_buf(),
            file: Some(BufWriter::new(opened)),
            identity,
            last_hash,
            expected_length: None,
            healthy: healthy.clone(),
            pending: VecDeque::new(),
            needs_repair: false,
            options,
        };
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))?;
        Ok((AuditLog { sender, healthy }, handle))
    }

    /// Queues an access event, waiting while the queue is full.
    pub async fn record(&self, event: AuditEvent) {
        let command = Command::Write {
            event: Box::new(event),
            durable: None,
        };
        if self.sender.send(command).await.is_err() {
            tracing::error!("audit writer has stopped; event not recorded");
        }
    }

    /// Records a security event and waits until it is on disk.
    ///
    /// # Errors
    /// [`AuditUnavailable`] when the line could not be written and synced.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditUnavailable> {
        let (done, wait) = oneshot::channel();
        let command = Command::Write {
            event: Box::new(event),
            durable: Some(done),
        };
        self.sender.send(command).await.map_err(|_| AuditUnavailable)?;
        match wait.await {
            Ok(true) => Ok(()),
            _ => Err(AuditUnavailable),
        }
    }

    /// Asks the writer to write everything queued so far, sync and stop.
    /// Join its thread afterwards to wait for that.
    pub async fn shutdown(&self) {
        let _ = self.sender.send(Command::Shutdown).await;
    }

    /// Returns whether the last write succeeded; state-changing requests are refused
    /// while it is false.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Events queued and not yet taken by the writer.
    pub fn queue_depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

struct Writer {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Device and inode of `file`, to notice deletion or replacement of the path.
    identity: Identity,
    last_hash: String,
    /// The file's length after this writer's last flush. A different length
    /// means another process (a CLI command) appended, so the chain continues
    /// from the file's real last line instead.
    expected_length: Option<u64>,
    healthy: Arc<AtomicBool>,
    /// Events not yet written because the file could not be; written first
    /// once it can be.
    pending: VecDeque<Box<AuditEvent>>,
    /// Set after a failed write, which may have left a partial line.
    needs_repair: bool,
    options: WriterOptions,
}

impl Command {
    /// True for an access event, whose writing may wait for a fuller batch.
    fn may_wait(&self) -> bool {
        matches!(self, Command::Write { durable: None, .. })
    }
}

/// Moves queued commands into `batch` until it is full or the queue empty.
fn take_queued(receiver: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>) {
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(command) => batch.push(command),
            Err(_) => break,
        }
    }
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut stopping = false;
        while !stopping {
            let first = if self.pending.is_empty() {
                match receiver.blocking_recv() {
                    Some(command) => Some(command),
                    None => break,
                }
            } else {
                // Retry the unwritten events regularly even without new ones,
                // so service resumes by itself.
                std::thread::sleep(RETRY_INTERVAL);
                match receiver.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        stopping = true;
                        None
                    }
                }
            };
            // Group commit: take whatever else is queued, write it all, then
            // flush (and sync once if any event is a security event).
            let mut batch: Vec<Command> = first.into_iter().collect();
            take_queued(&mut receiver, &mut batch);
            let linger_until = Instant::now() + LINGER;
            while !batch.is_empty()
                && batch.len() < MAX_BATCH
                && batch.iter().all(Command::may_wait)
                && Instant::now() < linger_until
            {
                // Short steps, so that a security event or a shutdown that
                // arrives meanwhile ends the wait.
                std::thread::sleep(LINGER_STEP);
                take_queued(&mut receiver, &mut batch);
            }
            if let Some(position) = batch.iter().position(|command| matches!(command, Command::Shutdown)) {
                batch.truncate(position);
                stopping = true;
            }
            self.write_batch(batch);
        }
        if let Some(file) = self.file.as_mut() {
            let _ = file.flush();
            let _ = file.get_ref().sync_data();
        }
        if !self.pending.is_empty() {
            tracing::error!(
                events = self.pending.len(),
                "audit writer stopped with events that could not be written"
            );
        }
    }

    fn write_batch(&mut self, batch: Vec<Command>) {
        let mut acknowledgements = Vec::new();
        let mut needs_sync = false;
        for command in batch {
            let Command::Write { event, durable } = command else {
                continue;
            };
            if let Some(done) = durable {
                needs_sync = true;
                acknowledgements.push(done);
            }
            self.pending.push_back(event);
        }
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
            self.options.metrics.audit_events_lost.inc();
        }

        let mut written = Vec::with_capacity(self.pending.len());
        let result = self.write_pending(&mut written, needs_sync);
        if let Some(file) = self.file.as_ref() {
            let _ = file.get_ref().unlock();
        }

        let ok = result.is_ok();
        let was_healthy = self.healthy.swap(ok, Ordering::Relaxed);
        if let Err(error) = &result {
            self.options.metrics.audit_write_failures.inc();
            // The events stay in `pending` and are retried in order.
            if was_healthy {
                tracing::error!(error = %error, path = %self.path.display(), "audit log write failed");
                self.report(Report::Failed(error.to_string()));
            }
        } else {
            self.options.metrics.audit_events_written.inc_by(written.len() as u64);
            if !was_healthy {
                tracing::warn!(path = %self.path.display(), "audit log writable again");
                self.report(Report::Recovered);
            }
            if !written.is_empty() {
                self.report(Report::Written(written));
            }
        }
        for done in acknowledgements {
            let _ = done.send(ok);
        }
        if ok {
            self.rotate_if_due();
        }
    }

    /// Writes every pending event and flushes; on success `pending` is empty
    /// and `written` contains the lines. On failure nothing is removed from
    /// `pending`, and the chain restarts from the file's real last line.
    fn write_pending(&mut self, written: &mut Vec<ChainedEvent>, sync: bool) -> io::Result<()> {
        self.ensure_open()?;
        self.lock_and_catch_up()?;
        let pending = std::mem::take(&mut self.pending);
        let mut hash = self.last_hash.clone();
        let mut hashes = Vec::with_capacity(pending.len());
        let mut outcome = Ok(());
        for event in &pending {
            let (line, next) = render_line(event, &hash);
            outcome = self.append(&line);
            if outcome.is_err() {
                break;
            }
            hashes.push((std::mem::replace(&mut hash, next.clone()), next));
        }
        if outcome.is_ok() {
            outcome = self.flush(sync);
        }
        match outcome {
            Ok(()) => {
                // Every event is in the file: move them on with their hashes.
                written.extend(
                    pending
                        .into_iter()
                        .zip(hashes)
                        .map(|(event, (prev_hash, hash))| ChainedEvent {
                            event: *event,
                            prev_hash,
                            hash,
                        }),
                );
                self.last_hash = hash;
                if let Some(file) = self.file.as_ref() {
                    self.expected_length = file.get_ref().metadata().ok().map(|m| m.len());
                }
                Ok(())
            }
            Err(error) => {
                written.clear();
                self.pending = pending;
                // Part of the batch may have reached the file; drop the
                // handle so the next attempt re-reads the real last line.
                // Discard what is still buffered: dropping a BufWriter would
                // try to write it again, after the lines are re-queued.
                if let Some(writer) = self.file.take() {
                    let (file, _unwritten) = writer.into_parts();
                    let _ = file.unlock();
                }
                self.expected_length = None;
                self.needs_repair = true;
                Err(error)
            }
        }
    }

    /// Takes the file's exclusive lock (held until the batch is flushed), so
    /// a CLI command and the server never interleave lines, and re-reads the
    /// last hash when someone else appended since this writer's last batch.
    fn lock_and_catch_up(&mut self) -> io::Result<()> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("audit log not open"))?;
        file.get_ref().lock()?;
        let on_disk = std::fs::metadata(&self.path).map(|m| file::identity(&m)).ok();
        if on_disk != Some(self.identity) {
            // Deleted, replaced or rotated by another process since the
            // last batch: reopen, which checks that the chain continues from
            // the last hash this writer wrote.
            let _ = file.get_ref().unlock();
            self.file = None;
            self.ensure_open()?;
            return self.lock_and_catch_up();
        }
        let length = file.get_ref().metadata()?.len();
        if self.expected_length != Some(length) {
            self.last_hash = file::last_hash_of(File::open(&self.path)?)?;
        }
        Ok(())
    }

    /// Reopens the file at the path, but only if it is the file this
    /// writer's chain lives in, or a rotation successor of it. A file that
    /// was deleted or replaced is never written to (nor created again), so
    /// the trail cannot be silently restarted. Restoring the file resumes it.
    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let replaced = || io::Error::other("the audit log file was deleted or replaced; restore it to resume writing");
        let opened = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|error| {
                if error.kind() == io::ErrorKind::NotFound {
                    replaced()
                } else {
                    error
                }
            })?;
        let identity = file::identity(&opened.metadata()?);
        if identity != self.identity {
            if !file::continues_from(&self.path, &self.last_hash) {
                return Err(replaced());
            }
            // Another process rotated the file: continue in the new one.
            self.identity = identity;
            self.expected_length = None;
        }
        if self.needs_repair {
            file::trim_partial_line(&self.path)?;
            self.needs_repair = false;
        }
        self.file = Some(BufWriter::new(opened));
        Ok(())
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("audit log not open"))?;
        file.write_all(line.as_bytes())?;
        file.write_all(b"\n")
    }

    fn flush(&mut self, sync: bool) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("audit log not open"))?;
        file.flush()?;
        if sync {
            let started = Instant::now();
            file.get_ref().sync_data()?;
            self.options
                .metrics
                .audit_fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn report(&self, report: Report) {
        if let Some(reports) = &self.options.reports {
            if reports.try_send(report).is_err() {
                self.options.metrics.audit_sink_dropped.inc();
            }
        }
    }

    /// Renames a full file away and starts the next one with a rotation
    /// event chained to the old file's last line.
    fn rotate_if_due(&mut self) {
        let Some(limit) = self.options.max_file_bytes else {
            return;
        };
        if self.expected_length.is_none_or(|length| length < limit) {
            return;
        }
        if let Err(error) = self.rotate() {
            tracing::error!(error = %error, path = %self.path.display(), "audit log rotation failed; will retry");
        }
    }

    fn rotate(&mut self) -> io::Result<()> {
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| io::Error::other("audit log not open"))?;
        file.get_ref().lock()?;
        let now = chrono::Utc::now();
        let rotated = file::rotated_name(&self.path, now);
        std::fs::rename(&self.path, &rotated)?;
        let rotated_name = rotated
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let old = self.file.take();

        let mut event = AuditEvent::new(now, ROTATION_EVENT, ROTATION_EVENT, Status::Success, Severity::Info);
        event.description = format!("continues the trail from {rotated_name}");
        self.pending.push_front(Box::new(event));
        let created = file::open_for_append(&self.path)?;
        self.identity = file::identity(&created.metadata()?);
        self.file = Some(BufWriter::new(created));
        // A new, empty file: the chain continues from the rotated one.
        self.expected_length = Some(0);
        // Hold the new file's lock before the old one's is released, so no
        // other writer slips a line in ahead of the rotation event.
        let mut written = Vec::new();
        let result = self.write_pending(&mut written, true);
        if let Some(file) = self.file.as_ref() {
            let _ = file.get_ref().unlock();
        }
        if let Some(old) = old {
            let _ = old.get_ref().unlock();
        }
        result?;
        tracing::info!(rotated = %rotated.display(), "audit log rotated");
        self.report(Report::Written(written));
        Ok(())
    }
}

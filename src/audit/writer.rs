use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::format::{line_hash, render_line, GENESIS_HASH};
use super::AuditEvent;

/// Events waiting for the writer; senders wait when it is full.
const CHANNEL_CAPACITY: usize = 8192;
/// Most events written between two flushes.
const MAX_BATCH: usize = 512;

enum Command {
    Write {
        event: Box<AuditEvent>,
        /// Present for security events: completed once the line is on disk.
        durable: Option<oneshot::Sender<bool>>,
    },
    /// Flush, sync and stop; events queued before it are written first.
    Shutdown,
}

/// The audit log could not record an event durably.
#[derive(Debug, thiserror::Error)]
#[error("the audit log is not writable")]
pub struct AuditUnavailable;

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
    pub fn open(path: &Path) -> io::Result<(AuditLog, std::thread::JoinHandle<()>)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let last_hash = read_last_hash(path)?;
        let file = open_for_append(path)?;
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let healthy = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            path: path.to_path_buf(),
            file: Some(BufWriter::new(file)),
            last_hash,
            expected_length: None,
            healthy: healthy.clone(),
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
}

fn open_for_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Reads the hash of the last line, or the genesis hash for a new file.
fn read_last_hash(path: &Path) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(GENESIS_HASH.to_string()),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let tail_length = length.min(256 * 1024);
    file.seek(SeekFrom::Start(length - tail_length))?;
    let mut tail = String::new();
    file.read_to_string(&mut tail)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the audit log's last line is not UTF-8"))?;
    match tail.lines().rev().find(|line| !line.trim().is_empty()) {
        None => Ok(GENESIS_HASH.to_string()),
        Some(line) => line_hash(line).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the audit log's last line has no hash; it is not a Hyper Registry audit log",
            )
        }),
    }
}

struct Writer {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    last_hash: String,
    /// The file's length after this writer's last flush. A different length
    /// means another process (a CLI command) appended, so the chain continues
    /// from the file's real last line instead.
    expected_length: Option<u64>,
    healthy: Arc<AtomicBool>,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut stopping = false;
        while !stopping {
            let Some(first) = receiver.blocking_recv() else {
                break;
            };
            // Group commit: take whatever else is queued, write it all, then
            // flush (and sync once if any event is a security event).
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
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
    }

    fn write_batch(&mut self, batch: Vec<Command>) {
        let mut acknowledgements = Vec::new();
        let mut needs_sync = false;
        let mut result = self.ensure_open().and_then(|()| self.lock_and_catch_up());

        for command in batch {
            let Command::Write { event, durable } = command else {
                continue;
            };
            if result.is_ok() {
                let (line, hash) = render_line(&event, &self.last_hash);
                result = self.append(&line);
                if result.is_ok() {
                    self.last_hash = hash;
                }
            }
            if let Some(done) = durable {
                needs_sync = true;
                acknowledgements.push(done);
            }
        }

        if result.is_ok() {
            result = self.flush(needs_sync);
        }
        if let Some(file) = self.file.as_ref() {
            self.expected_length = file.get_ref().metadata().ok().map(|m| m.len());
            let _ = file.get_ref().unlock();
        }
        let ok = result.is_ok();
        if let Err(error) = result {
            // The file is reopened on the next batch, so writes resume once
            // the cause (permissions, a full disk) is fixed.
            tracing::error!(error = %error, path = %self.path.display(), "audit log write failed");
            self.file = None;
        }
        self.healthy.store(ok, Ordering::Relaxed);
        for done in acknowledgements {
            let _ = done.send(ok);
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
        let length = file.get_ref().metadata()?.len();
        if self.expected_length != Some(length) {
            self.last_hash = read_last_hash(&self.path)?;
        }
        Ok(())
    }

    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::new(open_for_append(&self.path)?));
        }
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
            file.get_ref().sync_data()?;
        }
        Ok(())
    }
}

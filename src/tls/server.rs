//! The server configuration in force, and its reloads.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::load::{self, LoadedTls};
use super::TlsError;
use crate::config::TlsFiles;

/// How often the certificate, key and client CA files are checked for a
/// change. Certbot renews by swapping symlinks, which changes the inode.
pub const RELOAD_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The identity of one version of a file. A rewrite in place changes the
/// modification time or length, and a rename or symlink swap changes the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
    len: u64,
}

/// The TLS configuration of the listener. Every handshake uses the
/// configuration in force when it starts, so a reload affects only new
/// connections and never drops one in flight.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as they were at the last load attempt, successful or not,
    /// so that a broken file is reported once rather than at every poll.
    last_seen: Mutex<Vec<Option<FileStamp>>>,
}

impl ServerTls {
    /// Loads the files named by `SSL_CERT_FILE`, `SSL_KEY_FILE` and
    /// `SSL_CLIENT_CA_FILE`.
    ///
    /// # Errors
    /// A [`TlsError`] that names the variable to fix.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
        let stamps = stamp_files(files);
        let loaded = load::load(files)?;
        log_loaded(&loaded, files);
        Ok(ServerTls {
            files: files.clone(),
            current: RwLock::new(loaded.config),
            last_seen: Mutex::new(stamps),
        })
    }

    /// Returns an acceptor for the configuration in force.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner).clone();
        TlsAcceptor::from(config)
    }

    /// Loads the files again and, when they are valid, uses them for new
    /// handshakes.
    ///
    /// # Errors
    /// A [`TlsError`] when the new files cannot be used; the previous
    /// certificate then stays in force.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.last_seen.lock().unwrap_or_else(PoisonError::into_inner) = stamp_files(&self.files);
        let loaded = load::load(&self.files)?;
        log_loaded(&loaded, &self.files);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.config;
        Ok(())
    }

    /// Reloads when a file changed since the last load attempt. Returns
    /// `None` when nothing changed.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let unchanged = *self.last_seen.lock().unwrap_or_else(PoisonError::into_inner) == stamp_files(&self.files);
        if unchanged {
            return None;
        }
        Some(self.reload())
    }

    /// Starts reloading on file changes (every [`RELOAD_POLL_INTERVAL`]) and
    /// on SIGHUP. The signal handler is installed before this returns, so a
    /// SIGHUP that arrives afterwards no longer ends the process.
    ///
    /// # Errors
    /// When the SIGHUP handler cannot be installed.
    pub fn spawn_reloader(self: Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;

        Ok(tokio::spawn(async move {
            let mut poll = tokio::time::interval(RELOAD_POLL_INTERVAL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                tokio::select! {
                    _ = poll.tick() => self.report_change(),
                    Some(()) = hangup.recv() => {
                        tracing::info!("SIGHUP received: reloading the TLS certificate");
                        report_reload(self.reload());
                    }
                }
                #[cfg(not(unix))]
                {
                    poll.tick().await;
                    self.report_change();
                }
            }
        }))
    }

    fn report_change(&self) {
        if let Some(result) = self.reload_if_changed() {
            report_reload(result);
        }
    }
}

fn report_reload(result: Result<(), TlsError>) {
    if let Err(error) = result {
        tracing::error!(error = %error, "TLS certificate reload failed; still serving the previous certificate");
    }
}

fn stamp_files(files: &TlsFiles) -> Vec<Option<FileStamp>> {
    let mut paths: Vec<&Path> = vec![&files.cert_file, &files.key_file];
    if let Some((ca_file, _)) = &files.client_ca {
        paths.push(ca_file);
    }
    paths.into_iter().map(stamp_file).collect()
}

/// Reads the stamp of the file a path resolves to, following symlinks.
fn stamp_file(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (device, inode) = {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    };
    #[cfg(not(unix))]
    let (device, inode) = (0, 0);
    Some(FileStamp {
        modified: metadata.modified().ok(),
        device,
        inode,
        len: metadata.len(),
    })
}

/// Logs the certificate now in force, with a warning when it is outside its
/// validity period. An expired certificate is still served: refusing to start
/// would turn a late renewal into an outage, while clients see the expiry anyway.
fn log_loaded(loaded: &LoadedTls, files: &TlsFiles) {
    let not_before = rfc3339(loaded.not_before);
    let not_after = rfc3339(loaded.not_after);
    tracing::info!(
        cert_file = %files.cert_file.display(),
        subject = %loaded.subject,
        not_after = %not_after,
        client_certificates = files.client_ca.as_ref().map_or("off", |(_, mode)| match mode {
            crate::config::ClientAuth::Required => "required",
            crate::config::ClientAuth::Optional => "optional",
        }),
        "TLS certificate loaded"
    );

    let now = SystemTime::now();
    if loaded.not_after < now {
        tracing::warn!(
            cert_file = %files.cert_file.display(),
            subject = %loaded.subject,
            not_after = %not_after,
            "the certificate in SSL_CERT_FILE has EXPIRED: clients will reject it; renew it and replace the file (it is reloaded without a restart)"
        );
    } else if loaded.not_before > now {
        tracing::warn!(
            cert_file = %files.cert_file.display(),
            subject = %loaded.subject,
            not_before = %not_before,
            "the certificate in SSL_CERT_FILE is not valid yet: clients will reject it until then; check the system clock"
        );
    }
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

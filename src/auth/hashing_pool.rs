//! A small dedicated thread pool for Argon2, separate from tokio's blocking
//! pool.
//!
//! Argon2id is slow on purpose, so a burst of logins could otherwise take
//! every core from the requests that are already authenticated. The pool
//! has at most half the machine's cores (one on a two-core machine).
//!
//! On Linux its threads run in the idle scheduling class (`SCHED_IDLE`): a
//! hashing thread runs on a core that no other thread wants at the moment
//! and gives way as soon as one wakes up. A higher nice value was not
//! enough. Request handling leaves short idle gaps on every core, hashing
//! filled them, and requests that woke up meanwhile waited for its time
//! slice to end. Logins still progress under full load, only more slowly.
//! Where the idle class is refused, the threads run at nice 10 instead.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};

/// Hashing jobs that may wait for a thread. Senders beyond this wait for
/// room, so memory stays bounded under a login flood.
const QUEUE_CAPACITY: usize = 1024;

/// The nice value of the hashing threads where the idle class is refused
/// (0 is the default, 19 the lowest priority).
#[cfg(target_os = "linux")]
const FALLBACK_NICE: libc::c_int = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The error when a job produced no result.
#[derive(Debug, thiserror::Error)]
#[error("the password hashing pool is not running")]
pub struct PoolStopped;

/// Runs `work` on a hashing thread and returns its result.
///
/// # Errors
/// Fails if `work` panics or no hashing thread could be started.
pub async fn run<T, F>(work: F) -> Result<T, PoolStopped>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = reply.send(work());
    });
    queue().send(job).await.map_err(|_| PoolStopped)?;
    result.await.map_err(|_| PoolStopped)
}

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(start_threads)
}

/// Half the available cores, at least one.
fn thread_count() -> usize {
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

fn start_threads() -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel::<Job>(QUEUE_CAPACITY);
    let receiver = Arc::new(Mutex::new(receiver));
    for index in 0..thread_count() {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("password-hash-{index}"))
            .spawn(move || {
                lower_priority();
                loop {
                    // The lock is held only while taking the next job.
                    let next = match receiver.lock() {
                        Ok(mut jobs) => jobs.blocking_recv(),
                        Err(_) => None,
                    };
                    let Some(job) = next else { break };
                    // A panicking job loses its own result (the caller sees
                    // PoolStopped) but must not take the thread with it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start a password hashing thread");
        }
    }
    sender
}

/// Moves the calling thread into the idle scheduling class, or raises its
/// nice value where that is refused. On Linux both calls with 0 apply to
/// the calling thread only.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: param is a valid sched_param that outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }

        // SAFETY: setpriority takes plain integers and touches no memory of ours.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, FALLBACK_NICE) };
        if result != 0 {
            tracing::debug!("could not lower the priority of a password hashing thread");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_returns_their_results() {
        let results = futures::future::join_all((0..8).map(|n| run(move || n * 2))).await;
        let values: Vec<i32> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(values, vec![0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_use_idle_class() {
        // sched_getscheduler with 0 reads the calling thread's policy on Linux.
        let policy = run(|| unsafe { libc::sched_getscheduler(0) }).await.unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
    }
}

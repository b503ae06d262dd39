//! The cross-process lock around every read-modify-write of a store: an exclusive
//! `flock` on a sibling lock file, polled every 50 ms within a budget, after an
//! in-process async mutex per lock path (so local tasks queue without blocking threads).
//! The first contention emits a `credentials::lock::contention` event.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::OwnedMutexGuard;

use crate::session::lock as lock_mutex;

pub const POLL: Duration = Duration::from_millis(50);

/// Holds the lock until dropped.
pub struct LockGuard {
    _file: Flock<File>,
    _local: OwnedMutexGuard<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("credential lock {0} not acquired within the budget")]
    Timeout(String),
    #[error("credential lock {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn local(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    lock_mutex(LOCKS.get_or_init(Default::default))
        .entry(path.to_path_buf())
        .or_default()
        .clone()
}

pub async fn acquire(path: &Path, budget: Duration) -> Result<LockGuard, LockError> {
    let deadline = tokio::time::Instant::now() + budget;
    let shown = path.display().to_string();
    let local = tokio::time::timeout_at(deadline, local(path).lock_owned())
        .await
        .map_err(|_| LockError::Timeout(shown.clone()))?;
    let mut contended = false;
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| LockError::Io {
                path: shown.clone(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => {
                return Ok(LockGuard {
                    _file: file,
                    _local: local,
                });
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if !contended {
                    contended = true;
                    tracing::info!(target: "credentials::lock::contention", lock = %shown, "waiting for the credential lock");
                }
                if tokio::time::Instant::now() + POLL > deadline {
                    return Err(LockError::Timeout(shown));
                }
                tokio::time::sleep(POLL).await;
            }
            Err((_, e)) => {
                return Err(LockError::Io {
                    path: shown,
                    source: e.into(),
                });
            }
        }
    }
}

//! Handing one descriptor to one child without the fork-time `dup2` (which forces a full
//! `fork` instead of `posix_spawn`): the descriptor is made inheritable only while that child
//! is spawned, and every other spawn in the server waits for that moment to pass, so the
//! descriptor never leaks into a child it was not meant for.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{PoisonError, RwLock};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

static SPAWNS: RwLock<()> = RwLock::new(());

/// Runs `spawn` (any child start that passes no extra descriptor); many may run at once.
pub fn spawn_plain<T>(spawn: impl FnOnce() -> T) -> T {
    let _shared = SPAWNS.read().unwrap_or_else(PoisonError::into_inner);
    spawn()
}

/// Runs `spawn` with `fd` inheritable (same number in the child), alone; `fd` is
/// close-on-exec again before any other spawn can start. Callers close `fd` right after.
pub fn spawn_passing<T>(fd: &OwnedFd, spawn: impl FnOnce() -> T) -> io::Result<T> {
    let _alone = SPAWNS.write().unwrap_or_else(PoisonError::into_inner);
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let spawned = spawn();
    // Cannot fail on a descriptor we own; the started child must be returned either way.
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Ok(spawned)
}

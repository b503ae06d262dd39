//! Which descriptors children inherit: none of those the server itself inherited, and one
//! extra descriptor handed to one child without the fork-time `dup2` (which forces a full
//! `fork` instead of `posix_spawn`): it is made inheritable only while that child is
//! spawned, and every other spawn in the server waits for that moment to pass, so it never
//! leaks into a child it was not meant for.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{PoisonError, RwLock};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};

static SPAWNS: RwLock<()> = RwLock::new(());

/// Marks every descriptor above stderr close-on-exec, so whatever the server's own parent
/// leaked to it (a shell's saved descriptors, a CI runner's pipes) never reaches a child.
/// Call once at startup, before any thread starts.
pub fn keep_inherited_descriptors_from_children() {
    // SAFETY: close_range only changes descriptor flags; no memory is touched.
    let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } == 0;
    if done {
        return;
    }
    // Kernels before 5.11: walk the descriptor table.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a possibly stale number fails harmlessly with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

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

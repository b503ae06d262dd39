//! What this kernel supports, for `exec-server sandbox-probe` and for failing a start
//! clearly when a layer is missing.

use serde::Serialize;

/// The layers this machine can apply.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    /// Landlock ABI version (0 = unavailable).
    pub landlock_abi: u32,
    pub seccomp: bool,
    /// Unprivileged user namespaces (and network namespaces inside them).
    pub user_namespaces: bool,
    /// `v2` or `v1` when a memory limit can be enforced.
    pub cgroup_memory: Option<&'static str>,
    /// `v2` or `v1` when a pids limit can be enforced.
    pub cgroup_pids: Option<&'static str>,
}

fn seccomp_available() -> bool {
    // SAFETY: PR_GET_SECCOMP takes no arguments; it fails with EINVAL without seccomp.
    unsafe { libc::prctl(libc::PR_GET_SECCOMP) >= 0 }
}

/// User namespaces: tried in a forked child so that this process is not affected.
fn user_namespaces_available() -> bool {
    // SAFETY: the child only calls unshare and _exit, both async-signal-safe.
    match unsafe { libc::fork() } {
        0 => {
            let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0;
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
        _ => false,
    }
}

pub fn probe() -> Probe {
    let (cgroup_memory, cgroup_pids) = crate::cgroup::available();
    Probe {
        landlock_abi: crate::apply::abi_number(),
        seccomp: seccomp_available(),
        user_namespaces: user_namespaces_available(),
        cgroup_memory,
        cgroup_pids,
    }
}

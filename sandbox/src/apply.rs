//! Applies the layers of a [`LaunchSpec`] to the calling process, in order: own session
//! (and controlling terminal), parent-death signal, rlimits, cgroup membership, user
//! namespace (plus a network namespace when network is off), Landlock, then seccomp.
//! Must run in a single-threaded process (the launcher) right before `execve`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule};
use serde::{Deserialize, Serialize};

use crate::spec::LaunchSpec;

/// The Landlock ABI this launcher asks for (file system, TCP and scope rules).
const LANDLOCK_ABI: ABI = ABI::V6;

/// What was applied, reported to the server before `execve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landlock: Option<LandlockReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rlimits: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writable_roots: Vec<PathBuf>,
    pub network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LandlockReport {
    pub abi: u32,
    pub status: String,
}

/// A layer that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("sandbox layer `{layer}` could not be applied: {message}")]
pub struct ApplyError {
    pub layer: String,
    pub message: String,
}

fn fail(layer: &str, message: impl std::fmt::Display) -> ApplyError {
    ApplyError {
        layer: layer.to_string(),
        message: message.to_string(),
    }
}

/// Device files a confined process may still use.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
];

pub fn apply(spec: &LaunchSpec) -> Result<Report, ApplyError> {
    let mut report = Report {
        network: spec.network,
        ..Report::default()
    };

    nix::unistd::setsid().map_err(|e| fail("session", e))?;
    if spec.tty {
        // SAFETY: TIOCSCTTY on stdin (the PTY slave) takes no pointer argument.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY as _, 0) } < 0 {
            return Err(fail("session", std::io::Error::last_os_error()));
        }
    }
    report.layers.push("session".into());

    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } < 0 {
        return Err(fail("pdeathsig", std::io::Error::last_os_error()));
    }
    report.layers.push("pdeathsig".into());

    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| fail("rlimits", e))?;
    report.rlimits.insert("core".into(), 0);
    if let Some(cpu) = spec.cpu_seconds {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        setrlimit(Resource::RLIMIT_CPU, cpu, cpu + 1).map_err(|e| fail("rlimits", e))?;
        report.rlimits.insert("cpuSeconds".into(), cpu);
    }
    report.layers.push("rlimits".into());

    for dir in &spec.cgroups {
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| fail("cgroup", format!("{}: {e}", dir.display())))?;
    }
    if !spec.cgroups.is_empty() {
        report.layers.push("cgroup".into());
    }

    if !spec.confine {
        return Ok(report);
    }

    let hidden: Vec<PathBuf> = existing(spec.hidden.iter().cloned());
    enter_namespaces(spec.network, !hidden.is_empty())?;
    report.layers.push("userns".into());
    if !spec.network {
        report.layers.push("netns".into());
    }
    if !hidden.is_empty() {
        hide(&hidden)?;
        report.layers.push("mountns".into());
    }

    if let Some(roots) = &spec.writable_roots {
        report.landlock = Some(landlock(roots, spec.network)?);
        report.writable_roots = roots.clone();
        report.layers.push("landlock".into());
    }

    report.seccomp = Some(seccomp(spec.network)?);
    report.layers.push("seccomp".into());
    Ok(report)
}

/// A user namespace (no capabilities outside it), and a private network namespace when
/// network is off. The process keeps its own uid and gid inside.
fn enter_namespaces(network: bool, mounts: bool) -> Result<(), ApplyError> {
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if !network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if mounts {
        flags |= CloneFlags::CLONE_NEWNS;
    }
    unshare(flags).map_err(|e| fail(if network { "userns" } else { "netns" }, e))?;
    std::fs::write("/proc/self/setgroups", "deny").map_err(|e| fail("userns", format!("setgroups: {e}")))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
        .map_err(|e| fail("userns", format!("uid_map: {e}")))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        .map_err(|e| fail("userns", format!("gid_map: {e}")))?;
    Ok(())
}

/// Covers each directory with an empty read-only tmpfs (in the private mount namespace).
fn hide(dirs: &[PathBuf]) -> Result<(), ApplyError> {
    use nix::mount::{MsFlags, mount};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("mountns", format!("make mounts private: {e}")))?;
    for dir in dirs {
        let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("size=4k,mode=0500"))
            .map_err(|e| fail("mountns", format!("hide {}: {e}", dir.display())))?;
    }
    Ok(())
}

fn existing(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    paths.into_iter().filter(|p| p.exists()).collect()
}

/// Read-only `/`, full access to the writable roots and a few devices, no TCP when
/// network is off, and scoped signals and abstract sockets.
fn landlock(roots: &[PathBuf], network: bool) -> Result<LandlockReport, ApplyError> {
    let abi = LANDLOCK_ABI;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| fail("landlock", e))?;
    if !network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| fail("landlock", e))?;
    }
    let ruleset = ruleset.scope(Scope::from_all(abi)).map_err(|e| fail("landlock", e))?;
    let read = AccessFs::from_read(abi);
    let full = AccessFs::from_all(abi);
    let devices = existing(DEVICES.iter().map(PathBuf::from));
    let roots = existing(roots.iter().cloned());
    let status = ruleset
        .create()
        .map_err(|e| fail("landlock", e))?
        .add_rules(path_beneath_rules([Path::new("/")], read))
        .map_err(|e| fail("landlock", e))?
        .add_rules(path_beneath_rules(&devices, full))
        .map_err(|e| fail("landlock", e))?
        .add_rules(path_beneath_rules(&roots, full))
        .map_err(|e| fail("landlock", e))?
        .restrict_self()
        .map_err(|e| fail("landlock", e))?;
    let name = match status.ruleset {
        RulesetStatus::FullyEnforced => "fullyEnforced",
        RulesetStatus::PartiallyEnforced => "partiallyEnforced",
        RulesetStatus::NotEnforced => return Err(fail("landlock", "the kernel does not enforce Landlock")),
    };
    Ok(LandlockReport {
        abi: abi_number(),
        status: name.into(),
    })
}

/// The kernel's Landlock ABI version (0 = none).
pub fn abi_number() -> u32 {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            1u32,
        )
    };
    if v < 0 { 0 } else { v as u32 }
}

#[cfg(target_arch = "x86_64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

/// Syscalls a confined process never needs: tracing, kernel objects, namespaces and
/// mounts, io_uring (which could perform socket operations seccomp cannot see), kernel
/// replacement and modules.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
];

/// EPERM (not a kill) for denied calls, so tools fail with a clear error.
fn seccomp(network: bool) -> Result<String, ApplyError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|s| (*s, Vec::new())).collect();
    let mut profile = "deny-dangerous".to_string();
    if !network {
        let not_unix = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, libc::AF_UNIX as u64)
            .map_err(|e| fail("seccomp", e))?;
        let rule = SeccompRule::new(vec![not_unix]).map_err(|e| fail("seccomp", e))?;
        rules.insert(libc::SYS_socket, vec![rule.clone()]);
        rules.insert(libc::SYS_socketpair, vec![rule]);
        profile.push_str("+deny-ip-sockets");
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        ARCH,
    )
    .map_err(|e| fail("seccomp", e))?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| fail("seccomp", e))?;
    seccompiler::apply_filter(&program).map_err(|e| fail("seccomp", e))?;
    Ok(profile)
}

//! Starting a child: program lookup, pipes or a pseudo-terminal, its own process group
//! (pipes) or session (PTY), and the file descriptors the pump and stdin writer use.
//! No helper is re-executed when no sandbox is asked for: the child is spawned directly.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use exec_protocol::process::{OutputStream, TerminalSize};
use nix::fcntl::{OFlag, open};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::stat::Mode;
use nix::unistd::pipe2;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

use super::{fdio, inherit};

/// What to start.
pub struct SpawnSpec<'a> {
    pub argv: &'a [String],
    pub arg0: Option<&'a str>,
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub tty: Option<TerminalSize>,
    pub pipe_stdin: bool,
    /// Run through the sandbox launcher with this spec.
    pub launch: Option<&'a sandbox::LaunchSpec>,
}

/// The launcher to run: `<this binary>-launcher` beside this binary when installed (small,
/// fast to start), else this binary's `sandbox-exec` mode. Resolved once.
fn launcher() -> io::Result<(PathBuf, bool)> {
    static LAUNCHER: std::sync::OnceLock<Result<(PathBuf, bool), String>> = std::sync::OnceLock::new();
    LAUNCHER
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let name = exe
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let small = exe.with_file_name(format!("{name}-launcher"));
            Ok(if small.is_file() { (small, true) } else { (exe, false) })
        })
        .clone()
        .map_err(io::Error::other)
}

/// An output source of the child.
pub struct Source {
    pub fd: AsyncFd<OwnedFd>,
    pub stream: OutputStream,
    /// The pipe buffer was already enlarged.
    pub grown: bool,
}

/// A started child and its descriptors.
pub struct Spawned {
    pub child: Child,
    pub pid: u32,
    pub sources: Vec<Source>,
    pub stdin: Option<AsyncFd<OwnedFd>>,
    /// The PTY master, kept for resize and the foreground process group.
    pub pty_master: Option<Arc<OwnedFd>>,
    /// Read end of the launcher's report pipe (sandboxed processes only).
    pub report: Option<AsyncFd<OwnedFd>>,
}

/// Spawn failures, with the reference's OS text first.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{source}: program `{program}` not found")]
    ProgramNotFound { program: String, source: io::Error },
    #[error("{source}: working directory `{cwd}`")]
    Cwd { cwd: String, source: io::Error },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<nix::Error> for SpawnError {
    fn from(e: nix::Error) -> Self {
        SpawnError::Io(e.into())
    }
}

pub fn spawn(spec: &SpawnSpec<'_>) -> Result<Spawned, SpawnError> {
    let cwd_meta = std::fs::metadata(spec.cwd).map_err(|source| SpawnError::Cwd {
        cwd: spec.cwd.display().to_string(),
        source,
    })?;
    if !cwd_meta.is_dir() {
        return Err(SpawnError::Cwd {
            cwd: spec.cwd.display().to_string(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    let program = resolve_program(&spec.argv[0], spec.cwd, spec.env.get("PATH").map(String::as_str))?;
    let arg0 = spec.arg0.unwrap_or(&spec.argv[0]);
    let mut report = None;
    let mut cmd = match spec.launch {
        None => {
            let mut cmd = Command::new(&program);
            cmd.arg0(arg0).args(&spec.argv[1..]);
            cmd
        }
        Some(launch) => {
            let json = serde_json::to_string(launch).map_err(io::Error::other)?;
            let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC)?;
            let (exe, small) = launcher()?;
            let mut cmd = Command::new(exe);
            if !small {
                cmd.arg("sandbox-exec");
            }
            cmd.args(["--spec", &json, "--report-fd", &report_w.as_raw_fd().to_string(), "--"])
                .arg(&program)
                .arg(arg0)
                .args(&spec.argv[1..]);
            report = Some((report_r, report_w));
            cmd
        }
    };
    cmd.env_clear().envs(spec.env).current_dir(spec.cwd).kill_on_drop(false);
    // The launcher starts its own session; a direct PTY child gets one in pre_exec.
    let own_session = spec.launch.is_none();
    let start = |cmd| match spec.tty {
        Some(size) => spawn_pty(cmd, size, own_session),
        None => spawn_pipes(cmd, spec.pipe_stdin, own_session),
    };
    // The report pipe is passed by number (no pre_exec `dup2`), so std can still use
    // posix_spawn for the launcher instead of a full fork of the server.
    match report {
        None => inherit::spawn_plain(|| start(cmd)),
        Some((report_r, report_w)) => {
            let mut spawned = inherit::spawn_passing(&report_w, || start(cmd))??;
            drop(report_w);
            spawned.report = Some(fdio::register(report_r, Interest::READABLE)?);
            Ok(spawned)
        }
    }
}

fn spawn_pipes(mut cmd: Command, pipe_stdin: bool, own_group: bool) -> Result<Spawned, SpawnError> {
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    let stdin = if pipe_stdin {
        let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC)?;
        cmd.stdin(Stdio::from(in_r));
        Some(fdio::register(in_w, Interest::WRITABLE)?)
    } else {
        cmd.stdin(Stdio::null());
        None
    };
    cmd.stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
    if own_group {
        cmd.process_group(0);
    }
    let child = cmd.spawn()?;
    drop(cmd); // closes the child's ends in this process
    let pid = child.id().unwrap_or_default();
    let sources = vec![
        Source {
            fd: fdio::register(out_r, Interest::READABLE)?,
            stream: OutputStream::Stdout,
            grown: false,
        },
        Source {
            fd: fdio::register(err_r, Interest::READABLE)?,
            stream: OutputStream::Stderr,
            grown: false,
        },
    ];
    Ok(Spawned {
        child,
        pid,
        sources,
        stdin,
        pty_master: None,
        report: None,
    })
}

fn spawn_pty(mut cmd: Command, size: TerminalSize, own_session: bool) -> Result<Spawned, SpawnError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_name = ptsname_r(&master)?;
    let slave = open(
        slave_name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let master: OwnedFd = master.into();
    set_window_size(&master, size)?;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    if own_session {
        // SAFETY: only async-signal-safe calls (setsid, ioctl) run between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    drop(cmd);
    let pid = child.id().unwrap_or_default();
    let reader = fdio::register(master.try_clone()?, Interest::READABLE)?;
    let writer = fdio::register(master.try_clone()?, Interest::WRITABLE)?;
    Ok(Spawned {
        child,
        pid,
        sources: vec![Source {
            fd: reader,
            stream: OutputStream::Pty,
            grown: true,
        }],
        stdin: Some(writer),
        pty_master: Some(Arc::new(master)),
        report: None,
    })
}

/// Sets the terminal size of a PTY (the kernel sends SIGWINCH to its foreground group).
pub fn set_window_size(master: &OwnedFd, size: TerminalSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The foreground process group of a PTY.
pub fn foreground_group(master: &OwnedFd) -> Option<i32> {
    nix::unistd::tcgetpgrp(master)
        .ok()
        .map(|p| p.as_raw())
        .filter(|p| *p > 0)
}

/// Finds the program: a path with `/` is taken relative to `cwd`; a bare name is looked
/// up in the child's PATH, then in the server's.
pub fn resolve_program(name: &str, cwd: &Path, child_path: Option<&str>) -> Result<PathBuf, SpawnError> {
    let not_found = || SpawnError::ProgramNotFound {
        program: name.to_string(),
        source: io::Error::from_raw_os_error(libc::ENOENT),
    };
    if name.is_empty() {
        return Err(not_found());
    }
    if name.contains('/') {
        return Ok(cwd.join(name));
    }
    let server_path = std::env::var_os("PATH");
    let dirs = child_path
        .map(|p| OsStr::from_bytes(p.as_bytes()))
        .into_iter()
        .chain(server_path.as_deref())
        .flat_map(std::env::split_paths);
    for dir in dirs {
        let dir = if dir.is_relative() { cwd.join(dir) } else { dir };
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

//! The launcher (`exec-server sandbox-exec`): a mode of the same binary that the process
//! manager spawns in place of a sandboxed command. In a fresh single-threaded process it
//! applies the sandbox layers, writes a report of them on the report descriptor (closed
//! by `execve`, so the server reads end-of-file at the exec), and executes the command.
//! A layer that cannot be applied is reported and the command never runs.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
pub struct SandboxExecArgs {
    /// The launch spec, JSON.
    #[arg(long)]
    pub spec: String,
    /// Descriptor the report is written to.
    #[arg(long)]
    pub report_fd: i32,
    /// The program (absolute path), then its argv (argv[0] first).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// One line the launcher writes on the report descriptor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LaunchMessage {
    Applied(sandbox::Report),
    Failed(sandbox::ApplyError),
    ExecFailed { errno: i32, message: String },
}

fn send(out: &mut std::fs::File, message: &LaunchMessage) {
    if let Ok(text) = serde_json::to_string(message) {
        let _ = writeln!(out, "{text}");
    }
}

pub fn main(args: SandboxExecArgs) -> ExitCode {
    // SAFETY: the server passes an open descriptor that this process owns from here on.
    let mut report = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(args.report_fd) });
    let spec: sandbox::LaunchSpec = match serde_json::from_str(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            send(
                &mut report,
                &LaunchMessage::Failed(sandbox::ApplyError {
                    layer: "spec".into(),
                    message: e.to_string(),
                }),
            );
            return ExitCode::from(126);
        }
    };
    let applied = match sandbox::apply(&spec) {
        Ok(r) => r,
        Err(e) => {
            send(&mut report, &LaunchMessage::Failed(e));
            return ExitCode::from(126);
        }
    };
    let (program, argv) = match args.command.split_first() {
        Some((p, a)) if !a.is_empty() => (p.clone(), a.to_vec()),
        _ => return ExitCode::from(126),
    };
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let argv: Vec<CString> = argv.iter().map(|a| to_c(a)).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    send(&mut report, &LaunchMessage::Applied(applied));
    let _ = fcntl(&report, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    let err = nix::unistd::execve(&to_c(&program), &argv, &env).unwrap_err();
    send(
        &mut report,
        &LaunchMessage::ExecFailed {
            errno: err as i32,
            message: std::io::Error::from(err).to_string(),
        },
    );
    ExitCode::from(127)
}

/// `exec-server sandbox-probe`.
pub fn probe(json: bool) -> ExitCode {
    let p = sandbox::probe();
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "landlock:        {}",
        if p.landlock_abi > 0 {
            format!("ABI {}", p.landlock_abi)
        } else {
            "no".into()
        }
    );
    println!("seccomp:         {}", yes(p.seccomp));
    println!("user namespaces: {}", yes(p.user_namespaces));
    println!("cgroup memory:   {}", p.cgroup_memory.unwrap_or("no"));
    println!("cgroup pids:     {}", p.cgroup_pids.unwrap_or("no"));
    ExitCode::SUCCESS
}

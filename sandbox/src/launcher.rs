//! The launcher protocol and main: in a fresh single-threaded process, apply a
//! [`LaunchSpec`], write one [`LaunchMessage`] line on the report descriptor (marked
//! close-on-exec, so the server reads end-of-file at the `execve`), then execute the
//! command. A layer that cannot be applied is reported and the command never runs.
//!
//! Two front ends run it: the small `exec-server-launcher` binary (fast to start) and the
//! `exec-server sandbox-exec` mode of the server binary.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};

use crate::apply::{ApplyError, Report, apply};
use crate::spec::LaunchSpec;

/// One line the launcher writes on the report descriptor.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LaunchMessage {
    Applied(Report),
    Failed(ApplyError),
    ExecFailed { errno: i32, message: String },
}

fn send(out: &mut std::fs::File, message: &LaunchMessage) {
    if let Ok(text) = serde_json::to_string(message) {
        let _ = writeln!(out, "{text}");
    }
}

/// Applies `spec_json` and executes `command` (the program path, then argv with argv[0]).
/// Returns only on failure, with the exit code to use.
pub fn launch(spec_json: &str, report_fd: i32, command: &[String]) -> u8 {
    // SAFETY: the server passes an open descriptor that this process owns from here on.
    let mut report = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(report_fd) });
    let spec: LaunchSpec = match serde_json::from_str(spec_json) {
        Ok(s) => s,
        Err(e) => {
            let failure = ApplyError {
                layer: "spec".into(),
                message: e.to_string(),
            };
            send(&mut report, &LaunchMessage::Failed(failure));
            return 126;
        }
    };
    let applied = match apply(&spec) {
        Ok(r) => r,
        Err(e) => {
            send(&mut report, &LaunchMessage::Failed(e));
            return 126;
        }
    };
    let (program, argv) = match command.split_first() {
        Some((p, a)) if !a.is_empty() => (p.clone(), a.to_vec()),
        _ => return 126,
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
    let err = match nix::unistd::execve(&to_c(&program), &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let message = std::io::Error::from(err).to_string();
    send(
        &mut report,
        &LaunchMessage::ExecFailed {
            errno: err as i32,
            message,
        },
    );
    127
}

/// The argument parsing of both front ends: `--spec JSON --report-fd N -- PROGRAM ARGV…`.
pub fn main_from_args(args: &[String]) -> u8 {
    let mut spec = None;
    let mut fd = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--spec" => spec = args.get(i + 1).cloned(),
            "--report-fd" => fd = args.get(i + 1).and_then(|v| v.parse::<i32>().ok()),
            "--" => return launch(spec.as_deref().unwrap_or(""), fd.unwrap_or(-1), &args[i + 1..]),
            _ => {}
        }
        i += 2;
    }
    126
}

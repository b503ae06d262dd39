//! The stdin writer of one process: applies queued writes in arrival order and reports
//! each outcome; closing stdin drops the pipe (EOF) or sends the PTY's EOF character.

use std::io;
use std::os::fd::OwnedFd;

use exec_protocol::process::WriteStatus;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::fdio;

pub enum StdinOp {
    Write(Vec<u8>, oneshot::Sender<WriteStatus>),
    Close,
}

/// Ctrl-D: the terminal's default end-of-file character.
const PTY_EOF: u8 = 0x04;

pub async fn run(fd: AsyncFd<OwnedFd>, mut ops: mpsc::Receiver<StdinOp>, tty: bool) {
    let mut broken = false;
    while let Some(op) = ops.recv().await {
        match op {
            StdinOp::Write(data, done) => {
                let status = if broken {
                    WriteStatus::StdinClosed
                } else {
                    match fdio::write_all(&fd, &data).await {
                        Ok(()) => WriteStatus::Accepted,
                        Err(e) => {
                            debug!(error = %e, "stdin write failed");
                            broken = e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EIO);
                            WriteStatus::StdinClosed
                        }
                    }
                };
                let _ = done.send(status);
            }
            StdinOp::Close => {
                if tty && !broken {
                    let _ = fdio::write_all(&fd, &[PTY_EOF]).await;
                }
                break;
            }
        }
    }
    // Dropping `fd` closes the pipe's write end: the child reads EOF.
}

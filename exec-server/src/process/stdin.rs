//! Stdin of one process. A write goes straight to the pipe (or PTY) from the caller when
//! nothing is queued and the pipe has room; otherwise it is queued for the writer task,
//! which applies writes in arrival order and reports each outcome. Closing stdin drops
//! the pipe (EOF) or sends the PTY's end-of-file character.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use exec_protocol::process::WriteStatus;
use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::fdio;

enum Op {
    Write(Vec<u8>, oneshot::Sender<WriteStatus>),
    Close,
}

/// A write that finished at once, or one whose outcome arrives later.
pub enum WriteStep {
    Done(WriteStatus),
    Pending(oneshot::Receiver<WriteStatus>),
}

impl WriteStep {
    pub async fn status(self) -> WriteStatus {
        match self {
            WriteStep::Done(s) => s,
            WriteStep::Pending(rx) => rx.await.unwrap_or(WriteStatus::StdinClosed),
        }
    }
}

/// Ctrl-D: the terminal's default end-of-file character.
const PTY_EOF: u8 = 0x04;
/// Writes queued per process before writers wait.
const QUEUE: usize = 256;

/// The sending side, kept by the process.
pub struct Stdin {
    tx: mpsc::Sender<Op>,
    fd: Arc<AsyncFd<OwnedFd>>,
    /// Writes handed to the task and not yet finished; the fast path needs zero.
    queued: Arc<AtomicUsize>,
}

fn is_closed_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EIO)
}

impl Stdin {
    /// Creates the handle and the writer task's future.
    pub fn new(fd: AsyncFd<OwnedFd>, tty: bool) -> (Stdin, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let fd = Arc::new(fd);
        let queued = Arc::new(AtomicUsize::new(0));
        let task = run(fd.clone(), rx, queued.clone(), tty);
        (Stdin { tx, fd, queued }, task)
    }

    /// Writes now if possible, else queues the rest behind earlier writes. Callers
    /// serialize calls per process (the process's stdin lock), which keeps the order.
    pub fn write(&self, mut data: Vec<u8>) -> Result<WriteStep, QueueFull> {
        if self.queued.load(Ordering::Acquire) == 0 {
            match nix::unistd::write(self.fd.get_ref(), &data) {
                Ok(n) if n == data.len() => return Ok(WriteStep::Done(WriteStatus::Accepted)),
                Ok(n) => {
                    data.drain(..n);
                }
                Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
                Err(e) => {
                    debug!(error = %e, "stdin write failed");
                    return Ok(WriteStep::Done(WriteStatus::StdinClosed));
                }
            }
        }
        let (done, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        let op = Op::Write(data, done);
        match self.tx.try_send(op) {
            Ok(()) => Ok(WriteStep::Pending(rx)),
            Err(mpsc::error::TrySendError::Full(op)) => Err(QueueFull {
                tx: self.tx.clone(),
                op,
                rx,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(WriteStep::Done(WriteStatus::StdinClosed)),
        }
    }

    /// Queues the close behind pending writes.
    pub async fn close(self) -> bool {
        self.tx.send(Op::Close).await.is_ok()
    }
}

/// A write that found the queue full; `enqueue` waits for room (outside the process lock).
pub struct QueueFull {
    tx: mpsc::Sender<Op>,
    op: Op,
    rx: oneshot::Receiver<WriteStatus>,
}

impl QueueFull {
    pub async fn enqueue(self) -> WriteStep {
        match self.tx.send(self.op).await {
            Ok(()) => WriteStep::Pending(self.rx),
            Err(_) => WriteStep::Done(WriteStatus::StdinClosed),
        }
    }
}

async fn run(fd: Arc<AsyncFd<OwnedFd>>, mut ops: mpsc::Receiver<Op>, queued: Arc<AtomicUsize>, tty: bool) {
    let mut broken = false;
    while let Some(op) = ops.recv().await {
        match op {
            Op::Write(data, done) => {
                let status = if broken {
                    WriteStatus::StdinClosed
                } else {
                    match fdio::write_all(&fd, &data).await {
                        Ok(()) => WriteStatus::Accepted,
                        Err(e) => {
                            debug!(error = %e, "stdin write failed");
                            broken = is_closed_error(&e);
                            WriteStatus::StdinClosed
                        }
                    }
                };
                queued.fetch_sub(1, Ordering::AcqRel);
                let _ = done.send(status);
            }
            Op::Close => {
                if tty && !broken {
                    let _ = fdio::write_all(&fd, &[PTY_EOF]).await;
                }
                break;
            }
        }
    }
    // Dropping the last `fd` closes the pipe's write end: the child reads EOF.
}

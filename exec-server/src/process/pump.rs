//! The pump of one process: reads its output into the retention ring and the attached
//! connection's queue, reaps it, and emits `process/output`, `process/exited` and
//! `process/closed` with one seq counter, `exited` strictly after the child's last output.
//! Awaiting the outbound queue is the backpressure: a slow client slows the child.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use exec_protocol::envelope::encode_notification;
use exec_protocol::methods;
use exec_protocol::process::encode_output_notification;
use exec_protocol::process::{ClosedNotification, ExitReason, ExitedNotification, OutputStream};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use super::fdio;
use super::spawn::Source;
use super::{ExitInfo, Process, PumpLimits};
use crate::session::Session;

/// Pipe buffer a chatty child gets once it fills the default one.
const BIG_PIPE: usize = 1 << 20;
/// The kernel's default pipe buffer.
const DEFAULT_PIPE: usize = 64 * 1024;
/// After the child exits, how long a PTY may take to hand over its last output.
const PTY_SETTLE: Duration = Duration::from_millis(50);
/// Between SIGTERM and SIGKILL when a timeout limit fires.
const TERM_GRACE: Duration = Duration::from_secs(2);

pub struct Pump {
    pub process: Arc<Process>,
    pub session: Weak<Session>,
    pub child: Child,
    pub sources: Vec<Source>,
    pub limits: PumpLimits,
    pub retention: Duration,
    /// Largest chunk read at once (see `fdio::chunk_limit`).
    pub chunk_limit: usize,
}

async fn read_opt(src: &Option<Source>, limit: usize) -> std::io::Result<Bytes> {
    match src {
        Some(s) => fdio::read_chunk(&s.fd, limit).await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Pump {
    pub async fn run(mut self) {
        let mut sources = std::mem::take(&mut self.sources).into_iter();
        let mut a = sources.next();
        let mut b = sources.next();
        let mut exited = false;
        let mut forced: Option<ExitReason> = None;
        let mut total: u64 = 0;
        let mut term_at = self.limits.timeout.map(|t| Instant::now() + t);
        let mut kill_at: Option<Instant> = None;
        let mut stopped = false;

        while !(exited && a.is_none() && b.is_none()) {
            // Biased: when both pipes are ready, stdout is read first, which keeps the usual
            // `echo out; echo err >&2` order; output is always read before the exit.
            tokio::select! {
                biased;
                _ = self.process.stop.notified(), if !stopped => {
                    stopped = true;
                    self.process.kill_group();
                    a = None;
                    b = None;
                }
                r = read_opt(&a, self.chunk_limit) => {
                    self.on_read(&mut a, &mut b, r, &mut total, &mut forced).await;
                }
                r = read_opt(&b, self.chunk_limit) => {
                    self.on_read(&mut b, &mut a, r, &mut total, &mut forced).await;
                }
                status = self.child.wait(), if !exited => {
                    self.drain(&mut a).await;
                    self.drain(&mut b).await;
                    exited = true;
                    match status {
                        Ok(status) => self.emit_exited(status, forced).await,
                        Err(e) => {
                            warn!(error = %e, "waiting for the child failed");
                            let info = ExitInfo { code: -1, reason: ExitReason::Signaled, signal: None, sandbox_denied: false };
                            self.emit_exit_info(info).await;
                        }
                    }
                }
                _ = sleep_opt(term_at), if !exited => {
                    debug!("timeout limit reached; terminating the group");
                    forced = Some(ExitReason::TimedOut);
                    term_at = None;
                    let _ = killpg(Pid::from_raw(self.process.pid as i32), Signal::SIGTERM);
                    kill_at = Some(Instant::now() + TERM_GRACE);
                }
                _ = sleep_opt(kill_at), if !exited => {
                    kill_at = None;
                    self.process.kill_group();
                }
            }
        }
        self.emit_closed().await;
        self.process.release_cgroups();
        let (process, session, retention) = (self.process, self.session, self.retention);
        tokio::time::sleep(retention).await;
        if let Some(session) = session.upgrade() {
            session.processes.remove_if_same(&process.id, &process);
        }
    }

    /// Handles one read result of `src`; `other` is dropped too when the output limit hits.
    async fn on_read(
        &self,
        src: &mut Option<Source>,
        other: &mut Option<Source>,
        r: std::io::Result<Bytes>,
        total: &mut u64,
        forced: &mut Option<ExitReason>,
    ) {
        let Some(source) = src.as_mut() else { return };
        let stream = source.stream;
        let chunk = match r {
            Ok(chunk) if chunk.is_empty() => {
                *src = None;
                return;
            }
            Ok(chunk) => chunk,
            Err(e) => {
                debug!(error = %e, "output read failed; treating as end of stream");
                *src = None;
                return;
            }
        };
        let n = chunk.len();
        if n >= DEFAULT_PIPE && !source.grown && stream != OutputStream::Pty {
            source.grown = true;
            fdio::grow_pipe(&source.fd, BIG_PIPE);
        }
        if let Some(limit) = self.limits.output_bytes {
            let room = limit.saturating_sub(*total);
            if n as u64 > room {
                if room > 0 {
                    self.emit_output(stream, chunk.slice(..room as usize)).await;
                }
                *total = limit;
                debug!(limit, "output limit reached; killing the group");
                *forced = Some(ExitReason::OutputLimit);
                self.process.kill_group();
                *src = None;
                *other = None;
                return;
            }
        }
        *total += n as u64;
        self.emit_output(stream, chunk).await;
    }

    /// After the child exited: emits what its streams already hold.
    async fn drain(&self, src: &mut Option<Source>) {
        let Some(stream) = src.as_ref().map(|s| s.stream) else {
            return;
        };
        while let Some(s) = src.as_ref() {
            match fdio::try_read_chunk(&s.fd, self.chunk_limit) {
                Ok(Some(chunk)) if !chunk.is_empty() => self.emit_output(stream, chunk).await,
                Ok(Some(_)) | Err(_) => *src = None,
                Ok(None) if stream == OutputStream::Pty => {
                    // The terminal may still be moving the last bytes to the master side.
                    match tokio::time::timeout(PTY_SETTLE, fdio::read_chunk(&s.fd, self.chunk_limit)).await {
                        Ok(Ok(chunk)) if !chunk.is_empty() => self.emit_output(stream, chunk).await,
                        Ok(_) => *src = None,
                        Err(_) => return,
                    }
                }
                Ok(None) => return,
            }
        }
    }

    async fn emit_output(&self, stream: OutputStream, data: Bytes) {
        let seq = self.process.push_output(stream, data.clone());
        let Some(out) = self.session.upgrade().and_then(|s| s.outbound()) else {
            return;
        };
        let _ = out
            .send(encode_output_notification(&self.process.id, seq, stream, &data))
            .await;
    }

    async fn emit_exited(&self, status: ExitStatus, forced: Option<ExitReason>) {
        let (code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Signal::try_from(sig).ok()),
            (None, None) => (-1, None),
        };
        let reason = forced.unwrap_or(match signal {
            Some(_) if self.process.memory_limited() => ExitReason::MemoryLimit,
            Some(_) => ExitReason::Signaled,
            None => ExitReason::Exited,
        });
        let sandbox_denied =
            self.process.sandboxed && sandbox::sandbox_denied(code, &self.process.output_tail(64 * 1024));
        self.emit_exit_info(ExitInfo {
            code,
            reason,
            signal,
            sandbox_denied,
        })
        .await;
    }

    async fn emit_exit_info(&self, info: ExitInfo) {
        let seq = self.process.set_exited(info);
        tracing::info!(code = info.code, reason = ?info.reason, sandbox_denied = info.sandbox_denied, "process exited");
        let params = ExitedNotification {
            process_id: self.process.id.clone(),
            seq,
            exit_code: info.code,
            sandbox_denied: info.sandbox_denied,
            reason: Some(info.reason),
            signal: info.signal.map(|s| s.as_str().to_string()),
        };
        self.send(encode_notification(methods::PROCESS_EXITED, params)).await;
    }

    async fn emit_closed(&self) {
        let seq = self.process.set_closed();
        let params = ClosedNotification {
            process_id: self.process.id.clone(),
            seq,
        };
        self.send(encode_notification(methods::PROCESS_CLOSED, params)).await;
    }

    async fn send(&self, text: String) {
        if let Some(session) = self.session.upgrade() {
            session.send(text).await;
        }
    }
}

//! The pump of one process: reads its output into the retention ring and the attached
//! connection's queue, reaps it, and emits `process/output`, `process/exited` and
//! `process/closed` with one seq counter, `exited` strictly after the child's last output.
//! Awaiting the outbound queue is the backpressure: a slow client slows the child.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use exec_protocol::bytes::Base64Ref;
use exec_protocol::envelope::encode_notification;
use exec_protocol::methods;
use exec_protocol::process::{ClosedNotification, ExitReason, ExitedNotification, OutputStream};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::Child;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, warn};

use super::fdio;
use super::spawn::Source;
use super::{ExitInfo, Process, PumpLimits};
use crate::session::Session;

/// Bytes read from a pipe or PTY at once.
const READ_BUF: usize = 64 * 1024;
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
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutputOut<'a> {
    process_id: &'a str,
    seq: u64,
    stream: OutputStream,
    chunk: Base64Ref<'a>,
}

async fn read_opt(src: &Option<Source>, buf: &mut [u8]) -> std::io::Result<usize> {
    match src {
        Some(s) => fdio::read(&s.fd, buf).await,
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
        let mut buf_a = vec![0u8; READ_BUF];
        let mut buf_b = vec![0u8; READ_BUF];
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
                r = read_opt(&a, &mut buf_a) => {
                    self.on_read(&mut a, &mut b, r, &buf_a, &mut total, &mut forced).await;
                }
                r = read_opt(&b, &mut buf_b) => {
                    self.on_read(&mut b, &mut a, r, &buf_b, &mut total, &mut forced).await;
                }
                status = self.child.wait(), if !exited => {
                    self.drain(&mut a, &mut buf_a).await;
                    self.drain(&mut b, &mut buf_b).await;
                    exited = true;
                    match status {
                        Ok(status) => self.emit_exited(status, forced).await,
                        Err(e) => {
                            warn!(error = %e, "waiting for the child failed");
                            self.emit_exit_info(ExitInfo { code: -1, reason: ExitReason::Signaled, signal: None }).await;
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
        r: std::io::Result<usize>,
        buf: &[u8],
        total: &mut u64,
        forced: &mut Option<ExitReason>,
    ) {
        let Some(stream) = src.as_ref().map(|s| s.stream) else {
            return;
        };
        let n = match r {
            Ok(0) => {
                *src = None;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "output read failed; treating as end of stream");
                *src = None;
                return;
            }
        };
        if let Some(limit) = self.limits.output_bytes {
            let room = limit.saturating_sub(*total);
            if n as u64 > room {
                if room > 0 {
                    self.emit_output(stream, &buf[..room as usize]).await;
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
        self.emit_output(stream, &buf[..n]).await;
    }

    /// After the child exited: emits what its streams already hold.
    async fn drain(&self, src: &mut Option<Source>, buf: &mut [u8]) {
        let Some(stream) = src.as_ref().map(|s| s.stream) else {
            return;
        };
        loop {
            let Some(s) = src.as_ref() else { return };
            match fdio::try_read(&s.fd, buf) {
                Ok(Some(0)) | Err(_) => {
                    *src = None;
                    return;
                }
                Ok(Some(n)) => self.emit_output(stream, &buf[..n]).await,
                Ok(None) if stream == OutputStream::Pty => {
                    // The terminal may still be moving the last bytes to the master side.
                    match tokio::time::timeout(PTY_SETTLE, fdio::read(&s.fd, buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            *src = None;
                            return;
                        }
                        Ok(Ok(n)) => self.emit_output(stream, &buf[..n]).await,
                        Err(_) => return,
                    }
                }
                Ok(None) => return,
            }
        }
    }

    async fn emit_output(&self, stream: OutputStream, data: &[u8]) {
        let seq = self.process.push_output(stream, Bytes::copy_from_slice(data));
        let Some(out) = self.session.upgrade().and_then(|s| s.outbound()) else {
            return;
        };
        let params = OutputOut {
            process_id: &self.process.id,
            seq,
            stream,
            chunk: Base64Ref(data),
        };
        let _ = out.send(encode_notification(methods::PROCESS_OUTPUT, params)).await;
    }

    async fn emit_exited(&self, status: ExitStatus, forced: Option<ExitReason>) {
        let (code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Signal::try_from(sig).ok()),
            (None, None) => (-1, None),
        };
        let reason = forced.unwrap_or(if signal.is_some() {
            ExitReason::Signaled
        } else {
            ExitReason::Exited
        });
        self.emit_exit_info(ExitInfo { code, reason, signal }).await;
    }

    async fn emit_exit_info(&self, info: ExitInfo) {
        let seq = self.process.set_exited(info);
        debug!(code = info.code, reason = ?info.reason, "process exited");
        let params = ExitedNotification {
            process_id: self.process.id.clone(),
            seq,
            exit_code: info.code,
            sandbox_denied: false,
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

//! The process engine: one [`Process`] per started child with its output ring, seq
//! counter, exit state and stdin queue. `start` spawns and hands the child to its pump.

pub mod env;
pub mod fdio;
pub mod inherit;
pub mod pump;
pub mod ring;
pub mod spawn;
pub mod stdin;
pub mod table;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use exec_protocol::process::{
    ExitReason, OutputChunk, OutputStream, ProcessInfo, ProcessSignal, ReadParams, ReadResult, StartParams,
    StartResult, TerminalSize, WriteStatus,
};
use exec_protocol::{Base64Bytes, RpcError};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, info_span};

use crate::config::ServerConfig;
use crate::session::{Session, lock};
use ring::{Chunk, OutputRing};
use sandbox::LaunchSpec;
use sandbox::cgroup::ProcessCgroups;
use stdin::{Stdin, WriteStep};

use crate::sandbox_exec::LaunchMessage;

/// How many `writeId`s a process remembers for deduplication.
const WRITE_IDS_REMEMBERED: usize = 4096;

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub code: i32,
    pub reason: ExitReason,
    pub signal: Option<Signal>,
    /// The failure most likely came from the sandbox.
    pub sandbox_denied: bool,
}

struct State {
    ring: OutputRing,
    next_seq: u64,
    exit: Option<ExitInfo>,
    closed: bool,
    write_ids: HashSet<String>,
    write_order: VecDeque<String>,
}

/// A started child process.
pub struct Process {
    pub id: String,
    pub pid: u32,
    pub tty: bool,
    pub argv: Vec<String>,
    pub metadata: Option<Value>,
    pub started_at_ms: u64,
    state: Mutex<State>,
    /// Bumped on every state change; long-polling readers wait on it.
    version: watch::Sender<u64>,
    stdin: Mutex<Option<Stdin>>,
    pty_master: Option<Arc<OwnedFd>>,
    /// Tells the pump to kill the group and stop (session end, server exit).
    stop: Notify,
    /// Runs confined (sandboxDenied is computed for it).
    pub sandboxed: bool,
    /// Memory and pids cgroups, when limits asked for them.
    cgroups: Option<ProcessCgroups>,
}

impl Process {
    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Records an output chunk and returns its seq.
    pub fn push_output(&self, stream: OutputStream, data: Bytes) -> u64 {
        let seq = {
            let mut st = lock(&self.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.ring.push(Chunk { seq, stream, data });
            seq
        };
        self.bump();
        seq
    }

    /// Records the exit and returns its seq.
    pub fn set_exited(&self, info: ExitInfo) -> u64 {
        let seq = {
            let mut st = lock(&self.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.exit = Some(info);
            seq
        };
        self.bump();
        seq
    }

    /// Records that every output stream ended after the exit; returns its seq.
    pub fn set_closed(&self) -> u64 {
        let seq = {
            let mut st = lock(&self.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.closed = true;
            seq
        };
        self.close_stdin();
        self.bump();
        seq
    }

    pub fn exit_info(&self) -> Option<ExitInfo> {
        lock(&self.state).exit
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    /// `process/read`: retained chunks after `afterSeq`, long-polling up to `waitMs`.
    pub async fn read(&self, params: &ReadParams) -> ReadResult {
        let after = params.after_seq.unwrap_or(0);
        let wait = Duration::from_millis(params.wait_ms.unwrap_or(0).min(3_600_000));
        let deadline = tokio::time::Instant::now() + wait;
        let mut version = self.version.subscribe();
        loop {
            version.borrow_and_update();
            if self.has_news(after) {
                break;
            }
            match tokio::time::timeout_at(deadline, version.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        self.snapshot(after, params.max_bytes)
    }

    /// Whether a long-poll after `after` should answer now: new output, the close, or
    /// an exit the reader has not seen yet.
    fn has_news(&self, after: u64) -> bool {
        let st = lock(&self.state);
        st.ring.has_after(after) || st.closed || (st.exit.is_some() && after + 1 < st.next_seq)
    }

    fn snapshot(&self, after: u64, max_bytes: Option<usize>) -> ReadResult {
        let st = lock(&self.state);
        let read = st.ring.read(after, max_bytes, st.next_seq);
        let next_seq = match (read.truncated, read.chunks.last()) {
            (true, Some(last)) => last.seq + 1,
            _ => st.next_seq,
        };
        ReadResult {
            chunks: read
                .chunks
                .into_iter()
                .map(|c| OutputChunk {
                    seq: c.seq,
                    stream: c.stream,
                    chunk: Base64Bytes(c.data.to_vec()),
                })
                .collect(),
            next_seq,
            exited: st.exit.is_some(),
            exit_code: st.exit.map(|e| e.code),
            closed: st.closed,
            failure: None,
            sandbox_denied: st.exit.is_some_and(|e| e.sandbox_denied),
            dropped_before_seq: read.dropped_before_seq,
            reason: st.exit.map(|e| e.reason),
        }
    }

    /// Writes to stdin in arrival order (at once when possible). A repeated `writeId` is
    /// accepted without writing again.
    pub async fn write(&self, write_id: String, data: Vec<u8>) -> WriteStep {
        {
            let mut st = lock(&self.state);
            if st.write_ids.contains(&write_id) {
                return WriteStep::Done(WriteStatus::Accepted);
            }
            st.write_ids.insert(write_id.clone());
            st.write_order.push_back(write_id);
            while st.write_order.len() > WRITE_IDS_REMEMBERED {
                if let Some(old) = st.write_order.pop_front() {
                    st.write_ids.remove(&old);
                }
            }
        }
        let attempt = match lock(&self.stdin).as_ref() {
            Some(stdin) => stdin.write(data),
            None => return WriteStep::Done(WriteStatus::StdinClosed),
        };
        match attempt {
            Ok(step) => step,
            Err(full) => full.enqueue().await,
        }
    }

    /// Closes stdin (EOF for pipes, end-of-file character for a PTY). False if already closed.
    pub async fn close_stdin_request(&self) -> bool {
        let stdin = lock(&self.stdin).take();
        match stdin {
            Some(stdin) => stdin.close().await,
            None => false,
        }
    }

    fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    /// Sends `signal` to the process group (for a PTY interrupt: its foreground group).
    pub fn signal(&self, signal: ProcessSignal) -> bool {
        if self.exit_info().is_some() {
            return false;
        }
        let sig = match signal {
            ProcessSignal::Interrupt => Signal::SIGINT,
            ProcessSignal::Terminate => Signal::SIGTERM,
            ProcessSignal::Kill => Signal::SIGKILL,
            ProcessSignal::Hangup => Signal::SIGHUP,
            ProcessSignal::Quit => Signal::SIGQUIT,
            ProcessSignal::User1 => Signal::SIGUSR1,
            ProcessSignal::User2 => Signal::SIGUSR2,
        };
        let group = match (&self.pty_master, signal) {
            (Some(master), ProcessSignal::Interrupt | ProcessSignal::Quit) => {
                spawn::foreground_group(master).unwrap_or(self.pid as i32)
            }
            _ => self.pid as i32,
        };
        killpg(Pid::from_raw(group), sig).is_ok()
    }

    /// SIGKILL to the whole group, and to anything left in its cgroups.
    pub fn kill_group(&self) -> bool {
        let killed = self.pid != 0 && killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL).is_ok();
        if let Some(cg) = &self.cgroups {
            for pid in cg.pids() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        killed
    }

    /// `v1` or `v2` when cgroups enforce this process's limits.
    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.cgroups.as_ref().filter(|cg| !cg.is_empty()).map(|cg| cg.version)
    }

    /// Whether the memory limit killed the process.
    pub fn memory_limited(&self) -> bool {
        self.cgroups.as_ref().is_some_and(|cg| cg.oom_killed())
    }

    /// Kills what is left in the cgroups and removes them (after the process ended).
    pub fn release_cgroups(&self) {
        if let Some(cg) = &self.cgroups {
            for pid in cg.pids() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            cg.remove();
        }
    }

    /// The last `max` bytes of retained output.
    pub fn output_tail(&self, max: usize) -> Vec<u8> {
        lock(&self.state).ring.tail(max)
    }

    pub fn resize(&self, size: TerminalSize) -> Result<(), RpcError> {
        let master = self
            .pty_master
            .as_ref()
            .ok_or_else(|| RpcError::invalid_request(format!("process {} has no terminal", self.id)))?;
        if self.is_closed() {
            return Err(RpcError::invalid_request(format!("process {} has exited", self.id)));
        }
        spawn::set_window_size(master, size).map_err(|e| RpcError::internal(format!("resize failed: {e}")))
    }

    /// Asks the pump to kill the group and finish.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    pub fn info(&self) -> ProcessInfo {
        let st = lock(&self.state);
        ProcessInfo {
            process_id: self.id.clone(),
            pid: Some(self.pid),
            argv: self.argv.clone(),
            tty: self.tty,
            exited: st.exit.is_some(),
            exit_code: st.exit.map(|e| e.code),
            closed: st.closed,
            started_at_ms: self.started_at_ms,
            metadata: self.metadata.clone(),
        }
    }
}

/// Limits the pump enforces itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct PumpLimits {
    pub timeout: Option<Duration>,
    pub output_bytes: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The launch spec a start asks for: the policy, Codex's network signal, and the limits
/// that need the launcher.
fn launch_spec(
    params: &StartParams,
    cwd: &std::path::Path,
    env: &BTreeMap<String, String>,
) -> Result<LaunchSpec, RpcError> {
    let policy = sandbox::SandboxPolicy::from_wire(params.sandbox.as_ref())
        .map_err(|e| RpcError::invalid_params(e.to_string()))?;
    let mut launch = LaunchSpec::for_policy(&policy, Some(cwd), env.get("TMPDIR").map(std::path::Path::new));
    let network_off = params
        .env
        .get("CODEX_SANDBOX_NETWORK_DISABLED")
        .is_some_and(|v| v == "1");
    if network_off || params.enforce_managed_network {
        launch.network = false;
        launch.confine = true;
    }
    launch.tty = params.tty;
    launch.cpu_seconds = params.limits.as_ref().and_then(|l| l.cpu_seconds);
    Ok(launch)
}

/// Credential stores stay out of reach of confined processes.
fn hide_credentials(launch: &mut LaunchSpec, cfg: &ServerConfig) {
    if launch.confine {
        launch.hidden = cfg.bindings.store_dirs();
    }
}

/// Reads the launcher's report until the descriptor closes at `execve`.
async fn read_report(fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>) -> Result<sandbox::Report, RpcError> {
    let mut text = Vec::new();
    let read_all = async {
        loop {
            match fdio::read_chunk(&fd, 64 * 1024).await {
                Ok(chunk) if chunk.is_empty() => return,
                Ok(chunk) => text.extend_from_slice(&chunk),
                Err(_) => return,
            }
        }
    };
    if tokio::time::timeout(LAUNCH_TIMEOUT, read_all).await.is_err() {
        return Err(RpcError::internal("sandbox launcher did not report within 10 s"));
    }
    let mut applied = None;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<LaunchMessage>(line) {
            Ok(LaunchMessage::Applied(report)) => applied = Some(report),
            Ok(LaunchMessage::Failed(e)) => return Err(RpcError::internal(e.to_string())),
            Ok(LaunchMessage::ExecFailed { message, .. }) => return Err(RpcError::internal(message)),
            Err(e) => return Err(RpcError::internal(format!("unreadable sandbox launcher report: {e}"))),
        }
    }
    applied.ok_or_else(|| RpcError::internal("sandbox launcher exited before applying the sandbox"))
}

/// How long a launcher may take to apply the sandbox.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);

/// `process/start`: validates, spawns (through the sandbox launcher when a policy or a
/// limit needs it), registers the process and starts its pump.
pub async fn start(session: &Arc<Session>, params: StartParams, cfg: &ServerConfig) -> Result<StartResult, RpcError> {
    if params.argv.is_empty() {
        return Err(RpcError::invalid_params("argv must not be empty"));
    }
    if params.process_id.is_empty() {
        return Err(RpcError::invalid_params("processId must not be empty"));
    }
    let cwd = params.cwd.path()?.to_path_buf();
    let env = env::build(params.env_policy.as_ref(), &params.env, std::env::vars());
    let size = params.size.unwrap_or(TerminalSize { cols: 80, rows: 24 });
    if params.tty && (size.cols == 0 || size.rows == 0) {
        return Err(RpcError::invalid_params("size.cols and size.rows must be positive"));
    }
    let limits = params.limits.clone().unwrap_or_default();
    let mut launch = launch_spec(&params, &cwd, &env)?;
    hide_credentials(&mut launch, cfg);
    session.processes.check_free(&params.process_id)?;
    let cgroups = if limits.memory_bytes.is_some() || limits.pids.is_some() {
        let name = format!(
            "{}-{}",
            std::process::id(),
            CGROUP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let cg = ProcessCgroups::create(&name, limits.memory_bytes, limits.pids)
            .map_err(|e| RpcError::internal(format!("sandbox layer `cgroup` could not be applied: {e}")))?;
        launch.cgroups = cg.dirs.clone();
        Some(cg)
    } else {
        None
    };
    let spec = spawn::SpawnSpec {
        argv: &params.argv,
        arg0: params.arg0.as_deref(),
        cwd: &cwd,
        env: &env,
        tty: params.tty.then_some(size),
        pipe_stdin: params.pipe_stdin,
        launch: launch.needs_launcher().then_some(&launch),
    };
    let mut spawned = match spawn::spawn(&spec) {
        Ok(s) => s,
        Err(e) => {
            cgroups.iter().for_each(ProcessCgroups::remove);
            return Err(RpcError::internal(e.to_string()));
        }
    };
    let report = match spawned.report.take() {
        None => None,
        Some(fd) => match read_report(fd).await {
            Ok(report) => Some(report),
            Err(e) => {
                let _ = spawned.child.kill().await;
                cgroups.iter().for_each(ProcessCgroups::remove);
                return Err(e);
            }
        },
    };
    let process_id = params.process_id.clone();
    let (version, _) = watch::channel(0);
    let (stdin, stdin_task) = match spawned.stdin {
        Some(fd) => {
            let (stdin, task) = Stdin::new(fd, params.tty);
            (Some(stdin), Some(task))
        }
        None => (None, None),
    };
    let process = Arc::new(Process {
        id: process_id.clone(),
        pid: spawned.pid,
        tty: params.tty,
        argv: params.argv.clone(),
        metadata: params.metadata.clone(),
        started_at_ms: now_ms(),
        state: Mutex::new(State {
            ring: OutputRing::new(cfg.output_retention_bytes, cfg.output_retention_chunks),
            next_seq: 1,
            exit: None,
            closed: false,
            write_ids: HashSet::new(),
            write_order: VecDeque::new(),
        }),
        version,
        stdin: Mutex::new(stdin),
        pty_master: spawned.pty_master.clone(),
        stop: Notify::new(),
        sandboxed: launch.confine,
        cgroups,
    });
    if let Err(e) = session.processes.insert(&process_id, process.clone()) {
        process.kill_group();
        let _ = spawned.child.wait().await;
        process.release_cgroups();
        return Err(e);
    }
    let span = info_span!("process", session = %session.id, process = %process_id, pid = spawned.pid);
    if let Some(task) = stdin_task {
        tokio::spawn(task.instrument(span.clone()));
    }
    let pump = pump::Pump {
        process: process.clone(),
        session: Arc::downgrade(session),
        child: spawned.child,
        sources: spawned.sources,
        limits: PumpLimits {
            timeout: limits.timeout_ms.map(Duration::from_millis),
            output_bytes: limits.output_bytes,
        },
        retention: cfg.process_retention,
        chunk_limit: fdio::chunk_limit(cfg.output_retention_bytes),
    };
    tokio::spawn(pump.run().instrument(span));
    let mut sandbox_report = report.and_then(|r| serde_json::to_value(r).ok());
    if let (Some(Value::Object(map)), Some(cg)) = (sandbox_report.as_mut(), process.cgroup_version()) {
        let cgroup = serde_json::json!({"version": cg, "memoryBytes": limits.memory_bytes, "pids": limits.pids});
        map.insert("cgroup".into(), cgroup);
    }
    Ok(StartResult {
        process_id: params.process_id,
        sandbox_type: if launch.confine { "linuxSeccomp" } else { "none" }.into(),
        sandbox: sandbox_report,
    })
}

static CGROUP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

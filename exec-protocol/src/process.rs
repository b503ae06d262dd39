//! Params, results and notifications of the `process/*` methods.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bytes::Base64Bytes;
use crate::path_uri::PathUri;

/// How the child's base environment is built before `env` is overlaid.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvPolicy {
    /// `all` (the server's environment), `core` (HOME, PATH, SHELL, USER, …) or `none`.
    pub inherit: EnvInherit,
    pub ignore_default_excludes: bool,
    /// Glob patterns (`*`, `?`), case-insensitive, removed from the inherited set.
    pub exclude: Vec<String>,
    pub set: BTreeMap<String, String>,
    /// When non-empty, only variables matching one of these patterns are kept.
    pub include_only: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvInherit {
    All,
    #[default]
    Core,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct TerminalSize {
    pub cols: u16,
    pub rows: u16,
}

/// Resource limits for one process (extension).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessLimits {
    pub timeout_ms: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu_seconds: Option<u64>,
    pub output_bytes: Option<u64>,
}

impl ProcessLimits {
    pub fn is_empty(&self) -> bool {
        *self == ProcessLimits::default()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartParams {
    pub process_id: String,
    pub argv: Vec<String>,
    pub cwd: PathUri,
    pub env: BTreeMap<String, String>,
    pub tty: bool,
    #[serde(default)]
    pub arg0: Option<String>,
    #[serde(default)]
    pub pipe_stdin: bool,
    #[serde(default)]
    pub env_policy: Option<EnvPolicy>,
    /// Sandbox intent, decoded by the sandbox crate (`null` = none).
    #[serde(default)]
    pub sandbox: Option<Value>,
    #[serde(default)]
    pub enforce_managed_network: bool,
    #[serde(default)]
    pub managed_network: Option<Value>,
    #[serde(default)]
    pub network_proxy: Option<Value>,
    #[serde(default)]
    pub shell_snapshot: Option<Value>,
    /// `{threadId, toolCallId}` from Codex; kept for logs and `process/list`.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Initial terminal size for `tty: true` (extension; default 80×24).
    #[serde(default)]
    pub size: Option<TerminalSize>,
    /// Resource limits (extension).
    #[serde(default)]
    pub limits: Option<ProcessLimits>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartResult {
    pub process_id: String,
    /// `none` or `linuxSeccomp`.
    pub sandbox_type: String,
    /// Applied isolation layers (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
    Pty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadParams {
    pub process_id: String,
    #[serde(default)]
    pub after_seq: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<usize>,
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputChunk {
    pub seq: u64,
    pub stream: OutputStream,
    pub chunk: Base64Bytes,
}

/// Why a process ended (extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExitReason {
    Exited,
    Signaled,
    TimedOut,
    MemoryLimit,
    OutputLimit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadResult {
    pub chunks: Vec<OutputChunk>,
    /// Pass `nextSeq - 1` as `afterSeq` to continue where this answer stopped.
    pub next_seq: u64,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub closed: bool,
    pub failure: Option<String>,
    pub sandbox_denied: bool,
    /// Set when output after `afterSeq` was evicted from the retention ring: the
    /// oldest seq still retained (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_before_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExitReason>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteParams {
    pub process_id: String,
    pub chunk: Base64Bytes,
    pub write_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteStatus {
    Accepted,
    UnknownProcess,
    StdinClosed,
    Starting,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteResult {
    pub status: WriteStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessSignal {
    Interrupt,
    Terminate,
    Kill,
    Hangup,
    Quit,
    User1,
    User2,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalParams {
    pub process_id: String,
    pub signal: ProcessSignal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalResult {
    /// Whether a signal was sent (extension: false for unknown or exited processes).
    pub delivered: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessIdParams {
    pub process_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TerminateResult {
    pub running: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeParams {
    pub process_id: String,
    pub cols: u16,
    pub rows: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    pub process_id: String,
    pub pid: Option<u32>,
    pub argv: Vec<String>,
    pub tty: bool,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub closed: bool,
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListResult {
    pub processes: Vec<ProcessInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputNotification<C> {
    pub process_id: String,
    pub seq: u64,
    pub stream: OutputStream,
    pub chunk: C,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitedNotification {
    pub process_id: String,
    pub seq: u64,
    pub exit_code: i32,
    pub sandbox_denied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ExitReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClosedNotification {
    pub process_id: String,
    pub seq: u64,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
            OutputStream::Pty => "pty",
        }
    }
}

/// Encodes a `process/output` notification directly: the base64 text is written straight
/// into the message (it needs no JSON escaping), saving a pass and a copy per chunk on
/// the hottest path of the server.
pub fn encode_output_notification(process_id: &str, seq: u64, stream: OutputStream, data: &[u8]) -> String {
    let id = serde_json::to_string(process_id).unwrap_or_else(|_| "\"\"".into());
    let mut s = String::with_capacity(96 + id.len() + data.len().div_ceil(3) * 4);
    s.push_str(r#"{"method":"process/output","params":{"processId":"#);
    s.push_str(&id);
    s.push_str(r#","seq":"#);
    s.push_str(&seq.to_string());
    s.push_str(r#","stream":""#);
    s.push_str(stream.as_str());
    s.push_str(r#"","chunk":""#);
    crate::Base64Bytes::encode_into(data, &mut s);
    s.push_str(r#""}}"#);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoded_output_matches_serde() {
        let data = b"hi\n\x00\xff";
        let fast = encode_output_notification("p\"1", 7, OutputStream::Stderr, data);
        let slow = serde_json::json!({"method": "process/output", "params": {
            "processId": "p\"1", "seq": 7, "stream": "stderr", "chunk": crate::Base64Bytes::encode(data)}});
        assert_eq!(serde_json::from_str::<serde_json::Value>(&fast).unwrap(), slow);
    }
}

//! Shared harness of the integration suites: starts the real server binary on
//! 127.0.0.1, speaks raw JSON over WebSocket, and cleans up every process it started.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod authority;
pub mod mitm;
pub mod upstream;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_exec-server-under-test");
/// Upper bound for any single wait in a test.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64 from the server")
}

pub fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_logged(extra, env, None)
    }

    /// Like `start_with_env`; with `log`, the server's info log goes to that file.
    pub fn start_logged(extra: &[&str], env: &[(&str, &str)], log: Option<&Path>) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--listen", "ws://127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped());
        match log {
            Some(path) => {
                cmd.stderr(std::fs::File::create(path).expect("log file"));
                cmd.env("RUST_LOG", "info");
            }
            None => {
                cmd.stderr(Stdio::null());
                cmd.env("RUST_LOG", "warn");
            }
        }
        // Tests reach only 127.0.0.1: no proxy unless a test sets one.
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start exec-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the bound URL");
        let url = line.trim().to_string();
        assert!(
            url.starts_with("ws://127.0.0.1:"),
            "first stdout line is the URL, got {url:?}"
        );
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        Server {
            child: Some(child),
            url,
            port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub async fn connect(&self) -> Client {
        Client::connect(&self.url, None).await
    }

    /// A connected client that completed the handshake.
    pub async fn ready_client(&self) -> Client {
        let mut c = self.connect().await;
        c.handshake().await;
        c
    }

    /// Sends SIGTERM and waits for exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw protocol client.
pub struct Client {
    pub ws: Ws,
    next_id: i64,
    pub notifications: VecDeque<Value>,
    /// Responses that arrived while waiting for another id.
    responses: std::collections::HashMap<i64, Value>,
}

impl Client {
    pub async fn connect(url: &str, bearer: Option<&str>) -> Client {
        Self::try_connect(url, bearer).await.expect("websocket connect")
    }

    pub async fn try_connect(url: &str, bearer: Option<&str>) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        if let Some(t) = bearer {
            req.headers_mut()
                .insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
        Ok(Client {
            ws,
            next_id: 1,
            notifications: VecDeque::new(),
            responses: Default::default(),
        })
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.expect("send");
    }

    /// The next message of any kind.
    pub async fn recv(&mut self) -> Value {
        self.try_recv(WAIT).await.expect("a message before the timeout")
    }

    pub async fn try_recv(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()??.ok()?;
            match msg {
                Message::Text(t) => return Some(serde_json::from_str(&t).expect("server sends JSON")),
                Message::Binary(b) => return Some(serde_json::from_slice(&b).expect("server sends JSON")),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// The next raw frame, including Close.
    pub async fn recv_frame(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .ok()?
            .and_then(Result::ok)
    }

    pub async fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_text(json!({"id": id, "method": method, "params": params}).to_string())
            .await;
        id
    }

    /// Waits for the response to `id`, keeping notifications for later.
    pub async fn response(&mut self, id: i64) -> Result<Value, (i64, String)> {
        let msg = loop {
            if let Some(msg) = self.responses.remove(&id) {
                break msg;
            }
            let msg = self.recv().await;
            match msg.get("id").and_then(Value::as_i64) {
                Some(got) if got == id => break msg,
                Some(other) => {
                    self.responses.insert(other, msg);
                }
                None => self.notifications.push_back(msg),
            }
        };
        if let Some(e) = msg.get("error") {
            return Err((
                e["code"].as_i64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_string(),
            ));
        }
        Ok(msg["result"].clone())
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, (i64, String)> {
        let id = self.send_request(method, params).await;
        self.response(id).await
    }

    /// A call that must succeed.
    pub async fn ok(&mut self, method: &str, params: Value) -> Value {
        match self.call(method, params.clone()).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {params} failed: {e:?}"),
        }
    }

    /// A call that must fail; returns (code, message).
    pub async fn err(&mut self, method: &str, params: Value) -> (i64, String) {
        match self.call(method, params.clone()).await {
            Ok(v) => panic!("{method} {params} should fail, got {v}"),
            Err(e) => e,
        }
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send_text(json!({"method": method, "params": params}).to_string())
            .await;
    }

    pub async fn initialize(&mut self, resume: Option<&str>) -> Result<Value, (i64, String)> {
        self.call("initialize", json!({"clientName": "test", "resumeSessionId": resume}))
            .await
    }

    /// `initialize` + `initialized`; returns the session id.
    pub async fn handshake(&mut self) -> String {
        let r = self.initialize(None).await.expect("initialize");
        self.notify("initialized", json!({})).await;
        r["sessionId"].as_str().expect("sessionId").to_string()
    }

    /// The next notification matching `pred` (buffered ones first).
    pub async fn notification(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.notifications.iter().position(&pred) {
            return self.notifications.remove(i).expect("index");
        }
        loop {
            let msg = self.recv().await;
            match msg.get("id").and_then(Value::as_i64) {
                Some(id) => {
                    self.responses.insert(id, msg);
                }
                None if pred(&msg) => return msg,
                None => self.notifications.push_back(msg),
            }
        }
    }

    /// Every notification of `process_id` up to and including `process/closed`.
    pub async fn events_until_closed(&mut self, process_id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let n = self
                .notification(|m| m["params"]["processId"] == json!(process_id))
                .await;
            let closed = n["method"] == "process/closed";
            events.push(n);
            if closed {
                return events;
            }
        }
    }

    pub async fn start(&mut self, process_id: &str, argv: &[&str], extra: Value) -> Value {
        self.ok("process/start", start_params(process_id, argv, extra)).await
    }
}

/// `process/start` params with a sane default env and cwd, merged with `extra`.
pub fn start_params(process_id: &str, argv: &[&str], extra: Value) -> Value {
    let mut p = json!({
        "processId": process_id,
        "argv": argv,
        "cwd": uri(&std::env::temp_dir()),
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        "tty": false,
    });
    if let (Some(base), Some(more)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    p
}

/// Concatenated decoded output of `process/output` events.
pub fn output_of(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .filter(|e| e["method"] == "process/output")
        .flat_map(|e| unb64(e["params"]["chunk"].as_str().unwrap_or("")))
        .collect()
}

/// A fresh temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    /// A temporary directory under `base` (for paths outside `/tmp`).
    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        let dir = base.join(format!(
            "exec-server-test-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir.canonicalize().expect("canonical temp dir"))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    t ^ (N.fetch_add(1, Ordering::Relaxed) << 32)
}

/// Pids of live (non-zombie) processes whose environment contains `marker`.
pub fn pids_with_env_marker(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().starts_with('Z')))
            .unwrap_or(false);
        if !zombie {
            out.push(pid);
        }
    }
    out
}

/// Polls `cond` every 10 ms for at most `WAIT`.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

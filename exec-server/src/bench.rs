//! `exec-server bench`: measures the server side by side with a local baseline in the
//! same run: exec round trip of `true` (p50/p99) against a direct local spawn, execs per
//! second with 1 and 32 in flight, stdout throughput through `process/output` against a
//! local pipe, echo latency over a pipe and a PTY against local ones, idle memory, and
//! 1,000 connections with 500 processes at once. Without `--url` it starts the server
//! binary itself (so it can read the server's memory use).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exec_protocol::Base64Bytes;
use exec_protocol::{Notification, methods};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::client::ExecServerClient;
use crate::session::lock;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Measure this server instead of starting one (memory figures are then skipped).
    #[arg(long)]
    pub url: Option<String>,
    /// Fewer iterations, for a quick look.
    #[arg(long)]
    pub quick: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run one section only: memory, exec, throughput, echo or http.
    #[arg(long, value_parser = ["memory", "exec", "throughput", "echo", "http"])]
    pub only: Option<String>,
    /// Bytes of stdout for the throughput run.
    #[arg(long, default_value_t = 256 << 20)]
    pub stdout_bytes: u64,
}

/// One measured line of the report.
#[derive(Serialize)]
struct Row {
    metric: &'static str,
    value: f64,
    unit: &'static str,
    baseline: Option<f64>,
    target: String,
    pass: bool,
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Notification>>>>;

/// A client whose notifications are routed to per-process channels.
struct Bench {
    client: Arc<ExecServerClient>,
    routes: Routes,
    cwd: String,
    next: AtomicU64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

impl Bench {
    async fn connect(url: &str) -> Result<Bench, String> {
        let (client, mut notes) = ExecServerClient::connect(url, None).await.map_err(|e| e.to_string())?;
        client
            .initialize("exec-server-bench", None)
            .await
            .map_err(|e| e.to_string())?;
        let routes: Routes = Arc::default();
        let r = routes.clone();
        tokio::spawn(async move {
            while let Some(n) = notes.recv().await {
                let id = n.params.get("processId").and_then(Value::as_str).map(str::to_string);
                if let Some(tx) = id.and_then(|id| lock(&r).get(&id).cloned()) {
                    let _ = tx.send(n);
                }
            }
        });
        Ok(Bench {
            client: Arc::new(client),
            routes,
            cwd: "file:///tmp".into(),
            next: AtomicU64::new(0),
        })
    }

    async fn start(
        &self,
        argv: &[&str],
        tty: bool,
        pipe_stdin: bool,
    ) -> Result<(String, mpsc::UnboundedReceiver<Notification>), String> {
        let id = format!("b{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.routes).insert(id.clone(), tx);
        let params = json!({"processId": id, "argv": argv, "cwd": self.cwd, "env": {"PATH": "/usr/bin:/bin"}, "tty": tty, "pipeStdin": pipe_stdin});
        self.client
            .request_value(methods::PROCESS_START, params)
            .await
            .map_err(|e| e.to_string())?;
        Ok((id, rx))
    }

    async fn finish(&self, id: &str, mut rx: mpsc::UnboundedReceiver<Notification>) -> Result<u64, String> {
        let mut bytes = 0u64;
        while let Some(n) = rx.recv().await {
            match n.method.as_str() {
                methods::PROCESS_OUTPUT => {
                    if let Some(chunk) = n.params.get("chunk").and_then(Value::as_str) {
                        bytes += Base64Bytes::decode(chunk).map(|d| d.len() as u64).unwrap_or(0);
                    }
                }
                methods::PROCESS_CLOSED => break,
                _ => {}
            }
        }
        lock(&self.routes).remove(id);
        Ok(bytes)
    }

    /// start → closed of `true`.
    async fn exec_true(&self) -> Result<Duration, String> {
        let t = Instant::now();
        let (id, rx) = self.start(&["true"], false, false).await?;
        self.finish(&id, rx).await?;
        Ok(t.elapsed())
    }
}

/// A single-task WebSocket client for latency: no helper tasks or channels between the
/// socket and the measurement, so the numbers are the server's.
struct Lean {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Lean {
    async fn connect(url: &str) -> Result<Lean, String> {
        // Room for a 64 MiB body in one buffered `http/request` answer.
        let config =
            tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().max_message_size(Some(256 << 20));
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| e.to_string())?;
        let mut lean = Lean { ws, next_id: 1 };
        lean.send("initialize", json!({"clientName": "bench-lean"})).await?;
        lean.until(|v| v.get("id").is_some()).await?;
        lean.ws
            .send(Message::text(r#"{"method":"initialized","params":{}}"#))
            .await
            .map_err(|e| e.to_string())?;
        Ok(lean)
    }

    async fn send(&mut self, method: &str, params: Value) -> Result<(), String> {
        let text = json!({"id": self.next_id, "method": method, "params": params}).to_string();
        self.next_id += 1;
        self.ws.send(Message::text(text)).await.map_err(|e| e.to_string())
    }

    /// Reads messages until one matches.
    async fn until(&mut self, want: impl Fn(&Value) -> bool) -> Result<Value, String> {
        while let Some(msg) = self.ws.next().await {
            if let Message::Text(t) = msg.map_err(|e| e.to_string())? {
                let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                if v.get("error").is_some() {
                    return Err(v.to_string());
                }
                if want(&v) {
                    return Ok(v);
                }
            }
        }
        Err("connection closed".into())
    }

    async fn exec_true(&mut self, id: &str) -> Result<Duration, String> {
        self.exec_true_in(id, Value::Null).await
    }

    /// start → closed of `true` under `sandbox`.
    async fn exec_true_in(&mut self, id: &str, sandbox: Value) -> Result<Duration, String> {
        let t = Instant::now();
        let params = json!({"processId": id, "argv": ["true"], "cwd": "file:///tmp", "env": {}, "tty": false, "sandbox": sandbox});
        self.send(methods::PROCESS_START, params).await?;
        self.until(|v| v["method"] == methods::PROCESS_CLOSED && v["params"]["processId"] == id)
            .await?;
        Ok(t.elapsed())
    }

    async fn echo(&mut self, tty: bool, rounds: usize) -> Result<Vec<Duration>, String> {
        let id = if tty { "echo-pty" } else { "echo-pipe" };
        let argv = if tty {
            json!(["sh", "-c", "stty raw -echo; echo ready; exec cat"])
        } else {
            json!(["cat"])
        };
        let params = json!({"processId": id, "argv": argv, "cwd": "file:///tmp", "env": {"PATH": "/usr/bin:/bin"}, "tty": tty, "pipeStdin": true});
        self.send(methods::PROCESS_START, params).await?;
        if tty {
            self.until(|v| v["method"] == methods::PROCESS_OUTPUT).await?;
        }
        let mut out = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let t = Instant::now();
            let params = json!({"processId": id, "chunk": Base64Bytes::encode(b"x"), "writeId": i.to_string()});
            self.send(methods::PROCESS_WRITE, params).await?;
            self.until(|v| v["method"] == methods::PROCESS_OUTPUT).await?;
            out.push(t.elapsed());
        }
        self.send(methods::PROCESS_TERMINATE, json!({"processId": id})).await?;
        self.until(|v| v["method"] == methods::PROCESS_CLOSED).await?;
        Ok(out)
    }
}

impl Lean {
    /// Runs `head -c bytes /dev/zero` and decodes every `process/output` chunk (parsed with
    /// borrowed strings); returns the decoded byte count.
    async fn stdout_bytes(&mut self, bytes: u64) -> Result<u64, String> {
        #[derive(serde::Deserialize)]
        struct Note<'a> {
            #[serde(borrow)]
            method: Option<&'a str>,
            #[serde(borrow)]
            params: Option<Params<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(borrow, default)]
            chunk: Option<&'a str>,
        }
        let params = json!({"processId": "stdout", "argv": ["head", "-c", bytes.to_string(), "/dev/zero"], "cwd": "file:///tmp", "env": {"PATH": "/usr/bin:/bin"}, "tty": false});
        self.send(methods::PROCESS_START, params).await?;
        let mut total = 0u64;
        while let Some(msg) = self.ws.next().await {
            let Message::Text(text) = msg.map_err(|e| e.to_string())? else {
                continue;
            };
            let note: Note<'_> = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            match note.method {
                Some(methods::PROCESS_OUTPUT) => {
                    let chunk = note.params.and_then(|p| p.chunk).unwrap_or_default();
                    total += Base64Bytes::decode(chunk)
                        .map(|d| d.len() as u64)
                        .map_err(|e| e.to_string())?;
                }
                Some(methods::PROCESS_CLOSED) => return Ok(total),
                _ => {}
            }
        }
        Err("connection closed".into())
    }

    /// One buffered GET through the broker; returns the decoded body length. The answer
    /// is parsed with borrowed strings, as a client that cares about speed would.
    async fn http_get(&mut self, url: &str) -> Result<usize, String> {
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            id: Option<u64>,
            #[serde(borrow)]
            result: Option<Body<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Body<'a> {
            #[serde(rename = "bodyBase64", borrow)]
            body: &'a str,
        }
        let id = self.next_id;
        self.send(
            methods::HTTP_REQUEST,
            json!({"method": "GET", "url": url, "requestId": "b"}),
        )
        .await?;
        while let Some(msg) = self.ws.next().await {
            let Message::Text(text) = msg.map_err(|e| e.to_string())? else {
                continue;
            };
            let answer: Answer<'_> = serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
            if answer.id == Some(id) {
                let body = answer
                    .result
                    .ok_or_else(|| format!("error answer: {}", text.as_str()))?
                    .body;
                return Base64Bytes::decode(body).map(|b| b.len()).map_err(|e| e.to_string());
            }
        }
        Err("connection closed".into())
    }

    /// One streamed GET through the broker; returns the decoded body length.
    async fn http_stream(&mut self, url: &str) -> Result<usize, String> {
        self.send(
            methods::HTTP_REQUEST,
            json!({"method": "GET", "url": url, "requestId": "s", "streamResponse": true}),
        )
        .await?;
        let mut total = 0;
        loop {
            let v = self.until(|v| v["method"] == methods::HTTP_BODY_DELTA).await?;
            let delta = v["params"]["deltaBase64"].as_str().unwrap_or_default();
            total += Base64Bytes::decode(delta).map(|b| b.len()).unwrap_or(0);
            if v["params"]["done"] == true {
                return Ok(total);
            }
        }
    }

    /// Requests per second with `depth` GETs in flight on this one connection.
    async fn http_pipelined(&mut self, url: &str, depth: usize, total: usize) -> Result<f64, String> {
        let t = Instant::now();
        let mut sent = 0;
        let mut done = 0;
        while sent < depth.min(total) {
            self.send(
                methods::HTTP_REQUEST,
                json!({"method": "GET", "url": url, "requestId": "p"}),
            )
            .await?;
            sent += 1;
        }
        while done < total {
            self.until(|v| v.get("id").is_some()).await?;
            done += 1;
            if sent < total {
                self.send(
                    methods::HTTP_REQUEST,
                    json!({"method": "GET", "url": url, "requestId": "p"}),
                )
                .await?;
                sent += 1;
            }
        }
        Ok(total as f64 / t.elapsed().as_secs_f64())
    }
}

/// A local HTTP server for the broker figures: `/small` (100 bytes), `/big` (64 MiB).
async fn http_upstream() -> Result<u16, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let small = bytes::Bytes::from(vec![b's'; 100]);
    let big = bytes::Bytes::from(vec![b'b'; 64 << 20]);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (small, big) = (small.clone(), big.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/big" {
                        big.clone()
                    } else {
                        small.clone()
                    };
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(body))) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok(port)
}

/// The broker figures, each beside a direct reqwest client in this process.
async fn http_rows(lean: &mut Lean, quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let port = http_upstream().await?;
    let small = format!("http://127.0.0.1:{port}/small");
    let big = format!("http://127.0.0.1:{port}/big");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let direct = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let n = if quick { 300 } else { 2000 };
    let (mut via, mut base) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..50 {
        lean.http_get(&small).await?;
        let _ = direct
            .get(&small)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await;
    }
    for _ in 0..n {
        let t = Instant::now();
        let r = direct.get(&small).send().await.map_err(|e| e.to_string())?;
        r.bytes().await.map_err(|e| e.to_string())?;
        base.push(t.elapsed());
        let t = Instant::now();
        lean.http_get(&small).await?;
        via.push(t.elapsed());
    }
    via.sort();
    base.sort();
    let overhead = percentile(&via, 0.5) - percentile(&base, 0.5);
    rows.push(Row {
        metric: "http 100 B GET p50",
        value: percentile(&via, 0.5),
        unit: "ms",
        baseline: Some(percentile(&base, 0.5)),
        target: "-".into(),
        pass: true,
    });
    rows.push(Row {
        metric: "http 100 B GET p50 overhead",
        value: overhead,
        unit: "ms",
        baseline: None,
        target: "<= 0.1 ms".into(),
        pass: overhead <= 0.1,
    });
    let rate = lean
        .http_pipelined(&small, 16, if quick { 3000 } else { 20000 })
        .await?;
    rows.push(Row {
        metric: "http GETs/s, 16 in flight",
        value: rate,
        unit: "/s",
        baseline: None,
        target: ">= 25000/s".into(),
        pass: rate >= 25_000.0,
    });
    let t = Instant::now();
    let got = lean.http_stream(&big).await?;
    let streamed = got as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    let got2 = lean.http_get(&big).await?;
    let buffered = got2 as f64 / t.elapsed().as_secs_f64() / 1e6;
    let t = Instant::now();
    let direct_len = direct
        .get(&big)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?
        .len();
    let direct_rate = direct_len as f64 / t.elapsed().as_secs_f64() / 1e6;
    if got != 64 << 20 || got2 != 64 << 20 {
        return Err(format!("64 MiB body arrived as {got} / {got2} bytes"));
    }
    rows.push(Row {
        metric: "http 64 MiB streamed",
        value: streamed,
        unit: "MB/s",
        baseline: Some(direct_rate),
        target: ">= 800 MB/s".into(),
        pass: streamed >= 800.0,
    });
    rows.push(Row {
        metric: "http 64 MiB buffered",
        value: buffered,
        unit: "MB/s",
        baseline: Some(direct_rate),
        target: ">= 400 MB/s".into(),
        pass: buffered >= 400.0,
    });
    Ok(())
}

fn local_spawn(n: usize) -> Vec<Duration> {
    (0..n)
        .filter_map(|_| {
            let t = Instant::now();
            std::process::Command::new("true").status().ok().map(|_| t.elapsed())
        })
        .collect()
}

/// A local spawn as an async program does it: tokio, stdout and stderr piped, output
/// read to the end and the exit awaited (the same work the server does per process).
async fn local_spawn_piped(n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = tokio::process::Command::new("true").stdin(Stdio::null()).output().await;
        if r.is_ok() {
            out.push(t.elapsed());
        }
    }
    out
}

fn local_pipe_throughput(bytes: u64) -> f64 {
    let t = Instant::now();
    let Ok(mut child) = std::process::Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
    else {
        return f64::NAN;
    };
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    if let Some(out) = child.stdout.as_mut() {
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    let _ = child.wait();
    total as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn local_echo(tty: bool, rounds: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    if tty {
        let Ok(pty) = nix::pty::openpty(None, None) else {
            return out;
        };
        let slave: OwnedFd = pty.slave;
        let (Ok(a), Ok(b)) = (slave.try_clone(), slave.try_clone()) else {
            return out;
        };
        let Ok(mut child) = std::process::Command::new("sh")
            .args(["-c", "stty raw -echo; exec cat"])
            .stdin(Stdio::from(a))
            .stdout(Stdio::from(b))
            .spawn()
        else {
            return out;
        };
        drop(slave);
        let mut master = std::fs::File::from(pty.master);
        std::thread::sleep(Duration::from_millis(100));
        let mut byte = [0u8; 1];
        for _ in 0..rounds {
            let t = Instant::now();
            if master.write_all(b"x").is_err() || master.read(&mut byte).is_err() {
                break;
            }
            out.push(t.elapsed());
        }
        let _ = child.kill();
        let _ = child.wait();
    } else {
        let Ok(mut child) = std::process::Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            return out;
        };
        let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return out;
        };
        let mut byte = [0u8; 1];
        for _ in 0..rounds {
            let t = Instant::now();
            if stdin.write_all(b"x").is_err() || stdout.read(&mut byte).is_err() {
                break;
            }
            out.push(t.elapsed());
        }
        drop(stdin);
        let _ = child.wait();
    }
    out
}

/// Live child processes of `pid`.
fn children_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The server this run measures: started here, or given with `--url`.
struct Target {
    url: String,
    child: Option<std::process::Child>,
}

impl Target {
    fn start() -> Result<Target, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .args([
                "--listen",
                "ws://127.0.0.1:0",
                "--detach-grace-ms",
                "0",
                "--process-retention-ms",
                "1000",
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map_err(|e| e.to_string())?;
        Ok(Target {
            url: line.trim().to_string(),
            child: Some(child),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

/// Memory first, on a fresh server: idle RSS, RSS per idle connection, then 1,000
/// connections with 500 processes at once.
async fn memory_rows(target: &Target, idle_rss: Option<u64>, rows: &mut Vec<Row>) -> Result<(), String> {
    if let (Some(pid), Some(idle)) = (target.pid(), idle_rss) {
        rows.push(Row {
            metric: "idle RSS",
            value: idle as f64 / 1024.0,
            unit: "MiB",
            baseline: None,
            target: "<= 10 MiB".into(),
            pass: idle <= 10 * 1024,
        });
        let before = rss_kib(pid).unwrap_or(0);
        let mut conns = Vec::new();
        for _ in 0..1000 {
            let (c, notes) = ExecServerClient::connect(&target.url, None)
                .await
                .map_err(|e| e.to_string())?;
            c.initialize("idle", None).await.map_err(|e| e.to_string())?;
            conns.push((c, notes));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = rss_kib(pid).unwrap_or(0);
        let per = after.saturating_sub(before) as f64 / 1000.0;
        rows.push(Row {
            metric: "RSS per idle connection",
            value: per,
            unit: "KiB",
            baseline: None,
            target: "<= 64 KiB".into(),
            pass: per <= 64.0,
        });
        // 500 processes at once, spread over the open connections.
        let t = Instant::now();
        let mut starts = Vec::new();
        for i in 0..500usize {
            let params = json!({"processId": format!("many{i}"), "argv": ["sleep", "2"], "cwd": "file:///tmp", "env": {}, "tty": i % 5 == 0});
            let c = &conns[i % conns.len()].0;
            starts.push(c.request_value(methods::PROCESS_START, params));
        }
        let results = futures_util::future::join_all(starts).await;
        let failures = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            eprintln!("first failure: {e}");
        }
        let ok = failures == 0;
        rows.push(Row {
            metric: "1000 connections + 500 processes",
            value: (500 - failures) as f64,
            unit: "started",
            baseline: None,
            target: format!("500 without error ({:.0} ms)", t.elapsed().as_secs_f64() * 1000.0),
            pass: ok,
        });
        let peak = rss_kib(pid).unwrap_or(0);
        rows.push(Row {
            metric: "RSS with 1000 conns + 500 procs",
            value: peak as f64 / 1024.0,
            unit: "MiB",
            baseline: None,
            target: "-".into(),
            pass: true,
        });
        drop(conns);
        // Let the 1,000 sessions and 500 processes wind down before timing anything.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && children_of(pid) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    Ok(())
}

/// Exec round trip, and execs per second with 1 and 32 in flight.
async fn exec_rows(lean: &mut Lean, bench: &Arc<Bench>, quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let n = if quick { 100 } else { 500 };
    // Exec round trip of `true`, sequential; warm up first.
    for i in 0..20 {
        lean.exec_true(&format!("warm{i}")).await?;
    }
    let mut remote = Vec::with_capacity(n);
    for i in 0..n {
        remote.push(lean.exec_true(&format!("true{i}")).await?);
    }
    remote.sort();
    let mut local = local_spawn(n);
    local.sort();
    let (p50, p99, base50) = (
        percentile(&remote, 0.5),
        percentile(&remote, 0.99),
        percentile(&local, 0.5),
    );
    rows.push(Row {
        metric: "exec `true` p50",
        value: p50,
        unit: "ms",
        baseline: Some(base50),
        target: format!("<= 1.5 ms and <= 1.5x local ({:.2} ms)", 1.5 * base50),
        pass: p50 <= 1.5 && p50 <= 1.5 * base50,
    });
    let mut piped = local_spawn_piped(n).await;
    piped.sort();
    rows.push(Row {
        metric: "  local tokio spawn, piped, p50",
        value: percentile(&piped, 0.5),
        unit: "ms",
        baseline: None,
        target: "reference point".into(),
        pass: true,
    });
    rows.push(Row {
        metric: "exec `true` p99",
        value: p99,
        unit: "ms",
        baseline: Some(percentile(&local, 0.99)),
        target: "-".into(),
        pass: true,
    });

    // Execs per second with 1 and 32 in flight.
    let total: f64 = remote.iter().map(Duration::as_secs_f64).sum();
    let one = n as f64 / total;
    rows.push(Row {
        metric: "execs/s, 1 in flight",
        value: one,
        unit: "/s",
        baseline: Some(n as f64 / local.iter().map(Duration::as_secs_f64).sum::<f64>()),
        target: "-".into(),
        pass: true,
    });
    let count = if quick { 640 } else { 3200 };
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let b = bench.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..count / 32 {
                b.exec_true().await?;
            }
            let _ = w;
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let rate = count as f64 / t.elapsed().as_secs_f64();
    rows.push(Row {
        metric: "execs/s, 32 in flight",
        value: rate,
        unit: "/s",
        baseline: None,
        target: ">= 1200/s".into(),
        pass: rate >= 1200.0,
    });

    // The same round trip under workspace-write with the network off (every layer).
    let policy = json!({"type": "workspace-write", "writableRoots": [], "networkAccess": false});
    for i in 0..10 {
        lean.exec_true_in(&format!("sbwarm{i}"), policy.clone()).await?;
    }
    let mut boxed = Vec::with_capacity(n / 2);
    for i in 0..n / 2 {
        boxed.push(lean.exec_true_in(&format!("sb{i}"), policy.clone()).await?);
    }
    boxed.sort();
    let sb50 = percentile(&boxed, 0.5);
    rows.push(Row {
        metric: "sandboxed exec `true` p50",
        value: sb50,
        unit: "ms",
        baseline: Some(p50),
        target: format!("<= 3 ms and <= 2x unsandboxed ({:.2} ms)", 2.0 * p50),
        pass: sb50 <= 3.0 && sb50 <= 2.0 * p50,
    });
    Ok(())
}

/// Stdout through `process/output` against a local pipe.
async fn throughput_rows(lean: &mut Lean, bytes: u64, rows: &mut Vec<Row>) -> Result<(), String> {
    let t = Instant::now();
    let got = lean.stdout_bytes(bytes).await?;
    let mbps = got as f64 / t.elapsed().as_secs_f64() / 1e6;
    if got != bytes {
        return Err(format!("throughput run delivered {got} of {bytes} bytes"));
    }
    let base = local_pipe_throughput(bytes);
    rows.push(Row {
        metric: "stdout through process/output",
        value: mbps,
        unit: "MB/s",
        baseline: Some(base),
        target: ">= 1000 MB/s".into(),
        pass: mbps >= 1000.0,
    });
    Ok(())
}

/// Echo latency over a pipe and a PTY against local ones.
async fn echo_rows(lean: &mut Lean, quick: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    // Echo latency.
    let rounds = if quick { 200 } else { 1000 };
    for (tty, name, goal) in [(false, "echo p50, pipe", 0.10), (true, "echo p50, pty", 0.15)] {
        let mut remote = lean.echo(tty, rounds).await?;
        remote.sort();
        let mut local = local_echo(tty, rounds);
        local.sort();
        let p50 = percentile(&remote, 0.5);
        rows.push(Row {
            metric: name,
            value: p50,
            unit: "ms",
            baseline: Some(percentile(&local, 0.5)),
            target: format!("<= {goal} ms"),
            pass: p50 <= goal,
        });
    }

    Ok(())
}

pub async fn run(args: BenchArgs) -> ExitCode {
    crate::server::raise_fd_limit();
    match run_inner(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("exec-server bench: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(args: BenchArgs) -> Result<bool, String> {
    let target = match &args.url {
        Some(url) => Target {
            url: url.clone(),
            child: None,
        },
        None => Target::start()?,
    };
    let mut rows = Vec::new();
    let want = |section: &str| args.only.as_deref().is_none_or(|o| o == section);
    if args.url.is_none() && want("memory") {
        // Memory and scale get their own server, so the latency figures below come from
        // a fresh one.
        let scale = Target::start()?;
        let idle = scale.pid().and_then(rss_kib);
        memory_rows(&scale, idle, &mut rows).await?;
    }
    let bench = Arc::new(Bench::connect(&target.url).await?);
    let mut lean = Lean::connect(&target.url).await?;
    if want("exec") {
        exec_rows(&mut lean, &bench, args.quick, &mut rows).await?;
    }
    if want("throughput") {
        throughput_rows(&mut lean, args.stdout_bytes, &mut rows).await?;
    }
    if want("echo") {
        echo_rows(&mut lean, args.quick, &mut rows).await?;
    }
    if want("http") {
        http_rows(&mut lean, args.quick, &mut rows).await?;
    }

    let all_pass = rows.iter().all(|r| r.pass);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
    } else {
        println!("{:<34} {:>12} {:>12}  {:<40}", "metric", "value", "baseline", "target");
        for r in &rows {
            let base = r.baseline.map(|b| format!("{b:.3}")).unwrap_or_else(|| "-".into());
            println!(
                "{:<34} {:>8.3} {:<4}{:>12}  {:<40} {}",
                r.metric,
                r.value,
                r.unit,
                base,
                r.target,
                if r.pass { "ok" } else { "MISS" }
            );
        }
    }
    Ok(all_pass)
}

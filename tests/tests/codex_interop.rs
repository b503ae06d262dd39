//! The real Codex CLI (0.169.0) runs its tools through our server as its only
//! environment, driven by a mock Responses-API model on 127.0.0.1 (as described in
//! `shared/reference/codex-as-client.md` section 1): `exec_command` over pipes and a
//! PTY, `write_stdin`, and `apply_patch` adding a file in a missing directory, updating
//! and deleting. The assertions check files and tool outputs that only our server could
//! have produced (a marker variable exists only in the server's environment).
//!
//! The binary is found through `EXEC_SERVER_CODEX_BIN` (set by `.ci/run`, which installs
//! it with `scripts/install-codex.sh`). Without it the test is skipped with a reason,
//! unless `EXEC_SERVER_CODEX_REQUIRED=1`, as in CI, where a missing binary fails it.

mod common;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::upstream::read_body;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

fn codex_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EXEC_SERVER_CODEX_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-codex.sh"))
        .arg("--print-bin")
        .output()
        .ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path))
}

fn required() -> bool {
    std::env::var("EXEC_SERVER_CODEX_REQUIRED").is_ok_and(|v| v == "1")
}

/// The scripted model turns, chosen by how many tool outputs the request carries.
fn turn(scenario: &Scenario, step: usize, inputs: &[Value]) -> Vec<Value> {
    if let Scenario::Sandboxed { outside } = scenario {
        return sandboxed_turn(outside, step);
    }
    let call = |id: &str, name: &str, args: Value| json!({"type": "function_call", "call_id": id, "name": name, "arguments": args.to_string()});
    let patch =
        |id: &str, body: &str| json!({"type": "custom_tool_call", "call_id": id, "name": "apply_patch", "input": body});
    match step {
        0 => vec![call(
            "call_1",
            "exec_command",
            json!({"cmd": "printf 'hello-from-env:%s' \"$E2E_SERVER_MARKER\" > out.txt && cat out.txt", "yield_time_ms": 10000}),
        )],
        1 => vec![patch(
            "call_2",
            "*** Begin Patch\n*** Add File: notes.txt\n+line one from apply_patch\n+line two from apply_patch\n*** Add File: sub/deep/extra.txt\n+extra\n*** End Patch",
        )],
        2 => vec![patch(
            "call_3",
            "*** Begin Patch\n*** Update File: notes.txt\n@@\n line one from apply_patch\n-line two from apply_patch\n+line two updated\n*** Delete File: sub/deep/extra.txt\n*** End Patch",
        )],
        3 => vec![call(
            "call_4",
            "exec_command",
            json!({"cmd": "cat notes.txt && ls", "yield_time_ms": 10000}),
        )],
        4 => vec![call(
            "call_5",
            "exec_command",
            json!({"cmd": "read line; echo got:$line", "tty": true, "yield_time_ms": 500}),
        )],
        5 => {
            let session = inputs
                .iter()
                .rev()
                .filter_map(|i| i.get("output").and_then(Value::as_str))
                .find_map(|o| o.split("session ID ").nth(1))
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            vec![call(
                "call_6",
                "write_stdin",
                json!({"session_id": session, "chars": "ping\n", "yield_time_ms": 5000}),
            )]
        }
        _ => vec![
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "scenario done"}]}),
        ],
    }
}

fn tool_outputs(body: &Value) -> Vec<Value> {
    body["input"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    matches!(
                        i["type"].as_str(),
                        Some("function_call_output" | "custom_tool_call_output")
                    )
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Clone)]
enum Scenario {
    /// Every tool, with `--dangerously-bypass-approvals-and-sandbox`.
    Full,
    /// `-s workspace-write`: work inside the workspace, then try to write `outside`.
    Sandboxed { outside: PathBuf },
}

fn sandboxed_turn(outside: &Path, step: usize) -> Vec<Value> {
    let call = |id: &str, cmd: String| json!({"type": "function_call", "call_id": id, "name": "exec_command", "arguments": json!({"cmd": cmd, "yield_time_ms": 10000}).to_string()});
    match step {
        0 => vec![call("call_in", "printf inside > in.txt && cat in.txt".into())],
        1 => vec![call(
            "call_out",
            format!("printf escaped > {}/escape.txt", outside.display()),
        )],
        2 => vec![
            json!({"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch",
            "input": "*** Begin Patch\n*** Add File: sub/patched.txt\n+patched inside\n*** End Patch"}),
        ],
        _ => vec![
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "sandboxed scenario done"}]}),
        ],
    }
}

type Log = Arc<Mutex<Vec<Value>>>;

async fn model(req: Request<Incoming>, log: Log, scenario: Scenario) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = read_body(req.into_body()).await;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outputs = tool_outputs(&body);
    log.lock().unwrap().push(body);
    let mut sse = String::new();
    for item in turn(&scenario, outputs.len(), &outputs) {
        let event = json!({"type": "response.output_item.done", "item": item});
        sse.push_str(&format!("event: response.output_item.done\ndata: {event}\n\n"));
    }
    let done = json!({"type": "response.completed", "response": {"id": format!("resp_{}", outputs.len())}});
    sse.push_str(&format!("event: response.completed\ndata: {done}\n\n"));
    let mut res = Response::new(Full::new(Bytes::from(sse)));
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    Ok(res)
}

async fn start_model(log: Log, scenario: Scenario) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (log, scenario) = (log.clone(), scenario.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| model(req, log.clone(), scenario.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

fn write_config(home: &Path, model_port: u16, server_url: &str) {
    let config = format!(
        r#"model = "gpt-5.5"
model_provider = "e2e_mock"
[model_providers.e2e_mock]
name = "e2e-mock"
base_url = "http://127.0.0.1:{model_port}/v1"
wire_api = "responses"
env_key = "E2E_MOCK_API_KEY"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
[features]
plugins = false
apps = false
remote_plugin = false
"#
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let envs = format!(
        r#"default = "e2e"
include_local = false
[[environments]]
id = "e2e"
url = "{server_url}"
connect_timeout_sec = 5
initialize_timeout_sec = 10
"#
    );
    std::fs::write(home.join("environments.toml"), envs).unwrap();
}

/// The Codex binary, or `None` (after checking that CI does not require it).
fn codex() -> Option<PathBuf> {
    let found = codex_bin().filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            !required(),
            "EXEC_SERVER_CODEX_REQUIRED=1 but no Codex binary was found (run scripts/install-codex.sh)"
        );
        eprintln!("SKIPPED: Codex CLI 0.169.0 not installed (scripts/install-codex.sh installs it)");
    }
    found
}

/// Runs `codex exec` in `run/work` with `run/codex-home`, against `server_url`.
async fn run_codex(
    codex: &Path,
    run: &TempDir,
    model_port: u16,
    server_url: &str,
    mode: &[&str],
) -> std::process::Output {
    let (home, work) = (run.join("codex-home"), run.join("work"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    write_config(&home, model_port, server_url);
    // A closed loopback port as proxy keeps Codex from reaching anything else.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = format!("http://127.0.0.1:{closed}");
    let child = tokio::process::Command::new(codex)
        .args(["exec", "--skip-git-repo-check", "--json", "-o"])
        .arg(run.join("last_message.txt"))
        .arg("-C")
        .arg(&work)
        .args(mode)
        .arg("Run the codex-e2e scenario.")
        .env("CODEX_HOME", &home)
        .env("E2E_MOCK_API_KEY", "dummy")
        .env_remove("E2E_SERVER_MARKER")
        .envs([("HTTP_PROXY", &proxy), ("HTTPS_PROXY", &proxy), ("ALL_PROXY", &proxy)])
        .envs([("NO_PROXY", "127.0.0.1,localhost"), ("no_proxy", "127.0.0.1,localhost")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start codex");
    tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("codex finishes")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_workspace_write_is_enforced_by_our_sandbox() {
    let Some(codex) = codex() else { return };
    let run = TempDir::new("codex-sb");
    // Outside every root `workspace-write` opens (cwd, /tmp, TMPDIR).
    let outside = TempDir::new_in(Path::new("/var/tmp"), "codex-outside");
    let log_path = run.join("server.log");
    let server = Server::start_logged(&[], &[], Some(&log_path));
    let log: Log = Arc::default();
    let model_port = start_model(
        log.clone(),
        Scenario::Sandboxed {
            outside: outside.path().to_path_buf(),
        },
    )
    .await;
    let out = run_codex(&codex, &run, model_port, &server.url, &["-s", "workspace-write"]).await;
    let work = run.join("work");
    let requests = log.lock().unwrap().clone();
    let context = format!(
        "codex status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{context}");
    assert_eq!(requests.len(), 4, "one model request per step\n{context}");
    // Inside the workspace: the command and the patch worked.
    assert_eq!(
        std::fs::read_to_string(work.join("in.txt")).unwrap(),
        "inside",
        "{context}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("sub/patched.txt")).unwrap(),
        "patched inside\n",
        "{context}"
    );
    // Outside: denied by our sandbox, reported as such.
    assert!(!outside.join("escape.txt").exists(), "{context}");
    let outputs = tool_outputs(requests.last().unwrap());
    let denied = outputs
        .iter()
        .find(|o| o["call_id"] == "call_out")
        .map(|o| o["output"].to_string())
        .unwrap_or_default();
    assert!(denied.contains("Permission denied"), "{denied}");
    let server_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let exits: Vec<&str> = server_log.lines().filter(|l| l.contains("process exited")).collect();
    assert!(exits.iter().any(|l| l.contains("sandbox_denied=true")), "{exits:#?}");
    assert!(
        exits
            .iter()
            .any(|l| l.contains("code=0") && l.contains("sandbox_denied=false")),
        "{exits:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exec_runs_every_tool_through_our_server() {
    let Some(codex) = codex() else { return };
    let marker = format!("me{}", std::process::id());
    let server = Server::start_with_env(&[], &[("E2E_SERVER_MARKER", &marker)]);
    let log: Log = Arc::default();
    let model_port = start_model(log.clone(), Scenario::Full).await;
    let run = TempDir::new("codex");
    let work = run.join("work");
    let out = run_codex(
        &codex,
        &run,
        model_port,
        &server.url,
        &["--dangerously-bypass-approvals-and-sandbox"],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let requests = log.lock().unwrap().clone();
    let context = format!("codex status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(out.status.success(), "{context}");
    assert_eq!(requests.len(), 7, "one model request per step\n{context}");

    // exec_command over pipes ran in our server's environment.
    assert_eq!(
        std::fs::read_to_string(work.join("out.txt")).unwrap(),
        format!("hello-from-env:{marker}"),
        "{context}"
    );
    // apply_patch: add (incl. a missing directory), update, delete.
    assert_eq!(
        std::fs::read_to_string(work.join("notes.txt")).unwrap(),
        "line one from apply_patch\nline two updated\n",
        "{context}"
    );
    assert!(work.join("sub/deep").is_dir(), "{context}");
    assert!(!work.join("sub/deep/extra.txt").exists(), "{context}");

    let outputs = tool_outputs(requests.last().unwrap());
    let text = |call: &str| {
        outputs
            .iter()
            .find(|o| o["call_id"] == call)
            .map(|o| o["output"].to_string())
            .unwrap_or_else(|| panic!("no output for {call}\n{context}"))
    };
    assert!(
        text("call_1").contains(&format!("hello-from-env:{marker}")),
        "{}",
        text("call_1")
    );
    assert!(
        text("call_4").contains("line two updated") && text("call_4").contains("out.txt"),
        "{}",
        text("call_4")
    );
    assert!(
        text("call_5").contains("session ID"),
        "the tty command waits for input: {}",
        text("call_5")
    );
    assert!(
        text("call_6").contains("got:ping"),
        "write_stdin reached the PTY: {}",
        text("call_6")
    );
    let last = std::fs::read_to_string(run.join("last_message.txt")).unwrap_or_default();
    assert!(last.contains("scenario done"), "{context}");
}

//! `exec-server run`: starts one command on a server, streams its output to this
//! terminal, forwards stdin (raw mode with `--tty`), window size changes and Ctrl-C,
//! and exits with the remote exit code.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use exec_protocol::Base64Bytes;
use exec_protocol::methods;
use exec_protocol::process::{EnvInherit, EnvPolicy, TerminalSize};
use nix::sys::termios::{self, SetArg, Termios};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::client::ExecServerClient;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Server URL, e.g. ws://127.0.0.1:8765.
    #[arg(long, env = "EXEC_SERVER_URL")]
    pub url: String,
    /// File holding a bearer token for `--ws-auth` servers.
    #[arg(long, env = "EXEC_SERVER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Run under a pseudo-terminal (puts this terminal in raw mode).
    #[arg(long)]
    pub tty: bool,
    /// Extra environment variable, K=V (repeatable); the rest is the server's environment.
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory on the server (default: the server's).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Print every protocol frame to stderr.
    #[arg(long)]
    pub trace: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Restores the terminal mode on drop.
struct RawMode(Option<Termios>);

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawMode(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}

fn local_size() -> Option<TerminalSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(TerminalSize {
        cols: ws.ws_col,
        rows: ws.ws_row,
    })
}

pub async fn run(args: RunArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("exec-server run: {e}");
            ExitCode::from(255)
        }
    }
}

async fn run_inner(args: RunArgs) -> Result<u8, String> {
    let token = crate::cli::read_token(&args.token_file)?;
    let (client, mut notes) = ExecServerClient::connect_traced(&args.url, token.as_deref(), args.trace)
        .await
        .map_err(|e| e.to_string())?;
    let init = client
        .initialize("exec-server-run", None)
        .await
        .map_err(|e| e.to_string())?;
    let mut env = BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("--env `{kv}` is not K=V"))?;
        env.insert(k.to_string(), v.to_string());
    }
    if args.tty
        && let Ok(term) = std::env::var("TERM")
    {
        env.entry("TERM".into()).or_insert(term);
    }
    let cwd = match &args.cwd {
        Some(dir) => exec_protocol::path_uri::path_to_uri(std::path::Path::new(dir)),
        None => init.environment_info.cwd.to_uri_string(),
    };
    let process_id = format!("run-{}", uuid::Uuid::new_v4());
    let policy = EnvPolicy {
        inherit: EnvInherit::All,
        ignore_default_excludes: true,
        ..Default::default()
    };
    let size = if args.tty { local_size() } else { None };
    let start = json!({
        "processId": process_id, "argv": args.command, "cwd": cwd, "env": env, "tty": args.tty,
        "pipeStdin": true, "envPolicy": policy, "size": size,
    });
    client
        .request_value(methods::PROCESS_START, start)
        .await
        .map_err(|e| e.to_string())?;
    let _raw = (args.tty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false)).then(RawMode::enable);
    let client = std::sync::Arc::new(client);
    tokio::spawn(forward_stdin(client.clone(), process_id.clone()));
    let mut winch = signal(SignalKind::window_change()).map_err(|e| e.to_string())?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut code: Option<i32> = None;
    loop {
        tokio::select! {
            note = notes.recv() => {
                let Some(note) = note else { return Err("connection to the server was lost".into()) };
                if note.params.get("processId").and_then(|v| v.as_str()) != Some(process_id.as_str()) {
                    continue;
                }
                match note.method.as_str() {
                    methods::PROCESS_OUTPUT => {
                        let data = note.params.get("chunk").and_then(|c| c.as_str()).and_then(|c| Base64Bytes::decode(c).ok()).unwrap_or_default();
                        if note.params.get("stream").and_then(|s| s.as_str()) == Some("stderr") {
                            let _ = std::io::stderr().write_all(&data);
                        } else {
                            let mut out = std::io::stdout().lock();
                            let _ = out.write_all(&data);
                            let _ = out.flush();
                        }
                    }
                    methods::PROCESS_EXITED => code = note.params.get("exitCode").and_then(|c| c.as_i64()).map(|c| c as i32),
                    methods::PROCESS_CLOSED => break,
                    _ => {}
                }
            }
            _ = winch.recv() => {
                if let Some(size) = local_size() {
                    let _ = client.request_value(methods::PROCESS_RESIZE, json!({"processId": process_id, "cols": size.cols, "rows": size.rows})).await;
                }
            }
            _ = interrupt.recv() => {
                let _ = client.request_value(methods::PROCESS_SIGNAL, json!({"processId": process_id, "signal": "interrupt"})).await;
            }
        }
    }
    client.close();
    Ok(code.unwrap_or(255).clamp(0, 255) as u8)
}

async fn forward_stdin(client: std::sync::Arc<ExecServerClient>, process_id: String) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    let mut write_id = 0u64;
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = client
                    .request_value(methods::PROCESS_CLOSE_STDIN, json!({"processId": process_id}))
                    .await;
                return;
            }
            Ok(n) => {
                write_id += 1;
                let params = json!({"processId": process_id, "chunk": Base64Bytes::encode(&buf[..n]), "writeId": write_id.to_string()});
                if client.request_value(methods::PROCESS_WRITE, params).await.is_err() {
                    return;
                }
            }
        }
    }
}

//! Command line: `exec-server [serve] --listen …` runs the server, `exec-server run`
//! runs one command remotely (like `ssh host cmd`), `exec-server bench` measures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::ServerConfig;
use crate::http::BrokerConfig;
use crate::http::policy::{HostPattern, HostPolicy};
use crate::transport::ListenAddr;
use crate::transport::auth::{AuthFlags, WsAuth};

#[derive(Parser)]
#[command(
    name = "exec-server",
    version,
    about = "Remote command runner speaking the Codex exec-server protocol over WebSocket JSON-RPC."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Run one command on a server, streaming its output; exits with its exit code.
    Run(crate::cli_run::RunArgs),
    /// Measure exec latency, throughput and memory against a local baseline.
    Bench(crate::bench::BenchArgs),
    /// Inspect or refresh a credential binding (the same store and lock as the server).
    Credentials {
        #[command(subcommand)]
        action: crate::credentials::cli::Action,
    },
    /// Print which sandbox layers this kernel supports.
    SandboxProbe {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Internal: apply a sandbox, then execute a command (spawned by the server).
    #[command(hide = true)]
    SandboxExec(crate::sandbox_exec::SandboxExecArgs),
    /// Internal: apply a sandbox, then perform one file operation (spawned by the server).
    #[command(hide = true)]
    SandboxFs {
        #[arg(long)]
        spec: String,
    },
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// `ws://IP:PORT` (port 0 picks a free one) or `stdio`.
    #[arg(long, default_value = "ws://127.0.0.1:0")]
    pub listen: ListenAddr,
    #[command(flatten)]
    pub auth: AuthFlags,
    /// Allow a non-loopback listener without `--ws-auth`.
    #[arg(long)]
    pub allow_unauthenticated_non_loopback: bool,
    /// Requests handled at once per connection (1 = strictly in arrival order).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrent_requests: u32,
    /// How long a disconnected session keeps its processes (0 = kill on disconnect).
    #[arg(long, default_value_t = 30_000)]
    pub detach_grace_ms: u64,
    /// How long a finished process stays readable.
    #[arg(long, default_value_t = 60_000)]
    pub process_retention_ms: u64,
    /// Output retained per process for `process/read`.
    #[arg(long, default_value_t = 1 << 20)]
    pub output_retention_bytes: usize,
    /// Messages queued per connection before output readers wait.
    #[arg(long, default_value_t = 256)]
    pub outbound_queue: usize,
    /// Largest WebSocket message accepted.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_message_bytes: usize,
    /// Largest WebSocket frame accepted.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame_bytes: usize,
    /// Largest file `fs/readFile` and `fs/writeFile` move in one message.
    #[arg(long, default_value_t = 64 << 20)]
    pub fs_max_file_bytes: u64,
    /// Deadline for an `http/request` that gives no `timeoutMs` (0 = none, as the reference).
    #[arg(long, default_value_t = 0)]
    pub http_default_timeout_ms: u64,
    /// Largest response body `http/request` buffers; larger ones need `streamResponse`.
    #[arg(long, default_value_t = 64 << 20)]
    pub http_max_buffered_body: u64,
    /// Hosts `http/request` may reach (repeatable; `example.com`, `*.example.com`, an IP
    /// or CIDR). Without any, every host not denied is allowed.
    #[arg(long = "http-allow", value_name = "HOSTPATTERN")]
    pub http_allow: Vec<HostPattern>,
    /// Hosts `http/request` may not reach (repeatable; wins over `--http-allow`).
    #[arg(long = "http-deny", value_name = "HOSTPATTERN")]
    pub http_deny: Vec<HostPattern>,
    /// Let `http/request` reach cloud metadata addresses (denied by default).
    #[arg(long)]
    pub http_allow_metadata: bool,
    /// Credential bindings for `http/request` (a TOML file; see the README).
    #[arg(long, value_name = "PATH")]
    pub credentials_config: Option<PathBuf>,
    /// Exit when stdin reaches end of file (for supervisors that hold a pipe).
    #[arg(long, env = "CODEX_EXEC_SERVER_EXIT_ON_STDIN_CLOSE")]
    pub exit_on_stdin_close: bool,
}

impl ServeArgs {
    pub fn config(&self) -> Result<ServerConfig, String> {
        let ws_auth = WsAuth::from_flags(&self.auth)?;
        match self.listen {
            ListenAddr::Stdio if ws_auth.is_enabled() => {
                return Err("WebSocket auth flags cannot be used with `--listen stdio`".into());
            }
            ListenAddr::Ws(addr)
                if !addr.ip().is_loopback() && !ws_auth.is_enabled() && !self.allow_unauthenticated_non_loopback =>
            {
                return Err(format!(
                    "refusing to listen on non-loopback address {addr} without `--ws-auth`; \
                     pass `--allow-unauthenticated-non-loopback` to override"
                ));
            }
            _ => {}
        }
        Ok(ServerConfig {
            detach_grace: Duration::from_millis(self.detach_grace_ms),
            process_retention: Duration::from_millis(self.process_retention_ms),
            output_retention_bytes: self.output_retention_bytes.max(1),
            concurrent_requests: self.concurrent_requests as usize,
            outbound_queue: self.outbound_queue.max(1),
            max_message_bytes: self.max_message_bytes,
            max_frame_bytes: self.max_frame_bytes,
            fs_max_file_bytes: self.fs_max_file_bytes,
            ws_auth,
            bindings: std::sync::Arc::new(match &self.credentials_config {
                Some(path) => crate::credentials::bindings::Bindings::load(path)?,
                None => Default::default(),
            }),
            http: BrokerConfig {
                default_timeout: (self.http_default_timeout_ms > 0)
                    .then(|| Duration::from_millis(self.http_default_timeout_ms)),
                max_buffered_body: self.http_max_buffered_body,
                policy: HostPolicy {
                    allow: self.http_allow.clone(),
                    deny: self.http_deny.clone(),
                    allow_metadata: self.http_allow_metadata,
                },
            },
            ..ServerConfig::default()
        })
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Run(args)) => match runtime() {
            Ok(rt) => rt.block_on(crate::cli_run::run(args)),
            Err(e) => fail(&e.to_string()),
        },
        Some(Command::SandboxExec(args)) => crate::sandbox_exec::main(args),
        Some(Command::Credentials { action }) => {
            init_logging();
            match runtime() {
                Ok(rt) => rt.block_on(crate::credentials::cli::run(action)),
                Err(e) => fail(&e.to_string()),
            }
        }
        Some(Command::SandboxProbe { json }) => crate::sandbox_exec::probe(json),
        Some(Command::SandboxFs { spec }) => match serde_json::from_str(&spec) {
            Ok(spec) => ExitCode::from(crate::fs::confined::helper_main(&spec) as u8),
            Err(e) => fail(&format!("bad sandbox spec: {e}")),
        },
        Some(Command::Bench(args)) => match runtime() {
            Ok(rt) => rt.block_on(crate::bench::run(args)),
            Err(e) => fail(&e.to_string()),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("exec-server: {message}");
    ExitCode::from(2)
}

fn serve(args: ServeArgs) -> ExitCode {
    crate::process::inherit::keep_inherited_descriptors_from_children();
    init_logging();
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.to_string()),
    };
    let exit_on_stdin_close = args.exit_on_stdin_close && args.listen != ListenAddr::Stdio;
    let result = rt.block_on(async move {
        if exit_on_stdin_close {
            tokio::spawn(async {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
                tracing::info!("stdin closed: shutting down");
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM);
            });
        }
        crate::server::run(args.listen, config).await
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// Reads a token file for client commands (content trimmed).
pub fn read_token(path: &Option<PathBuf>) -> Result<Option<String>, String> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(p)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| format!("cannot read token file `{}`: {e}", p.display())),
    }
}

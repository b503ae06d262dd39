//! Process-wide server state and the serve/shutdown lifecycle: bind, print the bound
//! URL, serve until SIGTERM/SIGINT (or stdin EOF in stdio mode), then kill and reap
//! every process group the server owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exec_protocol::environment::EnvironmentInfo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::environment;
use crate::http::Broker;
use crate::session::SessionRegistry;
use crate::transport::{self, ListenAddr};

pub struct ServerState {
    pub config: ServerConfig,
    /// The process-wide HTTP broker, shared by every connection.
    pub broker: Arc<Broker>,
    pub sessions: Arc<SessionRegistry>,
    pub environment: EnvironmentInfo,
    next_connection: AtomicU64,
}

impl ServerState {
    pub fn new(config: ServerConfig) -> Arc<ServerState> {
        Arc::new(ServerState {
            sessions: Arc::new(SessionRegistry::new(config.detach_grace)),
            broker: Arc::new(Broker::new(config.http.clone())),
            environment: environment::detect(&config),
            config,
            next_connection: AtomicU64::new(1),
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Kills every process group of every session and waits (bounded) until each is reaped.
    pub async fn shut_down(&self) {
        let sessions = self.sessions.shut_down_all();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for s in &sessions {
            for p in s.processes.all() {
                while p.exit_info().is_none() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if p.exit_info().is_none() {
                    warn!(process = %p.id, "process did not exit after SIGKILL");
                }
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
}

/// Raises the soft open-file limit (up to the hard limit, at most 65,536): every
/// connection and process costs descriptors, and the common soft default of 1024 is far
/// below what one server handles. Children inherit the raised soft limit.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const WANTED: u64 = 65_536;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < WANTED.min(hard)
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, WANTED.min(hard), hard)
    {
        warn!(error = %e, "cannot raise the open-file limit");
    }
}

/// Binds `addr` and serves until a termination signal; prints the bound URL first.
pub async fn run(addr: ListenAddr, config: ServerConfig) -> std::io::Result<()> {
    raise_fd_limit();
    let state = ServerState::new(config);
    match addr {
        ListenAddr::Ws(addr) => {
            let listener = TcpListener::bind(addr).await?;
            let bound = listener.local_addr()?;
            {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "ws://{bound}")?;
                stdout.flush()?;
            }
            info!(%bound, "listening");
            transport::http::serve(listener, state.clone(), termination()).await;
        }
        ListenAddr::Stdio => {
            tokio::select! {
                _ = transport::stdio::serve(state.clone()) => info!("stdin closed: shutting down"),
                _ = termination() => {}
            }
        }
    }
    state.shut_down().await;
    Ok(())
}

//! `initialize`, `environment/info`, `environment/status` and `environmentConfig/read`.

use std::sync::Arc;

use exec_protocol::PathUri;
use exec_protocol::environment::{
    ConfigLayers, ConfigReadParams, ConfigReadResult, InitializeParams, InitializeResult, StatusResult,
};
use serde_json::Value;
use tracing::info;

use super::{Reply, no_params, ok, parse};
use crate::connection::Connection;

pub async fn initialize(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: InitializeParams = parse(params)?;
    conn.check_not_initialized()?;
    let sessions = &conn.server.sessions;
    let session = match &p.resume_session_id {
        Some(id) => sessions.resume_waiting(id, conn.id, conn.out.clone()).await?,
        None => sessions.create(conn.id, conn.out.clone()),
    };
    conn.begin_session(session.clone());
    info!(conn = conn.id, session = %session.id, client = %p.client_name, "initialized");
    ok(&InitializeResult {
        session_id: session.id.clone(),
        environment_info: conn.server.environment.clone(),
    })
}

pub fn info(conn: &Arc<Connection>, params: Value) -> Reply {
    no_params(&params)?;
    conn.session("environment info")?;
    ok(&conn.server.environment)
}

pub fn status(conn: &Arc<Connection>, params: Value) -> Reply {
    no_params(&params)?;
    conn.session("environment status")?;
    ok(&StatusResult { status: "ready".into() })
}

/// Executor-side config layers: this server projects none, so the layers are empty.
pub fn config_read(conn: &Arc<Connection>, params: Value) -> Reply {
    let _: ConfigReadParams = parse(params)?;
    conn.session("environment config")?;
    let env = &conn.server.environment;
    let codex_home = std::env::var_os("CODEX_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| env.user_home_dir.path().ok().map(|h| h.join(".codex")))
        .unwrap_or_else(|| "/.codex".into());
    let empty = || ConfigLayers {
        layers: Vec::new(),
        cloud_insertion_index: 0,
    };
    ok(&ConfigReadResult {
        user_home_dir: env.user_home_dir.clone(),
        codex_home_dir: PathUri::from_path(codex_home),
        hostname: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        config: empty(),
        requirements: empty(),
    })
}

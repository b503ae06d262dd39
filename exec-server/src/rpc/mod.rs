//! Method routing and the helpers every handler shares: params decoding (-32602 with
//! serde's message), running blocking work, and encoding results.

pub mod environment;
pub mod fs;
pub mod http;
pub mod http_auth;
pub mod process;

use std::sync::Arc;

use exec_protocol::envelope::RequestId;
use exec_protocol::{RpcError, methods as m};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::connection::Connection;

/// What a handler answers.
#[derive(Debug)]
pub enum Answer {
    /// The result, as JSON text.
    Json(String),
    /// The handler already sent its response (a streamed `http/request` answers before
    /// its body deltas).
    Sent,
}

/// A handler's answer, or an error.
pub type Reply = Result<Answer, RpcError>;

pub async fn dispatch(conn: &Arc<Connection>, id: &RequestId, method: &str, params: Value) -> Reply {
    let params = if method.starts_with("fs/") {
        match fs::confined(conn, method, params).await {
            Ok(reply) => return reply,
            Err(params) => params,
        }
    } else {
        params
    };
    match method {
        m::HTTP_REQUEST => http::request(conn, id, params).await,
        m::INITIALIZE => environment::initialize(conn, params).await,
        m::ENVIRONMENT_INFO => environment::info(conn, params),
        m::ENVIRONMENT_STATUS => environment::status(conn, params),
        m::ENVIRONMENT_CONFIG_READ => environment::config_read(conn, params),
        m::PROCESS_START => process::start(conn, params).await,
        m::PROCESS_READ => process::read(conn, params).await,
        m::PROCESS_WRITE => process::write(conn, params).await,
        m::PROCESS_SIGNAL => process::signal(conn, params),
        m::PROCESS_TERMINATE => process::terminate(conn, params),
        m::PROCESS_RESIZE => process::resize(conn, params),
        m::PROCESS_CLOSE_STDIN => process::close_stdin(conn, params).await,
        m::PROCESS_LIST => process::list(conn, params),
        m::FS_READ_FILE => fs::read_file(conn, params).await,
        m::FS_WRITE_FILE => fs::write_file(conn, params).await,
        m::FS_CREATE_DIRECTORY => fs::create_directory(conn, params).await,
        m::FS_GET_METADATA => fs::get_metadata(conn, params).await,
        m::FS_CANONICALIZE => fs::canonicalize(conn, params).await,
        m::FS_READ_DIRECTORY => fs::read_directory(conn, params).await,
        m::FS_WALK => fs::walk(conn, params).await,
        m::FS_REMOVE => fs::remove(conn, params).await,
        m::FS_COPY => fs::copy(conn, params).await,
        m::FS_OPEN => fs::open(conn, params).await,
        m::FS_READ_BLOCK => fs::read_block(conn, params).await,
        m::FS_WRITE_BLOCK => fs::write_block(conn, params).await,
        m::FS_CLOSE => fs::close(conn, params),
        m::FS_WATCH_MISSING => fs::watch_missing(conn, params),
        other => Err(RpcError::method_not_found(other)),
    }
}

/// Methods whose handlers finish without waiting on I/O, timers or other tasks.
pub fn never_waits(method: &str) -> bool {
    matches!(
        method,
        m::ENVIRONMENT_INFO
            | m::ENVIRONMENT_STATUS
            | m::ENVIRONMENT_CONFIG_READ
            | m::PROCESS_SIGNAL
            | m::PROCESS_TERMINATE
            | m::PROCESS_RESIZE
            | m::PROCESS_LIST
            | m::FS_CLOSE
            | m::FS_WATCH_MISSING
    )
}

/// Decodes struct params; `null` decodes like `{}` would fail (missing fields).
pub fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(e.to_string()))
}

/// Methods without params accept nothing, `null` or `{}`.
pub fn no_params(params: &Value) -> Result<(), RpcError> {
    match params {
        Value::Null => Ok(()),
        Value::Object(o) if o.is_empty() => Ok(()),
        Value::Array(a) if a.is_empty() => Ok(()),
        Value::Object(_) => Err(RpcError::invalid_params("invalid type: map, expected unit")),
        Value::Array(_) => Err(RpcError::invalid_params("invalid type: sequence, expected unit")),
        _ => Err(RpcError::invalid_params("invalid type: expected unit")),
    }
}

pub fn ok<T: Serialize>(value: &T) -> Reply {
    serde_json::to_string(value)
        .map(Answer::Json)
        .map_err(|e| RpcError::internal(format!("failed to encode result: {e}")))
}

pub fn ack() -> Reply {
    Ok(Answer::Json("{}".to_string()))
}

/// Runs blocking work (file I/O) on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RpcError::internal(format!("worker failed: {e}")))?
}

/// `{"id":…,"result":<raw>}` around an already encoded result.
pub fn encode_raw_response(id: &RequestId, raw: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    let mut s = String::with_capacity(raw.len() + id.len() + 16);
    s.push_str("{\"id\":");
    s.push_str(&id);
    s.push_str(",\"result\":");
    s.push_str(raw);
    s.push('}');
    s
}

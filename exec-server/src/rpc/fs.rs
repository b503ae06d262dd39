//! The `fs/*` handlers. File I/O runs on the blocking pool. A request whose `sandbox`
//! asks for a restriction fails until the sandbox launcher exists: it never runs
//! unconfined silently.

use std::sync::Arc;

use exec_protocol::fs::{
    CanonicalizeResult, CopyParams, CreateDirectoryParams, HandleParams, OpenParams, OpenResult, PathParams,
    ReadBlockParams, ReadBlockResult, ReadDirectoryResult, ReadFileResult, RemoveParams, WalkParams,
    WatchMissingParams, WatchMissingResult, WriteBlockParams, WriteFileParams,
};
use exec_protocol::{Base64Bytes, PathUri, RpcError};
use serde_json::Value;

use super::{Reply, ack, blocking, ok, parse};
use crate::connection::Connection;
use crate::fs as ops;
use crate::session::Session;

const FAMILY: &str = "filesystem";

/// The session for an unconfined request (confined ones never reach the handlers below).
fn session(conn: &Connection, _sandbox: Option<&Value>) -> Result<Arc<Session>, RpcError> {
    conn.session(FAMILY)
}

/// Runs `method` in the sandboxed helper when `params.sandbox` restricts anything;
/// otherwise hands `params` back for the ordinary handler.
pub async fn confined(conn: &Arc<Connection>, method: &str, params: Value) -> Result<Reply, Value> {
    let Some(sandbox) = params.get("sandbox").filter(|s| !s.is_null()) else {
        return Err(params);
    };
    let policy = match sandbox::SandboxPolicy::from_wire(Some(sandbox)) {
        Ok(p) if p.is_unrestricted() => return Err(params),
        Ok(p) => p,
        Err(e) => return Ok(Err(RpcError::invalid_params(e.to_string()))),
    };
    Ok(run_confined(conn, method, params, policy).await)
}

async fn run_confined(conn: &Arc<Connection>, method: &str, params: Value, policy: sandbox::SandboxPolicy) -> Reply {
    let session = conn.session(FAMILY)?;
    let cwd = params
        .get("sandbox")
        .and_then(|s| s.get("cwd"))
        .and_then(Value::as_str)
        .and_then(|c| PathUri::parse(c).ok())
        .and_then(|c| c.path().ok().map(|p| p.to_path_buf()));
    let tmp = std::env::var_os("TMPDIR").map(std::path::PathBuf::from);
    let mut spec = sandbox::LaunchSpec::for_policy(&policy, cwd.as_deref(), tmp.as_deref());
    spec.hidden = conn.server.config.bindings.store_dirs();
    // The helper runs only this server's file code: Landlock and seccomp confine it; a
    // network namespace would only cost time.
    spec.network = true;
    let handle_id = params.get("handleId").and_then(Value::as_str).map(str::to_string);
    if let Some(id) = &handle_id {
        session.files.check_free(id)?;
    }
    let max = conn.server.config.fs_max_file_bytes;
    let method = method.to_string();
    let outcome = blocking(move || ops::confined::run(&spec, &method, params, max)).await?;
    if let (Some((file, mode)), Some(id)) = (outcome.file, handle_id) {
        session.files.insert(&id, file, mode)?;
    }
    Ok(super::Answer::Json(outcome.result.to_string()))
}

pub async fn read_file(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: PathParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    let max = conn.server.config.fs_max_file_bytes;
    let data = blocking(move || ops::read_file(&path, max)).await?;
    ok(&ReadFileResult {
        data_base64: Base64Bytes(data),
    })
}

pub async fn write_file(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: WriteFileParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let data = Base64Bytes::decode(&p.data_base64)
        .map_err(|e| RpcError::invalid_request(format!("fs/writeFile requires valid base64 dataBase64: {e}")))?;
    let path = p.path.path()?.to_path_buf();
    let max = conn.server.config.fs_max_file_bytes;
    blocking(move || ops::write_file(&path, &data, max)).await?;
    ack()
}

pub async fn create_directory(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: CreateDirectoryParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    blocking(move || ops::create_directory(&path, p.recursive)).await?;
    ack()
}

pub async fn get_metadata(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: PathParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    ok(&blocking(move || ops::metadata(&path)).await?)
}

pub async fn canonicalize(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: PathParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    let canonical = blocking(move || ops::canonicalize(&path)).await?;
    ok(&CanonicalizeResult {
        path: PathUri::from_path(canonical),
    })
}

pub async fn read_directory(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: PathParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    ok(&ReadDirectoryResult {
        entries: blocking(move || ops::read_directory(&path)).await?,
    })
}

pub async fn walk(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: WalkParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    ok(&blocking(move || ops::walk::walk(&path, &p.options)).await?)
}

pub async fn remove(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: RemoveParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    blocking(move || ops::remove(&path, p.recursive, p.force)).await?;
    ack()
}

pub async fn copy(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: CopyParams = parse(params)?;
    session(conn, p.sandbox.as_ref())?;
    let src = p.source_path.path()?.to_path_buf();
    let dst = p.destination_path.path()?.to_path_buf();
    blocking(move || ops::copy(&src, &dst, p.recursive)).await?;
    ack()
}

pub async fn open(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: OpenParams = parse(params)?;
    let session = session(conn, p.sandbox.as_ref())?;
    let path = p.path.path()?.to_path_buf();
    let id = p.handle_id.clone();
    blocking(move || session.files.open(&id, &path, p.mode)).await?;
    ok(&OpenResult { handle_id: p.handle_id })
}

pub async fn read_block(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: ReadBlockParams = parse(params)?;
    let handle = session(conn, None)?.files.get(&p.handle_id)?;
    let (data, eof) = blocking(move || handle.read_block(&p.handle_id, p.offset, p.len)).await?;
    ok(&ReadBlockResult {
        chunk: Base64Bytes(data),
        eof,
    })
}

pub async fn write_block(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: WriteBlockParams = parse(params)?;
    let handle = session(conn, None)?.files.get(&p.handle_id)?;
    blocking(move || handle.write_block(&p.handle_id, p.offset, &p.chunk.0)).await?;
    ack()
}

pub fn close(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: HandleParams = parse(params)?;
    session(conn, None)?.files.close(&p.handle_id);
    ack()
}

pub fn watch_missing(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: WatchMissingParams = parse(params)?;
    let session = session(conn, None)?;
    let paths = p
        .missing
        .iter()
        .map(|u| u.path().map(|p| p.to_path_buf()))
        .collect::<Result<Vec<_>, _>>()?;
    let watching = session.watches.watch(Arc::downgrade(&session), p.watch_id, paths)?;
    ok(&WatchMissingResult { watching })
}

//! The `process/*` handlers.

use std::sync::Arc;

use exec_protocol::RpcError;
use exec_protocol::process::{
    ListResult, ProcessIdParams, ReadParams, ResizeParams, SignalParams, SignalResult, StartParams, TerminalSize,
    TerminateResult, WriteParams, WriteResult, WriteStatus,
};
use serde_json::Value;

use super::{Reply, ack, ok, parse};
use crate::connection::Connection;
pub use crate::process::stdin::WriteStep;
use crate::process::{self, Process};

const FAMILY: &str = "exec";

fn unknown(id: &str) -> RpcError {
    RpcError::invalid_request(format!("unknown process id {id}"))
}

fn find(conn: &Connection, id: &str) -> Result<Option<Arc<Process>>, RpcError> {
    Ok(conn.session(FAMILY)?.processes.get(id))
}

pub async fn start(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: StartParams = parse(params)?;
    let session = conn.session(FAMILY)?;
    ok(&process::start(&session, p, &conn.server.config).await?)
}

pub async fn read(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: ReadParams = parse(params)?;
    let proc = find(conn, &p.process_id)?.ok_or_else(|| unknown(&p.process_id))?;
    ok(&proc.read(&p).await)
}

/// Validates a write and queues it on the process's stdin, in arrival order.
pub async fn write_enqueue(conn: &Arc<Connection>, params: Value) -> Result<WriteStep, RpcError> {
    let p: WriteParams = parse(params)?;
    if p.write_id.is_empty() {
        return Err(RpcError::invalid_params("writeId must not be empty"));
    }
    let Some(proc) = find(conn, &p.process_id)? else {
        return Ok(WriteStep::Done(WriteStatus::UnknownProcess));
    };
    if p.chunk.0.is_empty() {
        return Ok(WriteStep::Done(WriteStatus::Accepted));
    }
    Ok(proc.write(p.write_id, p.chunk.0).await)
}

pub async fn write_finish(step: WriteStep) -> Reply {
    ok(&WriteResult {
        status: step.status().await,
    })
}

pub async fn write(conn: &Arc<Connection>, params: Value) -> Reply {
    write_finish(write_enqueue(conn, params).await?).await
}

pub fn signal(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: SignalParams = parse(params)?;
    let delivered = find(conn, &p.process_id)?.is_some_and(|proc| proc.signal(p.signal));
    ok(&SignalResult { delivered })
}

pub fn terminate(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: ProcessIdParams = parse(params)?;
    let running = find(conn, &p.process_id)?.is_some_and(|proc| proc.exit_info().is_none() && proc.kill_group());
    ok(&TerminateResult { running })
}

pub fn resize(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: ResizeParams = parse(params)?;
    if p.cols == 0 || p.rows == 0 {
        return Err(RpcError::invalid_params("cols and rows must be positive"));
    }
    let proc = find(conn, &p.process_id)?.ok_or_else(|| unknown(&p.process_id))?;
    proc.resize(TerminalSize {
        cols: p.cols,
        rows: p.rows,
    })?;
    ack()
}

pub async fn close_stdin(conn: &Arc<Connection>, params: Value) -> Reply {
    let p: ProcessIdParams = parse(params)?;
    let proc = find(conn, &p.process_id)?.ok_or_else(|| unknown(&p.process_id))?;
    let closed = proc.close_stdin_request().await;
    Ok(super::Answer::Json(format!("{{\"closed\":{closed}}}")))
}

pub fn list(conn: &Arc<Connection>, params: Value) -> Reply {
    super::no_params(&params)?;
    ok(&ListResult {
        processes: conn.session(FAMILY)?.processes.list(),
    })
}

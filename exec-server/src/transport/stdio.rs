//! `--listen stdio`: one connection over stdin/stdout, newline-delimited JSON. Blank
//! lines are ignored; the server exits when stdin reaches end of file.

use std::sync::Arc;

use exec_protocol::RpcError;
use exec_protocol::envelope::{RequestId, encode_error};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::connection::Connection;
use crate::connection::outbound::{Frame, Outbound};
use crate::server::ServerState;

pub async fn serve(state: Arc<ServerState>) {
    let (out, mut rx) = Outbound::channel(state.config.outbound_queue);
    let conn = Connection::new(
        state.clone(),
        out.clone(),
        "failed to parse JSON-RPC message from exec-server stdio".into(),
    );
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(frame) = rx.recv().await {
            let Frame::Text(text, _room) = frame else { break };
            if stdout.write_all(text.as_bytes()).await.is_err() || stdout.write_all(b"\n").await.is_err() {
                break;
            }
            if rx.is_empty() && stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let max = state.config.max_message_bytes;
    let mut stdin = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut stdin).take(max as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > max && line.last() != Some(&b'\n') {
            let err = RpcError::invalid_request(format!("message exceeds the limit of {max} bytes"));
            let _ = out.send(encode_error(&RequestId::UNKNOWN, &err)).await;
            // Skip the rest of the oversize line.
            let mut rest = Vec::new();
            let _ = stdin.read_until(b'\n', &mut rest).await;
            continue;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        conn.handle_message(&line).await;
    }
    conn.closed();
    drop(conn);
    drop(out);
    let _ = writer.await;
}

use tokio::io::AsyncReadExt;

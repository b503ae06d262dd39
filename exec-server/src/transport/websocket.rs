//! The WebSocket message loop of one connection: text or binary messages in, the
//! connection's outbound queue out (batched writes, periodic pings), Close 1009 for
//! oversize messages, and the session detached when the socket ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, interval_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info};

use crate::config::ServerConfig;
use crate::connection::Connection;
use crate::connection::outbound::{Frame, Outbound};
use crate::server::ServerState;

/// Messages written before a flush.
const WRITE_BATCH: usize = 64;
/// Largest frame sent: longer messages are fragmented, so clients with the common
/// 16 MiB frame limit (tungstenite's default, as in Codex) accept them.
const MAX_OUT_FRAME: usize = 16 << 20;

/// Queues `text` as one message of frames no longer than `MAX_OUT_FRAME`.
async fn feed_text<K>(sink: &mut K, text: String) -> Result<(), WsError>
where
    K: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    if text.len() <= MAX_OUT_FRAME {
        return sink.feed(Message::text(text)).await;
    }
    let data = bytes::Bytes::from(text.into_bytes());
    let mut start = 0;
    while start < data.len() {
        let end = (start + MAX_OUT_FRAME).min(data.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        sink.feed(Message::Frame(WsFrame::message(
            data.slice(start..end),
            opcode,
            end == data.len(),
        )))
        .await?;
        start = end;
    }
    Ok(())
}

/// Read buffer reserved per connection: small, so idle connections stay cheap (the
/// default is 128 KiB); big messages simply take more reads.
const READ_BUFFER: usize = 8 * 1024;

pub fn config(cfg: &ServerConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_frame_bytes))
}

pub async fn run<S>(ws: WebSocketStream<S>, peer: SocketAddr, state: Arc<ServerState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    let (out, rx) = Outbound::channel(state.config.outbound_queue);
    let conn = Connection::new(
        state.clone(),
        out.clone(),
        format!("failed to parse websocket JSON-RPC message from exec-server websocket {peer}"),
    );
    info!(conn = conn.id, %peer, "websocket connected");
    let (stop_tx, stop_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(sink, rx, state.config.ping_interval, stop_rx));
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => conn.handle_message(text.as_bytes()).await,
            Some(Ok(Message::Binary(data))) => conn.handle_message(&data).await,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {} // pings are answered by tungstenite; pongs need nothing
            Some(Err(WsError::Capacity(e))) => {
                info!(conn = conn.id, error = %e, "oversize message; closing with 1009");
                out.close(u16::from(CloseCode::Size), "message too big").await;
                break;
            }
            Some(Err(e)) => {
                debug!(conn = conn.id, error = %e, "websocket read ended");
                break;
            }
        }
    }
    conn.closed();
    let _ = stop_tx.send(());
    let _ = writer.await;
    info!(conn = conn.id, %peer, "websocket disconnected");
}

async fn write_loop<K>(mut sink: K, mut rx: mpsc::Receiver<Frame>, ping: Duration, mut stop: oneshot::Receiver<()>)
where
    K: futures_util::Sink<Message, Error = WsError> + Unpin,
{
    let mut ticker = interval_at(Instant::now() + ping, ping);
    loop {
        tokio::select! {
            biased;
            frame = rx.recv() => {
                let Some(mut frame) = frame else { break };
                let mut written = 0;
                loop {
                    match frame {
                        Frame::Text(text, _room) => {
                            if feed_text(&mut sink, text).await.is_err() {
                                return;
                            }
                        }
                        Frame::Close(code, reason) => {
                            let close = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                            let _ = sink.send(Message::Close(Some(close))).await;
                            return;
                        }
                    }
                    written += 1;
                    if written >= WRITE_BATCH {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(next) => frame = next,
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ticker.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            _ = &mut stop => break,
        }
    }
    let _ = sink.close().await;
}

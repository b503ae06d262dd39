//! The bounded queue of frames a connection sends, bounded in messages and in bytes.
//! Producers (responses, process output pumps, body streams) wait for room, so a slow
//! client slows its producers (and through them the children writing output) instead of
//! growing the server's memory.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes of text a connection may have queued at once.
pub const MAX_QUEUED_BYTES: usize = 8 << 20;

/// The queue room a frame holds; released when the frame is dropped (after writing).
#[derive(Debug)]
pub struct QueuedBytes {
    _permit: OwnedSemaphorePermit,
}

/// A frame for the connection's writer.
#[derive(Debug)]
pub enum Frame {
    Text(String, QueuedBytes),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, String),
}

/// Sending side of a connection's outbound queue.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Frame>,
    bytes: Arc<Semaphore>,
}

/// The connection's writer is gone; the frame was dropped.
#[derive(Debug, Clone, Copy)]
pub struct Disconnected;

impl Outbound {
    pub fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Outbound {
                tx,
                bytes: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            },
            rx,
        )
    }

    /// Queues `text`, waiting for room (a message larger than the whole budget waits for
    /// an empty queue).
    pub async fn send(&self, text: String) -> Result<(), Disconnected> {
        let room = text.len().clamp(1, MAX_QUEUED_BYTES) as u32;
        let permit = self
            .bytes
            .clone()
            .acquire_many_owned(room)
            .await
            .map_err(|_| Disconnected)?;
        self.tx
            .send(Frame::Text(text, QueuedBytes { _permit: permit }))
            .await
            .map_err(|_| Disconnected)
    }

    pub async fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.send(Frame::Close(code, reason.to_string())).await;
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    pub fn same_channel(&self, other: &Outbound) -> bool {
        self.tx.same_channel(&other.tx)
    }
}

//! The bounded queue of frames a connection sends. Producers (responses, process output
//! pumps) await capacity, so a slow client slows its producers instead of growing memory.

use tokio::sync::mpsc;

/// A frame for the connection's writer.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    /// Close the connection with this WebSocket close code and reason.
    Close(u16, String),
}

/// Sending side of a connection's outbound queue.
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Frame>,
}

/// The connection's writer is gone; the frame was dropped.
#[derive(Debug, Clone, Copy)]
pub struct Disconnected;

impl Outbound {
    pub fn channel(capacity: usize) -> (Outbound, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Outbound { tx }, rx)
    }

    pub async fn send(&self, text: String) -> Result<(), Disconnected> {
        self.tx.send(Frame::Text(text)).await.map_err(|_| Disconnected)
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

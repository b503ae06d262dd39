//! The `process/start` requests still running on a connection, by processId. A request
//! naming such a process (a write, read, signal…) waits for that start first, so a client
//! may pipeline start → write without waiting for the start's answer, even though
//! requests otherwise run concurrently.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::session::lock;

#[derive(Default)]
pub struct Starting {
    /// Each start holds the sender; it closes when the start finishes either way.
    running: Mutex<HashMap<String, watch::Receiver<()>>>,
}

/// Held by a running start; dropping it releases the requests waiting on it.
pub struct StartGuard {
    _done: watch::Sender<()>,
}

impl Starting {
    /// Records a start of `process_id` (call in arrival order, before the start runs).
    pub fn begin(&self, process_id: &str) -> StartGuard {
        let (tx, rx) = watch::channel(());
        let mut running = lock(&self.running);
        running.retain(|_, rx| rx.has_changed().is_ok());
        running.insert(process_id.to_string(), rx);
        StartGuard { _done: tx }
    }

    /// Waits until no start of `process_id` is running.
    pub async fn settled(&self, process_id: &str) {
        // A finished start's entry stays until the next `begin` prunes it; it never waits.
        let waiting = lock(&self.running).get(process_id).cloned();
        if let Some(mut rx) = waiting {
            // No value is ever sent: this returns when the start's guard is (or was) dropped.
            let _ = rx.changed().await;
        }
    }
}

//! `fs/watchMissing`: polls a set of missing paths and sends `fs/missingChanged {watchId}`
//! once, when one of them appears. Watches belong to the session and end with it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use exec_protocol::envelope::encode_notification;
use exec_protocol::fs::MissingChangedNotification;
use exec_protocol::{RpcError, methods};
use tokio::task::AbortHandle;

use crate::session::{Session, lock};

const POLL: Duration = Duration::from_millis(250);
pub const MAX_WATCHES: usize = 256;
pub const MAX_PATHS: usize = 1024;

#[derive(Default)]
pub struct Watches {
    tasks: Mutex<HashMap<u64, AbortHandle>>,
}

impl Watches {
    pub fn watch(&self, session: Weak<Session>, watch_id: u64, paths: Vec<PathBuf>) -> Result<bool, RpcError> {
        if paths.len() > MAX_PATHS {
            return Err(RpcError::invalid_params(format!("at most {MAX_PATHS} paths per watch")));
        }
        let mut tasks = lock(&self.tasks);
        tasks.retain(|_, t| !t.is_finished());
        if tasks.len() >= MAX_WATCHES && !tasks.contains_key(&watch_id) {
            return Err(RpcError::invalid_request(format!(
                "too many watches (limit {MAX_WATCHES})"
            )));
        }
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tick.tick().await;
                let paths = paths.clone();
                let appeared = tokio::task::spawn_blocking(move || paths.iter().any(|p| p.symlink_metadata().is_ok()))
                    .await
                    .unwrap_or(false);
                if appeared {
                    if let Some(s) = session.upgrade() {
                        s.send(encode_notification(
                            methods::FS_MISSING_CHANGED,
                            MissingChangedNotification { watch_id },
                        ))
                        .await;
                    }
                    return;
                }
            }
        });
        if let Some(old) = tasks.insert(watch_id, task.abort_handle()) {
            old.abort();
        }
        Ok(true)
    }

    pub fn clear(&self) {
        for (_, t) in lock(&self.tasks).drain() {
            t.abort();
        }
    }
}

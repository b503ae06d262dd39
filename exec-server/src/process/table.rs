//! The processes of one session, by client-chosen id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use exec_protocol::RpcError;
use exec_protocol::process::ProcessInfo;

use super::Process;
use crate::session::lock;

#[derive(Default)]
pub struct ProcessTable {
    map: Mutex<HashMap<String, Arc<Process>>>,
}

impl ProcessTable {
    pub fn get(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.map).get(id).cloned()
    }

    /// Fails when a process with `id` is still open. A closed one (kept only for
    /// `process/read`) may be replaced.
    pub fn check_free(&self, id: &str) -> Result<(), RpcError> {
        match lock(&self.map).get(id) {
            Some(p) if !p.is_closed() => Err(RpcError::invalid_request(format!("process {id} already exists"))),
            _ => Ok(()),
        }
    }

    /// Registers `process` under `id`, unless another start took the id meanwhile.
    pub fn insert(&self, id: &str, process: Arc<Process>) -> Result<(), RpcError> {
        let mut map = lock(&self.map);
        if map.get(id).is_some_and(|p| !p.is_closed()) {
            return Err(RpcError::invalid_request(format!("process {id} already exists")));
        }
        map.insert(id.to_string(), process);
        Ok(())
    }

    /// Removes `id` if it still maps to `process` (retention expiry).
    pub fn remove_if_same(&self, id: &str, process: &Arc<Process>) {
        let mut map = lock(&self.map);
        if map.get(id).is_some_and(|p| Arc::ptr_eq(p, process)) {
            map.remove(id);
        }
    }

    pub fn kill_all(&self) {
        for p in lock(&self.map).values() {
            p.stop();
        }
    }

    pub fn all(&self) -> Vec<Arc<Process>> {
        lock(&self.map).values().cloned().collect()
    }

    pub fn list(&self) -> Vec<ProcessInfo> {
        let mut v: Vec<_> = self.all().iter().map(|p| p.info()).collect();
        v.sort_by(|a, b| {
            a.started_at_ms
                .cmp(&b.started_at_ms)
                .then_with(|| a.process_id.cmp(&b.process_id))
        });
        v
    }
}

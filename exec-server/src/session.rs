//! Sessions: what a client owns across reconnects (processes, file handles, watches), the
//! connection a session is attached to, detaching on disconnect and expiry after the
//! grace period, and the registry that finds a session for `initialize {resumeSessionId}`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use exec_protocol::{ErrorCode, RpcError};
use tracing::{Instrument, info, info_span};

use crate::connection::outbound::Outbound;
use crate::fs::handles::FileHandles;
use crate::fs::watch::Watches;
use crate::process::table::ProcessTable;

/// How long a resume waits for the session's previous connection to detach.
const RESUME_WAIT: Duration = Duration::from_millis(500);

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Attachment {
    conn_id: Option<u64>,
    outbound: Option<Outbound>,
    /// Bumped on every attach and detach, so a stale expiry timer does nothing.
    generation: u64,
}

/// One client session.
pub struct Session {
    pub id: String,
    attachment: Mutex<Attachment>,
    pub processes: ProcessTable,
    pub files: FileHandles,
    pub watches: Watches,
}

impl Session {
    fn new(id: String) -> Arc<Session> {
        Arc::new(Session {
            id,
            attachment: Mutex::new(Attachment::default()),
            processes: ProcessTable::default(),
            files: FileHandles::default(),
            watches: Watches::default(),
        })
    }

    /// The queue of the attached connection, if any.
    pub fn outbound(&self) -> Option<Outbound> {
        lock(&self.attachment).outbound.clone()
    }

    /// Sends a message to the attached connection; dropped while detached (output stays
    /// in the process's retention ring for `process/read`).
    pub async fn send(&self, text: String) {
        if let Some(out) = self.outbound() {
            let _ = out.send(text).await;
        }
    }

    pub fn attached_to(&self) -> Option<u64> {
        lock(&self.attachment).conn_id
    }

    /// Ends the session: kills every process group it owns and drops its handles.
    pub fn shut_down(&self) {
        self.processes.kill_all();
        self.files.clear();
        self.watches.clear();
    }
}

/// Every live session of the server.
pub struct SessionRegistry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    grace: Duration,
}

impl SessionRegistry {
    pub fn new(grace: Duration) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            grace,
        }
    }

    /// Creates a session attached to `conn_id`.
    pub fn create(&self, conn_id: u64, outbound: Outbound) -> Arc<Session> {
        let session = Session::new(uuid::Uuid::new_v4().to_string());
        {
            let mut a = lock(&session.attachment);
            a.conn_id = Some(conn_id);
            a.outbound = Some(outbound);
            a.generation += 1;
        }
        lock(&self.sessions).insert(session.id.clone(), session.clone());
        session
    }

    /// Re-attaches a session, waiting up to `RESUME_WAIT` for a previous connection that
    /// is going away (a client reconnects faster than the server sees the old socket drop).
    pub async fn resume_waiting(&self, id: &str, conn_id: u64, outbound: Outbound) -> Result<Arc<Session>, RpcError> {
        let deadline = tokio::time::Instant::now() + RESUME_WAIT;
        loop {
            match self.resume(id, conn_id, outbound.clone()) {
                Err(e) if e.code == ErrorCode::SESSION_BUSY && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// Re-attaches a detached session to `conn_id`.
    pub fn resume(&self, id: &str, conn_id: u64, outbound: Outbound) -> Result<Arc<Session>, RpcError> {
        let session = lock(&self.sessions)
            .get(id)
            .cloned()
            .ok_or_else(|| RpcError::invalid_request(format!("unknown session id {id}")))?;
        let mut a = lock(&session.attachment);
        if let Some(other) = a.conn_id
            && other != conn_id
            && a.outbound.as_ref().is_some_and(|o| !o.is_closed())
        {
            return Err(RpcError::new(
                ErrorCode::SESSION_BUSY,
                format!("session {id} is already attached to another connection"),
            ));
        }
        a.conn_id = Some(conn_id);
        a.outbound = Some(outbound);
        a.generation += 1;
        drop(a);
        info!(session = %id, conn = conn_id, "session resumed");
        Ok(session)
    }

    /// Detaches `session` from `conn_id` and schedules its expiry.
    pub fn detach(self: &Arc<Self>, session: &Arc<Session>, conn_id: u64) {
        let generation = {
            let mut a = lock(&session.attachment);
            if a.conn_id != Some(conn_id) {
                return;
            }
            a.conn_id = None;
            a.outbound = None;
            a.generation += 1;
            a.generation
        };
        if self.grace.is_zero() {
            self.expire(session, generation);
            return;
        }
        let registry = self.clone();
        let session = session.clone();
        let grace = self.grace;
        let span = info_span!("session_expiry", session = %session.id);
        tokio::spawn(
            async move {
                tokio::time::sleep(grace).await;
                registry.expire(&session, generation);
            }
            .instrument(span),
        );
    }

    /// Removes and shuts down `session` if it is still detached at `generation`.
    fn expire(&self, session: &Arc<Session>, generation: u64) {
        if lock(&session.attachment).generation != generation {
            return;
        }
        let removed = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&session.id) {
                Some(s) if Arc::ptr_eq(s, session) => sessions.remove(&session.id),
                _ => None,
            }
        };
        if let Some(s) = removed {
            info!(session = %s.id, "detached session expired; killing its processes");
            s.shut_down();
        }
    }

    /// Shuts down every session (server exit).
    pub fn shut_down_all(&self) -> Vec<Arc<Session>> {
        let all: Vec<_> = lock(&self.sessions).drain().map(|(_, s)| s).collect();
        for s in &all {
            s.shut_down();
        }
        all
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

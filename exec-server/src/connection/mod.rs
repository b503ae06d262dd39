//! One client connection, independent of its transport: handshake state, decoding,
//! dispatch (concurrent by default, strictly ordered with `--concurrent-requests 1`),
//! `$/cancelRequest`, and detaching the session when the connection ends.

pub mod outbound;
mod starting;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use exec_protocol::envelope::{RequestId, encode_error};
use exec_protocol::environment::CancelParams;
use exec_protocol::{Incoming, Request, RpcError, methods};
use tokio::sync::{Semaphore, oneshot};
use tracing::{Instrument, debug, info_span, warn};

use crate::rpc::{self, Reply};
use crate::server::ServerState;
use crate::session::{Session, lock};
use outbound::Outbound;

enum Phase {
    New,
    /// `initialize` answered, `initialized` not yet received.
    Initialized(Arc<Session>),
    Ready(Arc<Session>),
}

pub struct Connection {
    pub id: u64,
    /// Prefix of parse errors, e.g. "failed to parse websocket JSON-RPC message from
    /// exec-server websocket 127.0.0.1:5000".
    parse_prefix: String,
    pub server: Arc<ServerState>,
    pub out: Outbound,
    phase: Mutex<Phase>,
    inflight: Mutex<HashMap<RequestId, oneshot::Sender<()>>>,
    /// Streamed `http/request` bodies in progress, by their `requestId`.
    streams: Mutex<HashMap<String, ActiveStream>>,
    /// Requests this server sent to the client, by id, waiting for an answer.
    to_client: Mutex<HashMap<RequestId, oneshot::Sender<Result<serde_json::Value, RpcError>>>>,
    next_to_client: std::sync::atomic::AtomicI64,
    limiter: Arc<Semaphore>,
    /// `process/start` requests still running, which later requests for their process wait for.
    starting: starting::Starting,
}

struct ActiveStream {
    rpc_id: RequestId,
    cancel: oneshot::Sender<()>,
}

/// A reserved stream `requestId`; released when dropped.
pub struct StreamSlot {
    conn: Arc<Connection>,
    request_id: String,
    rpc_id: RequestId,
    /// Fires when the client cancels the request (Ok) or the connection ends (Err).
    pub cancelled: oneshot::Receiver<()>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = lock(&self.conn.streams);
        if streams.get(&self.request_id).is_some_and(|s| s.rpc_id == self.rpc_id) {
            streams.remove(&self.request_id);
        }
    }
}

impl Connection {
    pub fn new(server: Arc<ServerState>, out: Outbound, parse_prefix: String) -> Arc<Connection> {
        let permits = server.config.concurrent_requests.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Connection {
            id: server.next_connection_id(),
            parse_prefix,
            out,
            phase: Mutex::new(Phase::New),
            inflight: Mutex::new(HashMap::new()),
            streams: Mutex::new(HashMap::new()),
            to_client: Mutex::new(HashMap::new()),
            next_to_client: std::sync::atomic::AtomicI64::new(1),
            limiter: Arc::new(Semaphore::new(permits)),
            starting: Default::default(),
            server,
        })
    }

    /// The session for a request of `family`, or the handshake-state error.
    pub fn session(&self, family: &str) -> Result<Arc<Session>, RpcError> {
        match &*lock(&self.phase) {
            Phase::New => Err(RpcError::invalid_request(format!(
                "client must call initialize before using {family} methods"
            ))),
            Phase::Initialized(_) => Err(RpcError::invalid_request(format!(
                "client must send initialized before using {family} methods"
            ))),
            Phase::Ready(s) if s.attached_to() == Some(self.id) => Ok(s.clone()),
            Phase::Ready(_) => Err(RpcError::invalid_request(
                "session has been resumed by another connection",
            )),
        }
    }

    /// `initialize` may only succeed once per connection; a failed one leaves the slot free.
    pub fn check_not_initialized(&self) -> Result<(), RpcError> {
        match *lock(&self.phase) {
            Phase::New => Ok(()),
            _ => Err(RpcError::invalid_request(
                "initialize may only be sent once per connection",
            )),
        }
    }

    /// Records the session `initialize` opened. `initialize` runs inline (before the
    /// connection is ready nothing runs concurrently), so the phase is still `New`.
    pub fn begin_session(&self, session: Arc<Session>) {
        *lock(&self.phase) = Phase::Initialized(session);
    }

    /// Reserves `request_id` for a streamed response of request `rpc_id`.
    pub fn reserve_stream(self: &Arc<Self>, request_id: &str, rpc_id: &RequestId) -> Result<StreamSlot, RpcError> {
        let mut streams = lock(&self.streams);
        if streams.contains_key(request_id) {
            return Err(RpcError::invalid_params(format!(
                "http/request streamResponse requestId `{request_id}` is already active"
            )));
        }
        let (cancel, cancelled) = oneshot::channel();
        streams.insert(
            request_id.to_string(),
            ActiveStream {
                rpc_id: rpc_id.clone(),
                cancel,
            },
        );
        Ok(StreamSlot {
            conn: self.clone(),
            request_id: request_id.to_string(),
            rpc_id: rpc_id.clone(),
            cancelled,
        })
    }

    fn is_ready(&self) -> bool {
        matches!(*lock(&self.phase), Phase::Ready(_))
    }

    /// Handles one incoming message.
    pub async fn handle_message(self: &Arc<Self>, bytes: &[u8]) {
        match Incoming::decode(bytes) {
            Err(e) => {
                let err = RpcError::invalid_request(format!("{}: {e}", self.parse_prefix));
                let _ = self.out.send(encode_error(&RequestId::UNKNOWN, &err)).await;
            }
            Ok(Incoming::Request(req)) => self.handle_request(req).await,
            Ok(Incoming::Notification(n)) => self.handle_notification(&n.method, n.params),
            Ok(Incoming::Response { id, result }) => self.answered(id, Ok(result)),
            Ok(Incoming::Error { id, error }) => self.answered(id, Err(error)),
        }
    }

    fn answered(&self, id: RequestId, answer: Result<serde_json::Value, RpcError>) {
        match lock(&self.to_client).remove(&id) {
            Some(waiter) => {
                let _ = waiter.send(answer);
            }
            None => debug!(conn = self.id, %id, "ignoring a response to a request this server did not send"),
        }
    }

    /// Sends a request to the client and waits up to `timeout` for its answer. On timeout
    /// the request is cancelled with `$/cancelRequest` and fails "auth refresh request
    /// timed out" style: `<method> request timed out`.
    pub async fn request_client(
        &self,
        method: &str,
        params: serde_json::Value,
        timeout: std::time::Duration,
    ) -> Result<serde_json::Value, RpcError> {
        // Server-issued ids are strings, so they never collide with the client's own.
        let n = self.next_to_client.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = RequestId::Str(format!("server-{n}"));
        let (tx, rx) = oneshot::channel();
        lock(&self.to_client).insert(id.clone(), tx);
        let text = serde_json::to_string(&exec_protocol::envelope::RequestOut {
            id: &id,
            method,
            params,
        })
        .unwrap_or_default();
        if self.out.send(text).await.is_err() {
            lock(&self.to_client).remove(&id);
            return Err(RpcError::internal("the client connection is gone"));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(RpcError::internal("the client connection is gone")),
            Err(_) => {
                lock(&self.to_client).remove(&id);
                let cancel = exec_protocol::envelope::encode_notification(
                    methods::CANCEL_REQUEST,
                    serde_json::json!({"id": id}),
                );
                let _ = self.out.send(cancel).await;
                Err(RpcError::internal("auth refresh request timed out"))
            }
        }
    }

    fn handle_notification(&self, method: &str, params: serde_json::Value) {
        match method {
            methods::INITIALIZED => {
                let mut phase = lock(&self.phase);
                match std::mem::replace(&mut *phase, Phase::New) {
                    Phase::Initialized(s) | Phase::Ready(s) => *phase = Phase::Ready(s),
                    Phase::New => {
                        warn!(conn = self.id, "`initialized` before `initialize`; ignored")
                    }
                }
            }
            methods::CANCEL_REQUEST => match serde_json::from_value::<CancelParams>(params) {
                Ok(p) => {
                    // A streamed request is cancelled through its stream, whether its head
                    // was sent already or not: the stream then ends with "cancelled".
                    let stream = {
                        let mut streams = lock(&self.streams);
                        let key = streams.iter().find(|(_, s)| s.rpc_id == p.id).map(|(k, _)| k.clone());
                        key.and_then(|k| streams.remove(&k))
                    };
                    if let Some(stream) = stream {
                        let _ = stream.cancel.send(());
                    } else if let Some(cancel) = lock(&self.inflight).remove(&p.id) {
                        let _ = cancel.send(());
                    }
                }
                Err(e) => warn!(conn = self.id, error = %e, "malformed $/cancelRequest ignored"),
            },
            other => debug!(conn = self.id, method = other, "unknown notification ignored"),
        }
    }

    async fn handle_request(self: &Arc<Self>, req: Request) {
        // Handlers that never wait (a spawn, a signal, a lookup) run inline: a task per
        // request would cost more than the work. Waiting ones run concurrently.
        let concurrent =
            self.server.config.concurrent_requests > 1 && self.is_ready() && !rpc::never_waits(&req.method);
        let span = info_span!("request", conn = self.id, id = %req.id, method = %req.method);
        let process_id = || req.params.get("processId").and_then(serde_json::Value::as_str);
        let mut start_guard = None;
        if req.method == methods::PROCESS_START {
            if concurrent && let Some(id) = process_id() {
                start_guard = Some(self.starting.begin(id));
            }
        } else if req.method.starts_with("process/")
            && let Some(id) = process_id()
        {
            self.starting.settled(id).await;
        }
        if !concurrent {
            let reply = rpc::dispatch(self, &req.id, &req.method, req.params)
                .instrument(span)
                .await;
            self.respond(&req.id, reply).await;
            return;
        }
        // Writes to one process are queued here, in arrival order; only their completion
        // runs concurrently.
        let Request { id, method, params } = req;
        let (pending_write, params) = if method == methods::PROCESS_WRITE {
            match rpc::process::write_enqueue(self, params).instrument(span.clone()).await {
                Ok(step) => (Some(step), serde_json::Value::Null),
                Err(e) => return self.respond(&id, Err(e)).await,
            }
        } else {
            (None, params)
        };
        if let Some(rpc::process::WriteStep::Done(status)) = pending_write {
            // Written (or refused) already: answer without a task.
            let reply = rpc::process::write_finish(rpc::process::WriteStep::Done(status)).await;
            return self.respond(&id, reply).await;
        }
        let Ok(permit) = self.limiter.clone().acquire_owned().await else {
            return;
        };
        let (cancel_tx, cancel_rx) = oneshot::channel();
        lock(&self.inflight).insert(id.clone(), cancel_tx);
        let conn = self.clone();
        tokio::spawn(
            async move {
                let work = async {
                    match pending_write {
                        Some(step) => rpc::process::write_finish(step).await,
                        None => rpc::dispatch(&conn, &id, &method, params).await,
                    }
                };
                let reply = tokio::select! {
                    reply = work => {
                        lock(&conn.inflight).remove(&id);
                        reply
                    }
                    Ok(()) = cancel_rx => Err(RpcError::cancelled()),
                };
                conn.respond(&id, reply).await;
                drop(start_guard); // after the start's answer is queued
                drop(permit);
            }
            .instrument(span),
        );
    }

    async fn respond(&self, id: &RequestId, reply: Reply) {
        let text = match reply {
            Ok(rpc::Answer::Json(raw)) => rpc::encode_raw_response(id, &raw),
            Ok(rpc::Answer::Sent) => return,
            Err(e) => encode_error(id, &e),
        };
        let _ = self.out.send(text).await;
    }

    /// The transport ended: detach the session and cancel what is still running.
    pub fn closed(&self) {
        for (_, cancel) in lock(&self.inflight).drain() {
            let _ = cancel.send(());
        }
        // Dropping the cancel senders ends every body stream of this connection, and
        // requests to the client fail.
        lock(&self.streams).clear();
        lock(&self.to_client).clear();
        let session = match &*lock(&self.phase) {
            Phase::New => None,
            Phase::Initialized(s) | Phase::Ready(s) => Some(s.clone()),
        };
        if let Some(s) = session {
            self.server.sessions.detach(&s, self.id);
        }
    }
}

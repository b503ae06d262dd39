//! `ExecServerClient`: a Rust client of the protocol over WebSocket. Requests are
//! matched to responses by id; server notifications arrive on a bounded channel (a slow
//! consumer applies backpressure to the socket rather than buffering without bound).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use exec_protocol::envelope::{RequestId, RequestOut, encode_notification};
use exec_protocol::environment::InitializeResult;
use exec_protocol::{Incoming, Notification, RpcError, methods};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::session::lock;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Rpc(#[from] RpcError),
    #[error("connection closed")]
    Closed,
    #[error("cannot decode the answer: {0}")]
    Decode(#[from] serde_json::Error),
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Result<Value, RpcError>>>>>;

/// A connected client.
pub struct ExecServerClient {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicI64,
}

impl ExecServerClient {
    /// Connects to `url` (`ws://host:port`), with an optional bearer token.
    pub async fn connect(
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(ExecServerClient, mpsc::Receiver<Notification>), ClientError> {
        Self::connect_traced(url, bearer, false).await
    }

    /// Like `connect`; with `trace`, every frame sent and received is printed to stderr.
    pub async fn connect_traced(
        url: &str,
        bearer: Option<&str>,
        trace: bool,
    ) -> Result<(ExecServerClient, mpsc::Receiver<Notification>), ClientError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        if let Some(token) = bearer {
            let value =
                HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| ClientError::Connect(e.to_string()))?;
            request.headers_mut().insert("authorization", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (notif_tx, notif_rx) = mpsc::channel(4096);
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if trace && let Message::Text(t) = &msg {
                    eprintln!("→ {}", t.as_str());
                }
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_pending = pending.clone();
        let reply = out.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let decoded = match &msg {
                    Message::Text(t) => {
                        if trace {
                            eprintln!("← {}", t.as_str());
                        }
                        Incoming::decode(t.as_bytes())
                    }
                    Message::Binary(b) => Incoming::decode(b),
                    Message::Close(_) => break,
                    _ => continue,
                };
                match decoded {
                    Ok(Incoming::Response {
                        id: RequestId::Int(id),
                        result,
                    }) => {
                        if let Some(tx) = lock(&reader_pending).remove(&id) {
                            let _ = tx.send(Ok(result));
                        }
                    }
                    Ok(Incoming::Error {
                        id: RequestId::Int(id),
                        error,
                    }) => {
                        if let Some(tx) = lock(&reader_pending).remove(&id) {
                            let _ = tx.send(Err(error));
                        }
                    }
                    Ok(Incoming::Notification(n)) => {
                        // When nobody listens for notifications, responses are still served.
                        let _ = notif_tx.send(n).await;
                    }
                    Ok(Incoming::Request(r)) => {
                        let err = RpcError::method_not_found(&r.method);
                        let _ = reply.send(Message::text(exec_protocol::envelope::encode_error(&r.id, &err)));
                    }
                    _ => {}
                }
            }
            lock(&reader_pending).clear();
        });
        Ok((
            ExecServerClient {
                out,
                pending,
                next_id: AtomicI64::new(1),
            },
            notif_rx,
        ))
    }

    /// Sends a request and waits for its result.
    pub async fn request_value(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let text = serde_json::to_string(&RequestOut {
            id: &RequestId::Int(id),
            method,
            params,
        })?;
        if self.out.send(Message::text(text)).is_err() {
            lock(&self.pending).remove(&id);
            return Err(ClientError::Closed);
        }
        Ok(rx.await.map_err(|_| ClientError::Closed)??)
    }

    /// Sends a request with typed params and result.
    pub async fn request<P: Serialize, R: DeserializeOwned>(&self, method: &str, params: P) -> Result<R, ClientError> {
        let value = self.request_value(method, serde_json::to_value(params)?).await?;
        Ok(serde_json::from_value(value)?)
    }

    pub fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        self.out
            .send(Message::text(encode_notification(method, params)))
            .map_err(|_| ClientError::Closed)
    }

    /// `initialize` then `initialized`.
    pub async fn initialize(&self, client_name: &str, resume: Option<String>) -> Result<InitializeResult, ClientError> {
        let params = serde_json::json!(InitializeParamsOut {
            client_name,
            resume_session_id: resume
        });
        let result: InitializeResult = serde_json::from_value(self.request_value(methods::INITIALIZE, params).await?)?;
        self.notify(methods::INITIALIZED, serde_json::json!({}))?;
        Ok(result)
    }

    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitializeParamsOut<'a> {
    client_name: &'a str,
    resume_session_id: Option<String>,
}

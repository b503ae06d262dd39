//! `http/request`: validates the request with the reference's messages, sends it through
//! the process-wide broker, and answers with the whole body (buffered) or with the status
//! and headers first and the body as ordered `http/request/bodyDelta` notifications
//! (streamed). A streamed body is read only as fast as the connection's outbound queue
//! drains; `$/cancelRequest` and connection loss end it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use exec_protocol::envelope::RequestId;
use exec_protocol::http::{HttpRequestParams, HttpRequestResult, RedirectPolicy, ResponseHeader, encode_body_delta};
use exec_protocol::{Base64Bytes, RpcError};
use futures_util::FutureExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::debug;
use url::Url;

use super::{Answer, Reply, parse};
use crate::connection::{Connection, StreamSlot};
use crate::http::{BrokerError, BrokerRequest, classify, timeout};

/// Largest body delta.
const MAX_DELTA: usize = 1 << 20;

fn invalid(message: String) -> RpcError {
    RpcError::invalid_params(message)
}

pub fn broker_error(e: &BrokerError) -> RpcError {
    let code = match e {
        BrokerError::Policy(_) => exec_protocol::ErrorCode::INVALID_PARAMS,
        _ => exec_protocol::ErrorCode::INTERNAL,
    };
    RpcError::new(code, e.to_string()).with_data(json!({ "kind": e.kind() }))
}

/// Turns wire params into a broker request, with the reference's validation messages.
fn validate(p: &HttpRequestParams) -> Result<BrokerRequest, RpcError> {
    let method = Method::from_bytes(p.method.as_bytes())
        .map_err(|_| invalid("http/request method is invalid: invalid HTTP method".into()))?;
    let url = Url::parse(&p.url).map_err(|e| invalid(format!("http/request url is invalid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "http/request only supports http and https URLs, got {}",
            url.scheme()
        )));
    }
    let mut headers = HeaderMap::new();
    for h in &p.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid("http/request header name is invalid: invalid HTTP header name".into()))?;
        let mut value = h.value.clone();
        if let Some(var) = &h.value_env_var {
            let extra = std::env::var(var).map_err(|_| {
                invalid(format!(
                    "http/request header {} requires executor environment variable {var}",
                    h.name
                ))
            })?;
            value.push_str(&extra);
        }
        // The value is not echoed: it may carry a secret from `valueEnvVar`.
        let value = HeaderValue::from_str(&value)
            .map_err(|e| invalid(format!("http/request header value is invalid for {}: {e}", h.name)))?;
        headers.append(name, value);
    }
    Ok(BrokerRequest {
        method,
        url,
        headers,
        body: p.body_base64.as_ref().map(|b| Bytes::from(b.0.clone())),
        timeout: p.timeout_ms.map(std::time::Duration::from_millis),
        follow_redirects: p.redirect_policy == RedirectPolicy::Follow,
        auth: None,
    })
}

/// Client-supplied auth headers on a bound request: stripped or refused, per binding.
fn client_auth_headers(
    binding: &crate::credentials::bindings::Binding,
    headers: &mut HeaderMap,
) -> Result<(), RpcError> {
    use crate::credentials::bindings::ClientHeaders;
    let names = [
        reqwest::header::AUTHORIZATION,
        reqwest::header::PROXY_AUTHORIZATION,
        reqwest::header::COOKIE,
    ];
    if binding.client_headers == ClientHeaders::Reject && names.iter().any(|n| headers.contains_key(n)) {
        return Err(invalid(format!(
            "http/request with credential `{}` must not carry Authorization, Proxy-Authorization or Cookie headers",
            binding.name
        )));
    }
    for n in names {
        headers.remove(n);
    }
    headers.remove(&binding.header);
    Ok(())
}

fn response_headers(response: &Response) -> Vec<ResponseHeader> {
    response
        .headers()
        .iter()
        .map(|(name, value)| match value.to_str() {
            Ok(text) => ResponseHeader {
                name: name.as_str().to_string(),
                value: text.to_string(),
                value_base64: None,
            },
            Err(_) => ResponseHeader {
                name: name.as_str().to_string(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                value_base64: Some(Base64Bytes::encode(value.as_bytes())),
            },
        })
        .collect()
}

/// The next piece of the body, coalescing what is already available up to `max` bytes.
/// `Ok(None)` at the end of the body.
async fn next_piece(
    response: &mut Response,
    deadline: Option<Instant>,
    url: &Url,
    max: usize,
) -> Result<Option<Bytes>, BrokerError> {
    let first = match deadline {
        Some(d) => tokio::time::timeout_at(d, response.chunk())
            .await
            .map_err(|_| timeout(url))?,
        None => response.chunk().await,
    }
    .map_err(|e| body_error(&e, url))?;
    let Some(first) = first else { return Ok(None) };
    if first.len() >= max {
        return Ok(Some(first));
    }
    let mut piece = BytesMut::from(&first[..]);
    while piece.len() < max {
        match response.chunk().now_or_never() {
            Some(Ok(Some(more))) => piece.extend_from_slice(&more),
            Some(Err(e)) => return Err(body_error(&e, url)),
            _ => break,
        }
    }
    Ok(Some(piece.freeze()))
}

fn body_error(e: &reqwest::Error, url: &Url) -> BrokerError {
    match classify(e, url) {
        BrokerError::Transport {
            kind: "request",
            message,
        } => BrokerError::Transport { kind: "body", message },
        other => other,
    }
}

pub async fn request(conn: &Arc<Connection>, id: &RequestId, params: Value) -> Reply {
    let p: HttpRequestParams = parse(params)?;
    let req = validate(&p)?;
    conn.session("http")?;
    let url = req.url.clone();
    let mut slot = if p.stream_response {
        Some(conn.reserve_stream(&p.request_id, id)?)
    } else {
        None
    };
    let broker = conn.server.broker.clone();
    let binding = match &p.credential {
        Some(name) => Some(conn.server.config.bindings.get(name).ok_or_else(|| {
            invalid(format!(
                "http/request credential `{name}` is not configured on this server"
            ))
        })?),
        None => None,
    };
    let mut req = req;
    if let Some(b) = &binding {
        client_auth_headers(b, &mut req.headers)?;
    }
    let send = async {
        match &binding {
            Some(b) => super::http_auth::send_bound(conn, &broker, b, req).await,
            None => broker.send(req).await.map(|s| (s, false)).map_err(|e| broker_error(&e)),
        }
    };
    let sent = match slot.as_mut() {
        // A streamed request is cancelled through its slot, even before its head arrives.
        Some(slot) => tokio::select! {
            sent = send => sent,
            _ = &mut slot.cancelled => return Err(RpcError::cancelled()),
        },
        None => send.await,
    };
    let (sent, retry_required) = sent?;
    let (mut response, deadline) = (sent.response, sent.deadline);
    let head = HttpRequestResult {
        status: response.status().as_u16(),
        headers: response_headers(&response),
        body_base64: Base64Bytes::default(),
        retry_required: retry_required.then_some(true),
    };
    let Some(slot) = slot else {
        let limit = broker.config().max_buffered_body;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(broker_error(&BrokerError::TooLarge { limit }));
        }
        let mut body: Vec<Bytes> = Vec::new();
        let mut size = 0u64;
        loop {
            let chunk = match deadline {
                Some(d) => tokio::time::timeout_at(d, response.chunk())
                    .await
                    .map_err(|_| broker_error(&timeout(&url)))?,
                None => response.chunk().await,
            }
            .map_err(|e| broker_error(&body_error(&e, &url)))?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            if size > limit {
                return Err(broker_error(&BrokerError::TooLarge { limit }));
            }
            body.push(chunk);
        }
        let _ = conn.out.send(encode_buffered(id, &head, &body, size as usize)).await;
        return Ok(Answer::Sent);
    };
    let text = super::encode_raw_response(id, &serde_json::to_string(&head).unwrap_or_default());
    if conn.out.send(text).await.is_err() {
        return Ok(Answer::Sent);
    }
    let conn = conn.clone();
    let request_id = p.request_id.clone();
    tokio::spawn(async move { stream_body(conn, slot, request_id, response, deadline, url).await });
    Ok(Answer::Sent)
}

/// The whole response message of a buffered request, built directly: the body's base64
/// needs no JSON escaping, so it is written once, straight into the message.
fn encode_buffered(id: &RequestId, head: &HttpRequestResult, body: &[Bytes], size: usize) -> String {
    let headers = serde_json::to_string(&head.headers).unwrap_or_else(|_| "[]".into());
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    let mut s = String::with_capacity(64 + id.len() + headers.len() + size.div_ceil(3) * 4);
    s.push_str("{\"id\":");
    s.push_str(&id);
    s.push_str(",\"result\":{\"status\":");
    s.push_str(&head.status.to_string());
    s.push_str(",\"headers\":");
    s.push_str(&headers);
    if head.retry_required == Some(true) {
        s.push_str(",\"retryRequired\":true");
    }
    s.push_str(",\"bodyBase64\":\"");
    Base64Bytes::encode_pieces_into(body.iter().map(|b| &b[..]), &mut s);
    s.push_str("\"}}");
    s
}

async fn stream_body(
    conn: Arc<Connection>,
    mut slot: StreamSlot,
    request_id: String,
    mut response: Response,
    deadline: Option<Instant>,
    url: Url,
) {
    let mut seq = 0u64;
    let send = |seq: u64, data: &[u8], done: bool, error: Option<String>| {
        encode_body_delta(&request_id, seq, data, done, error.as_deref())
    };
    let error = loop {
        tokio::select! {
            biased;
            cancelled = &mut slot.cancelled => {
                if cancelled.is_err() {
                    return; // the connection is gone
                }
                break Some("cancelled".to_string());
            }
            piece = next_piece(&mut response, deadline, &url, MAX_DELTA) => match piece {
                Ok(Some(data)) => {
                    for part in data.chunks(MAX_DELTA) {
                        seq += 1;
                        if conn.out.send(send(seq, part, false, None)).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break None,
                Err(e) => {
                    debug!(error = %e, "streamed body failed");
                    break Some(format!("error decoding response body: {e}"));
                }
            },
        }
    };
    let _ = conn.out.send(send(seq + 1, &[], true, error)).await;
    drop(slot);
}

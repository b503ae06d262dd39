//! The TCP listener: one hyper HTTP/1.1 server per accepted socket (TCP_NODELAY set)
//! that answers `GET /readyz` and `/healthz`, refuses browser requests (any `Origin`
//! header → 403), authenticates and upgrades `GET /` to a WebSocket connection.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::{Instrument, debug, info_span, warn};

use super::websocket;
use crate::server::ServerState;

type Body = Full<Bytes>;

/// Accepts connections until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: Arc<ServerState>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                    }
                    let state = state.clone();
                    tokio::spawn(async move {
                        let io = TokioIo::new(stream);
                        let svc = service_fn(move |req| route(req, peer, state.clone()));
                        if let Err(e) = http1::Builder::new().serve_connection(io, svc).with_upgrades().await {
                            debug!(%peer, error = %e, "http connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors or a transient accept error: back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    if !body.is_empty() {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    res
}

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<ServerState>,
) -> Result<Response<Body>, Infallible> {
    if req.headers().contains_key(header::ORIGIN) {
        return Ok(plain(StatusCode::FORBIDDEN, ""));
    }
    let res = match req.uri().path() {
        "/readyz" | "/healthz" => match *req.method() {
            Method::GET | Method::HEAD => plain(StatusCode::OK, ""),
            _ => {
                let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "");
                res.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET,HEAD"));
                res
            }
        },
        "/" => upgrade(req, peer, state),
        _ => plain(StatusCode::NOT_FOUND, ""),
    };
    Ok(res)
}

fn upgrade(req: Request<Incoming>, peer: SocketAddr, state: Arc<ServerState>) -> Response<Body> {
    if !header_has_token(&req, header::CONNECTION, "upgrade") {
        return plain(StatusCode::BAD_REQUEST, "Connection header did not include 'upgrade'");
    }
    if !header_has_token(&req, header::UPGRADE, "websocket") {
        return plain(StatusCode::BAD_REQUEST, "Upgrade header did not include 'websocket'");
    }
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrades must use GET");
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version header must be 13");
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key header is missing");
    };
    let accept = derive_accept_key(key.as_bytes());
    let auth = req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
    if let Err(message) = state.config.ws_auth.check(auth) {
        debug!(%peer, message, "websocket upgrade refused");
        return plain(StatusCode::UNAUTHORIZED, message);
    }
    let span = info_span!("connection", %peer);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(websocket::config(&state.config)),
                    )
                    .await;
                    websocket::run(ws, peer, state).await;
                }
                Err(e) => debug!(error = %e, "upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

//! A fake token authority that is also the protected resource, over HTTPS on 127.0.0.1
//! (a leaf from the test CA): single-use refresh tokens (reuse → `refresh_token_reused`),
//! call counters, a scripted delay, cookies on its answers, and a resource that accepts
//! only the newest access token (or nothing, when told).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::mitm::TestCa;
use super::upstream::read_body;

pub const ACCOUNT: &str = "acc-1";

pub fn jwt(tag: &str, exp_in: i64) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        json!({"exp": now + exp_in, "tag": tag, "https://api.openai.com/auth": {"chatgpt_account_id": ACCOUNT}});
    format!(
        "{}.{}.sig",
        e.encode(br#"{"alg":"none"}"#),
        e.encode(claims.to_string())
    )
}

/// (path, Authorization, Cookie) of one request the resource saw.
pub type Seen = (String, Option<String>, Option<String>);

#[derive(Default)]
pub struct State {
    pub refreshes: AtomicUsize,
    pub valid_refresh: Mutex<HashSet<String>>,
    pub accepted: Mutex<HashSet<String>>,
    pub reject_all: AtomicBool,
    pub delay_ms: AtomicU64,
    pub issued: Mutex<Vec<String>>,
    /// Authorization and Cookie headers the resource saw, by path.
    pub seen: Mutex<Vec<Seen>>,
    counter: AtomicUsize,
}

pub struct Authority {
    pub port: u16,
    pub state: Arc<State>,
    pub ca_pem: String,
}

impl Authority {
    pub async fn start() -> Authority {
        let ca = TestCa::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config("127.0.0.1"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        state.valid_refresh.lock().unwrap().insert("rt-0".into());
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, acceptor) = (s.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let svc = hyper::service::service_fn(move |req| serve(req, s.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Authority {
            port,
            state,
            ca_pem: ca.pem(),
        }
    }

    pub fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn refreshes(&self) -> usize {
        self.state.refreshes.load(Ordering::SeqCst)
    }

    /// Every token string this authority issued (or was seeded with).
    pub fn secrets(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Writes a store with access token `access` (accepted by the resource if `accepted`)
    /// and refresh token rt-0.
    pub fn write_store(&self, path: &std::path::Path, access: &str, accepted: bool) {
        if accepted {
            self.state.accepted.lock().unwrap().insert(access.to_string());
        }
        self.state
            .issued
            .lock()
            .unwrap()
            .extend([access.to_string(), "rt-0".to_string()]);
        let doc = json!({"tokens": {"access_token": access, "refresh_token": "rt-0", "account_id": ACCOUNT, "id_token": jwt("id", 3600)}, "generation": 1});
        std::fs::write(path, doc.to_string()).unwrap();
    }
}

fn respond(status: u16, body: String, cookies: &[&str]) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    for c in cookies {
        res.headers_mut().append("set-cookie", c.parse().unwrap());
    }
    res
}

async fn serve(req: Request<hyper::body::Incoming>, s: Arc<State>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_body(req.into_body()).await;
    if path == "/oauth/token" {
        s.refreshes.fetch_add(1, Ordering::SeqCst);
        let delay = s.delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let rt = body["refresh_token"].as_str().unwrap_or_default().to_string();
        if !s.valid_refresh.lock().unwrap().remove(&rt) {
            let reused = json!({"error": {"code": "refresh_token_reused"}}).to_string();
            return Ok(respond(401, reused, &[]));
        }
        let n = s.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let (access, refresh) = (jwt(&format!("issued-{n}"), 3600), format!("rt-{n}"));
        s.valid_refresh.lock().unwrap().insert(refresh.clone());
        s.accepted.lock().unwrap().insert(access.clone());
        s.issued.lock().unwrap().extend([access.clone(), refresh.clone()]);
        let answer = json!({"access_token": access, "refresh_token": refresh}).to_string();
        return Ok(respond(
            200,
            answer,
            &["__cf_bm=from-authority; Path=/", "auth_session=nope; Path=/"],
        ));
    }
    s.seen.lock().unwrap().push((path.clone(), auth.clone(), cookie));
    if path == "/redirect-away" {
        let target = String::from_utf8_lossy(&body).to_string();
        let mut res = respond(302, String::new(), &["bound_cookie=1; Path=/"]);
        res.headers_mut().insert("location", target.parse().unwrap());
        return Ok(res);
    }
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if s.reject_all.load(Ordering::SeqCst) || !s.accepted.lock().unwrap().contains(&token) {
        return Ok(respond(401, "unauthorized".into(), &[]));
    }
    Ok(respond(200, format!("ok {path}"), &[]))
}

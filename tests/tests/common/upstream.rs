//! A scripted HTTP/1.1 upstream on 127.0.0.1 for the `http/request` suites: it records
//! every request, counts TCP connections, and answers with a closure's reply (status,
//! raw header bytes, body as one piece, timed chunks, or a body cut off mid-way).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header lines as received (names lower-case), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[derive(Clone)]
pub enum Body {
    Full(Vec<u8>),
    /// Pieces sent with a pause before each.
    Chunks(Vec<(Duration, Vec<u8>)>),
    /// Sends these bytes, then fails the connection.
    CutAfter(Vec<u8>),
}

#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Body,
    /// Pause before the response head.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: &[u8]) -> Reply {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: Body::Full(body.to_vec()),
            delay: Duration::ZERO,
        }
    }
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::ok(b"")
        }
    }
    pub fn header(mut self, name: &str, value: &[u8]) -> Reply {
        self.headers.push((name.to_string(), value.to_vec()));
        self
    }
    pub fn body(mut self, body: Body) -> Reply {
        self.body = body;
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

pub struct Upstream {
    pub port: u16,
    pub log: Arc<Mutex<Vec<Recorded>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Handler = Arc::new(handler);
        let (l, c) = (log.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (log, handler) = (l.clone(), handler.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| serve(req, log.clone(), handler.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { port, log, connections }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A request body read whole (empty if the client broke off).
pub async fn read_body(body: Incoming) -> Bytes {
    body.collect().await.map(|b| b.to_bytes()).unwrap_or_default()
}

async fn serve(
    req: Request<Incoming>,
    log: Arc<Mutex<Vec<Recorded>>>,
    handler: Handler,
) -> Result<Response<BoxBody>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = read_body(req.into_body()).await.to_vec();
    let recorded = Recorded {
        method,
        path,
        headers,
        body,
    };
    let reply = handler(&recorded);
    log.lock().unwrap().push(recorded);
    Ok(respond(reply).await)
}

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// Builds the hyper response for a scripted reply (after its delay).
pub async fn respond(reply: Reply) -> Response<BoxBody> {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let body: BoxBody = match reply.body {
        Body::Full(data) => http_body_util::Full::new(Bytes::from(data))
            .map_err(|never| match never {})
            .boxed(),
        Body::Chunks(chunks) => {
            let stream = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
                let (pause, data) = it.next()?;
                tokio::time::sleep(pause).await;
                Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from(data))), it))
            });
            StreamBody::new(stream).boxed()
        }
        Body::CutAfter(data) => {
            // The head and the first bytes go out before the connection fails.
            let stream = futures_util::stream::unfold(0, move |step| {
                let data = data.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(Bytes::from(data))), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Some((Err(std::io::Error::other("cut")), 2))
                        }
                        _ => None,
                    }
                }
            });
            StreamBody::new(stream).boxed()
        }
    };
    let mut res = Response::new(body);
    *res.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap_or(hyper::StatusCode::OK);
    for (name, value) in reply.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_bytes(&value),
        ) {
            res.headers_mut().append(n, v);
        }
    }
    res
}

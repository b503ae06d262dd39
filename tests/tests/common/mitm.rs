//! A TLS-intercepting HTTP proxy on 127.0.0.1 for the broker suites: an rcgen test CA,
//! a leaf certificate per host, CONNECT handled through hyper's upgrade, TLS terminated
//! with tokio-rustls, every decrypted request recorded, and scripted responses. Plain
//! `http://` requests (absolute form) are recorded and answered too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::upstream::{BoxBody, Reply, respond};

/// A request the proxy saw, decrypted.
#[derive(Debug, Clone)]
pub struct Seen {
    pub scheme: &'static str,
    pub host: String,
    pub method: String,
    pub path: String,
    /// Every `cookie` header line, in order.
    pub cookies: Vec<String>,
}

pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "exec-server test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert");
        TestCa {
            issuer,
            leaves: Mutex::default(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server config with a leaf for `host`, cached per host.
    pub fn server_config(&self, host: &str) -> Arc<rustls::ServerConfig> {
        if let Some(cfg) = self.leaves.lock().unwrap().get(host) {
            return cfg.clone();
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = CertificateParams::new(vec![host.to_string()])
            .expect("leaf params")
            .signed_by(&key, &self.issuer)
            .expect("leaf");
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), self.issuer.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let cfg = Arc::new(cfg);
        self.leaves.lock().unwrap().insert(host.to_string(), cfg.clone());
        cfg
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Mitm {
    pub port: u16,
    pub ca: Arc<TestCa>,
    log: Arc<Mutex<Vec<Seen>>>,
    connects: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct State {
    ca: Arc<TestCa>,
    log: Arc<Mutex<Vec<Seen>>>,
    connects: Arc<AtomicUsize>,
    handler: Handler,
}

impl Mitm {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Mitm {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = State {
            ca: Arc::new(TestCa::new()),
            log: Arc::default(),
            connects: Arc::default(),
            handler: Arc::new(handler),
        };
        let mitm = Mitm {
            port,
            ca: state.ca.clone(),
            log: state.log.clone(),
            connects: state.connects.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| outer(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        mitm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn connect_count(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

async fn record(req: Request<Incoming>, scheme: &'static str, host: String, state: &State) -> Response<BoxBody> {
    let seen = Seen {
        scheme,
        host,
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        cookies: req
            .headers()
            .get_all(hyper::header::COOKIE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
    };
    let _ = req.into_body().collect().await;
    let reply = (state.handler)(&seen);
    state.log.lock().unwrap().push(seen);
    respond(reply).await
}

async fn outer(req: Request<Incoming>, state: State) -> Result<Response<BoxBody>, Infallible> {
    if req.method() != Method::CONNECT {
        let host = req.uri().host().unwrap_or_default().to_string();
        return Ok(record(req, "http", host, &state).await);
    }
    state.connects.fetch_add(1, Ordering::SeqCst);
    let host = req.uri().host().unwrap_or_default().to_string();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(state.ca.server_config(&host));
        let Ok(tls) = acceptor.accept(TokioIo::new(upgraded)).await else {
            return;
        };
        let svc = hyper::service::service_fn(move |req| {
            let (state, host) = (state.clone(), host.clone());
            async move { Ok::<_, Infallible>(record(req, "https", host, &state).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    });
    Ok(Response::new(
        http_body_util::Empty::new().map_err(|never| match never {}).boxed(),
    ))
}

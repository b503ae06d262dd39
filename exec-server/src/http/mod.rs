//! The HTTP broker behind `http/request`: one process-wide reqwest client shared by every
//! connection and session (so keep-alive connections are reused across WebSocket
//! connections), the affinity cookie jar, the host policy, custom CA and proxy settings,
//! redirects followed hop by hop (each hop is checked against the policy and reads and
//! updates the jar), and failures classified by cause.

pub mod cookies;
pub mod policy;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response};
use tokio::time::Instant;
use url::Url;

use cookies::AffinityJar;
use policy::{HostPolicy, PolicyDenied, PolicyResolver};

/// Hops followed before giving up (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// Environment variables naming a PEM bundle of extra trusted roots, in order.
pub const CA_VARS: &[&str] = &["EXEC_SERVER_CA_CERTIFICATE", "CODEX_CA_CERTIFICATE", "SSL_CERT_FILE"];

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Applied when a request gives no `timeoutMs` (None = no deadline, as the reference).
    pub default_timeout: Option<Duration>,
    /// Largest body a buffered (non-streamed) response may have.
    pub max_buffered_body: u64,
    pub policy: HostPolicy,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            default_timeout: None,
            max_buffered_body: 64 << 20,
            policy: HostPolicy::default(),
        }
    }
}

/// Why a brokered request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// Refused by the host policy.
    Policy(String),
    /// The transport failed; `kind` is one of timeout, connect, dns, tls, proxy, body,
    /// redirect, request.
    Transport { kind: &'static str, message: String },
    /// A buffered body exceeded the limit.
    TooLarge { limit: u64 },
    /// The client could not be built (bad CA bundle, say).
    Setup(String),
}

impl BrokerError {
    pub fn kind(&self) -> &'static str {
        match self {
            BrokerError::Policy(_) => "policy",
            BrokerError::Transport { kind, .. } => kind,
            BrokerError::TooLarge { .. } => "body",
            BrokerError::Setup(_) => "setup",
        }
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerError::Policy(m) => write!(f, "http/request denied: {m}"),
            BrokerError::Transport { kind, message } => write!(f, "http/request failed ({kind}): {message}"),
            BrokerError::TooLarge { limit } => write!(
                f,
                "http/request response body exceeds the {limit}-byte limit for buffered responses; use streamResponse: true"
            ),
            BrokerError::Setup(m) => write!(f, "http/request client setup failed: {m}"),
        }
    }
}

/// A credential the broker adds on hops to allowed origins (and nowhere else).
#[derive(Debug, Clone)]
pub struct Injection {
    pub header: header::HeaderName,
    pub value: HeaderValue,
    pub account: Option<(header::HeaderName, HeaderValue)>,
    pub allowed: Vec<url::Origin>,
}

/// A response and what produced it.
pub struct Sent {
    pub response: Response,
    /// Bounds reading the body.
    pub deadline: Option<Instant>,
    /// The final hop carried an injected credential.
    pub injected: bool,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct BrokerRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub timeout: Option<Duration>,
    pub follow_redirects: bool,
    /// A bound credential to inject.
    pub auth: Option<Injection>,
}

/// The process-wide broker.
pub struct Broker {
    config: BrokerConfig,
    policy: Arc<HostPolicy>,
    jar: Arc<AffinityJar>,
    client: OnceLock<Result<reqwest::Client, String>>,
}

/// Removes userinfo from a URL before it appears in an error.
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

pub fn load_extra_roots() -> Result<Vec<reqwest::Certificate>, String> {
    for var in CA_VARS {
        let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
            continue;
        };
        let pem = std::fs::read(&path).map_err(|e| format!("{var}={}: {e}", path.to_string_lossy()))?;
        return reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{var}={}: {e}", path.to_string_lossy()));
    }
    Ok(Vec::new())
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        Broker {
            policy: Arc::new(config.policy.clone()),
            config,
            jar: Arc::new(AffinityJar::default()),
            client: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn jar(&self) -> &AffinityJar {
        &self.jar
    }

    /// The shared client, built on first use (loading roots costs a few milliseconds).
    fn client(&self) -> Result<&reqwest::Client, BrokerError> {
        self.client
            .get_or_init(|| {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .cookie_provider(self.jar.clone())
                    .dns_resolver(Arc::new(PolicyResolver {
                        policy: self.policy.clone(),
                    }))
                    .tls_certs_merge(load_extra_roots()?)
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(90))
                    .build()
                    .map_err(|e| describe(&e))
            })
            .as_ref()
            .map_err(|e| BrokerError::Setup(e.clone()))
    }

    /// Sends `req`, following redirects when asked.
    pub async fn send(&self, req: BrokerRequest) -> Result<Sent, BrokerError> {
        let client = self.client()?;
        let deadline = req.timeout.or(self.config.default_timeout).map(|t| Instant::now() + t);
        let BrokerRequest {
            mut method,
            mut url,
            mut headers,
            mut body,
            follow_redirects,
            auth,
            ..
        } = req;
        let mut caller_cookies = headers.contains_key(header::COOKIE);
        for hop in 0..=MAX_REDIRECTS {
            let host = url.host_str().unwrap_or_default().to_string();
            self.policy.check_host(&host).map_err(BrokerError::Policy)?;
            let mut hop_headers = headers.clone();
            // reqwest adds the jar's cookies only when the caller sent none; with caller
            // cookies the affinity cookies follow in one more `cookie` header.
            if caller_cookies && let Some(affinity) = self.jar.header_for(&url) {
                hop_headers.append(header::COOKIE, affinity);
            }
            // A bound credential goes only to its allowed origins, hop by hop.
            let injected = match &auth {
                Some(inj) if inj.allowed.contains(&url.origin()) => {
                    hop_headers.insert(inj.header.clone(), inj.value.clone());
                    if let Some((h, v)) = &inj.account {
                        hop_headers.insert(h.clone(), v.clone());
                    }
                    true
                }
                _ => false,
            };
            let mut builder = client.request(method.clone(), url.clone()).headers(hop_headers);
            if let Some(b) = &body {
                builder = builder.body(b.clone());
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timeout(&url));
                }
                builder = builder.timeout(left);
            }
            let response = builder.send().await.map_err(|e| classify(&e, &url))?;
            if !follow_redirects || !response.status().is_redirection() {
                return Ok(Sent {
                    response,
                    deadline,
                    injected,
                });
            }
            let Some(next) = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"))
            else {
                return Ok(Sent {
                    response,
                    deadline,
                    injected,
                });
            };
            if hop == MAX_REDIRECTS {
                return Err(BrokerError::Transport {
                    kind: "redirect",
                    message: format!("more than {MAX_REDIRECTS} redirects, last to {}", redact(&next)),
                });
            }
            let status = response.status().as_u16();
            drop(response);
            if matches!(status, 301..=303) && method != Method::GET && method != Method::HEAD {
                method = Method::GET;
                body = None;
                for h in [
                    header::CONTENT_TYPE,
                    header::CONTENT_LENGTH,
                    header::CONTENT_ENCODING,
                    header::TRANSFER_ENCODING,
                ] {
                    headers.remove(h);
                }
            }
            if next.origin() != url.origin() {
                for h in [
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                    header::WWW_AUTHENTICATE,
                ] {
                    headers.remove(h);
                }
                caller_cookies = false;
            }
            if !(url.scheme() == "https" && next.scheme() == "http") {
                let mut referer = url.clone();
                referer.set_fragment(None);
                let _ = referer.set_username("");
                let _ = referer.set_password(None);
                if let Ok(v) = HeaderValue::from_str(referer.as_str()) {
                    headers.insert(header::REFERER, v);
                }
            } else {
                headers.remove(header::REFERER);
            }
            url = next;
        }
        unreachable_redirects(&url)
    }
}

fn unreachable_redirects(url: &Url) -> Result<Sent, BrokerError> {
    Err(BrokerError::Transport {
        kind: "redirect",
        message: format!("too many redirects at {}", redact(url)),
    })
}

pub fn timeout(url: &Url) -> BrokerError {
    BrokerError::Transport {
        kind: "timeout",
        message: format!("deadline exceeded for {}", redact(url)),
    }
}

/// Names the cause of a reqwest failure.
pub fn classify(e: &reqwest::Error, url: &Url) -> BrokerError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut tls = false;
    while let Some(s) = cur {
        if let Some(denied) = s.downcast_ref::<PolicyDenied>() {
            return BrokerError::Policy(denied.0.clone());
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        cur = s.source();
    }
    let detail = describe(e);
    let lower = detail.to_ascii_lowercase();
    let kind = if e.is_timeout() {
        "timeout"
    } else if tls || lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        "tls"
    } else if lower.contains("dns error") || lower.contains("failed to lookup") || lower.contains("name or service") {
        "dns"
    } else if lower.contains("tunnel") || lower.contains("proxy") {
        "proxy"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    BrokerError::Transport {
        kind,
        message: format!("{detail} ({})", redact(url)),
    }
}

/// The message chain of a reqwest error, without the URL reqwest puts in its text (the
/// caller adds a redacted one).
fn describe(e: &reqwest::Error) -> String {
    let text = e.to_string();
    let mut parts = vec![match text.find(" for url (") {
        Some(i) => text[..i].to_string(),
        None => text,
    }];
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

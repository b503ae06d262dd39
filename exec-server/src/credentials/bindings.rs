//! Credential bindings, configured by the operator in a TOML file
//! (`--credentials-config PATH`): which origins a named credential may be sent to, how it
//! is written into the request, what happens to client-supplied auth headers, and where
//! its tokens come from (a managed store with a token authority, or the connected client
//! in external mode).
//!
//! ```toml
//! [[binding]]
//! name = "chatgpt"
//! origins = ["https://chatgpt.com"]
//! header = "authorization"              # default
//! template = "Bearer {token}"           # default
//! account_header = "chatgpt-account-id" # optional: carries the account id
//! client_headers = "strip"              # or "reject"
//! mode = "managed"                      # or "external"
//! store = "/var/lib/exec-server/auth.json"
//! authority_url = "https://auth.openai.com/oauth/token"
//! client_id = "app_example"
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::{Origin, Url};

use super::authority::HttpAuthority;
use super::external::ExternalTokens;
use super::manager::{CredentialManager, ManagerConfig};
use super::store::FileStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientHeaders {
    /// Remove client-supplied `Authorization`, `Proxy-Authorization` and `Cookie`.
    #[default]
    Strip,
    /// Refuse a bound request that carries them.
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Managed,
    External,
}

fn default_header() -> String {
    "authorization".into()
}

fn default_template() -> String {
    "Bearer {token}".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingConfig {
    name: String,
    origins: Vec<String>,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_template")]
    template: String,
    #[serde(default)]
    account_header: Option<String>,
    #[serde(default)]
    client_headers: ClientHeaders,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    store: Option<PathBuf>,
    #[serde(default)]
    authority_url: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    authority_timeout_ms: Option<u64>,
    #[serde(default)]
    lock_timeout_ms: Option<u64>,
    #[serde(default)]
    proactive_skew_secs: Option<u64>,
    /// External mode: accounts (workspaces) a client may hand us tokens for.
    #[serde(default)]
    allowed_accounts: Vec<String>,
    #[serde(default)]
    external_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    binding: Vec<BindingConfig>,
}

/// Where a binding's tokens come from.
pub enum Source {
    Managed(Arc<CredentialManager>),
    External(Arc<ExternalTokens>),
}

pub struct Binding {
    pub name: String,
    origins: Vec<Origin>,
    pub header: HeaderName,
    template: String,
    pub account_header: Option<HeaderName>,
    pub client_headers: ClientHeaders,
    pub source: Source,
    /// The store file, hidden from sandboxed processes.
    pub store_path: Option<PathBuf>,
}

impl Binding {
    /// Whether the credential may be sent to `url`.
    pub fn allows(&self, url: &Url) -> bool {
        self.origins.contains(&url.origin())
    }

    /// What the broker adds to requests to allowed origins for `cred`.
    pub fn injection(&self, cred: &super::manager::RequestCredential) -> Option<crate::http::Injection> {
        let account = match (&self.account_header, &cred.account_id) {
            (Some(h), Some(a)) => Some((h.clone(), HeaderValue::from_str(a).ok()?)),
            _ => None,
        };
        Some(crate::http::Injection {
            header: self.header.clone(),
            value: self.header_value(cred.access_token.expose())?,
            account,
            allowed: self.origins.clone(),
        })
    }

    /// The header value for `token`.
    pub fn header_value(&self, token: &str) -> Option<HeaderValue> {
        let mut v = HeaderValue::from_str(&self.template.replace("{token}", token)).ok()?;
        v.set_sensitive(true);
        Some(v)
    }
}

/// Every binding of the server, by name.
#[derive(Default)]
pub struct Bindings(HashMap<String, Arc<Binding>>);

impl std::fmt::Debug for Bindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Bindings {
    pub fn get(&self, name: &str) -> Option<Arc<Binding>> {
        self.0.get(name).cloned()
    }

    /// Store files of every managed binding (hidden from sandboxed processes).
    pub fn store_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .0
            .values()
            .filter_map(|b| b.store_path.as_ref()?.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    pub fn load(path: &Path) -> Result<Bindings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = HashMap::new();
        for b in file.binding {
            let name = b.name.clone();
            let binding = build(b).map_err(|e| format!("{}: binding `{name}`: {e}", path.display()))?;
            if out.insert(name.clone(), Arc::new(binding)).is_some() {
                return Err(format!("{}: binding `{name}` is defined twice", path.display()));
            }
        }
        Ok(Bindings(out))
    }
}

fn build(b: BindingConfig) -> Result<Binding, String> {
    let origins = b
        .origins
        .iter()
        .map(|o| {
            let url = Url::parse(o).map_err(|e| format!("origin `{o}`: {e}"))?;
            match url.scheme() {
                "http" | "https" => Ok(url.origin()),
                other => Err(format!("origin `{o}`: unsupported scheme {other}")),
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    if origins.is_empty() {
        return Err("at least one origin is required".into());
    }
    if !b.template.contains("{token}") {
        return Err("template must contain {token}".into());
    }
    let header = HeaderName::from_bytes(b.header.as_bytes()).map_err(|e| format!("header: {e}"))?;
    let account_header = b
        .account_header
        .as_deref()
        .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("account_header: {e}")))
        .transpose()?;
    let (source, store_path) = match b.mode {
        Mode::Managed => {
            let store = b.store.ok_or("managed mode needs `store`")?;
            if !store.is_absolute() {
                return Err(format!("store `{}` must be an absolute path", store.display()));
            }
            let url = b.authority_url.as_deref().ok_or("managed mode needs `authority_url`")?;
            let url = Url::parse(url).map_err(|e| format!("authority_url: {e}"))?;
            let client_id = b.client_id.ok_or("managed mode needs `client_id`")?;
            let mut config = ManagerConfig::default();
            if let Some(ms) = b.authority_timeout_ms {
                config.authority_timeout = Duration::from_millis(ms);
            }
            if let Some(ms) = b.lock_timeout_ms {
                config.lock_budget = Duration::from_millis(ms);
            }
            if let Some(s) = b.proactive_skew_secs {
                config.proactive_skew = Duration::from_secs(s);
            }
            let authority = HttpAuthority::new(url, client_id, config.authority_timeout)?;
            let manager =
                CredentialManager::new(FileStore::new(&store), authority, config).map_err(|e| e.to_string())?;
            (Source::Managed(manager), Some(store))
        }
        Mode::External => {
            let timeout = Duration::from_millis(b.external_timeout_ms.unwrap_or(10_000));
            (
                Source::External(Arc::new(ExternalTokens::new(b.allowed_accounts, timeout))),
                None,
            )
        }
    };
    Ok(Binding {
        name: b.name,
        origins,
        header,
        template: b.template,
        account_header,
        client_headers: b.client_headers,
        source,
        store_path,
    })
}

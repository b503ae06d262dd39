//! The token authority: a JSON refresh request on a client of its own (no cookie store,
//! no redirects), and the classification of failures into permanent and transient ones
//! with the messages users know from Codex.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::secret::Secret;

/// Why a refresh will never succeed with the stored refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentReason {
    Expired,
    Exhausted,
    Revoked,
    Rejected,
    AccountChanged,
    LoggedOut,
}

impl PermanentReason {
    pub fn message(self) -> &'static str {
        match self {
            PermanentReason::Expired => {
                "Your access token could not be refreshed because your refresh token has expired. Please log out and sign in again."
            }
            PermanentReason::Exhausted => {
                "Your access token could not be refreshed because your refresh token was already used. Please log out and sign in again."
            }
            PermanentReason::Revoked => {
                "Your access token could not be refreshed because your refresh token was revoked. Please log out and sign in again."
            }
            PermanentReason::Rejected => "Your access token could not be refreshed. Please log out and sign in again.",
            PermanentReason::AccountChanged | PermanentReason::LoggedOut => {
                "Your access token could not be refreshed because you have since logged out or signed in to another account. Please sign in again."
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshFailure {
    #[error("{}", .0.message())]
    Permanent(PermanentReason),
    #[error("{0}")]
    Transient(String),
}

impl RefreshFailure {
    pub fn is_permanent(&self) -> bool {
        matches!(self, RefreshFailure::Permanent(_))
    }
}

/// Fields of a successful refresh; each may be omitted.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RefreshResponse {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

/// The failure a refresh answer describes.
pub fn classify(status: u16, body: &[u8]) -> RefreshFailure {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .or_else(|| v.get("error").and_then(Value::as_str))
        .or_else(|| v.get("code").and_then(Value::as_str))
        .map(str::to_ascii_lowercase);
    let reason = match code.as_deref() {
        Some("refresh_token_expired") => Some(PermanentReason::Expired),
        Some("refresh_token_reused") => Some(PermanentReason::Exhausted),
        Some("refresh_token_invalidated") => Some(PermanentReason::Revoked),
        _ if status == 401 => Some(PermanentReason::Rejected),
        _ => None,
    };
    if let Some(reason) = reason {
        return RefreshFailure::Permanent(reason);
    }
    let message = v
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| v.get("error_description").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    RefreshFailure::Transient(format!("Failed to refresh token: {status}: {message}"))
}

/// The HTTP token authority.
pub struct HttpAuthority {
    url: Url,
    client_id: String,
    client: reqwest::Client,
}

impl HttpAuthority {
    /// An authority trusting the system roots plus the server's CA bundle variables.
    pub fn new(url: Url, client_id: impl Into<String>, timeout: Duration) -> Result<HttpAuthority, String> {
        Self::with_roots(url, client_id, timeout, crate::http::load_extra_roots()?)
    }

    /// An authority trusting the system roots plus `roots`.
    pub fn with_roots(
        url: Url,
        client_id: impl Into<String>,
        timeout: Duration,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<HttpAuthority, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .tls_certs_merge(roots)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpAuthority {
            url,
            client_id: client_id.into(),
            client,
        })
    }

    /// Redeems `refresh_token`.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<RefreshResponse, RefreshFailure> {
        let body = json!({"client_id": self.client_id, "grant_type": "refresh_token", "refresh_token": refresh_token.expose()});
        let response = self
            .client
            .post(self.url.clone())
            .json_body(&body)
            .send()
            .await
            .map_err(|e| RefreshFailure::Transient(format!("token refresh failed: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RefreshFailure::Transient(format!("token refresh failed: {}", e.without_url())))?;
        if status != 200 {
            return Err(classify(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| RefreshFailure::Transient(format!("token refresh answer is not valid JSON: {e}")))
    }
}

/// JSON bodies without reqwest's `json` feature.
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_08_to_12_classification() {
        assert_eq!(
            classify(401, br#"{"error":{"code":"refresh_token_reused","message":"used"}}"#),
            RefreshFailure::Permanent(PermanentReason::Exhausted)
        );
        assert!(
            classify(401, br#"{"error":{"code":"refresh_token_reused"}}"#)
                .to_string()
                .contains("already used")
        );
        assert_eq!(
            classify(400, br#"{"error":"refresh_token_expired"}"#),
            RefreshFailure::Permanent(PermanentReason::Expired)
        );
        assert_eq!(
            classify(400, br#"{"code":"REFRESH_TOKEN_INVALIDATED"}"#),
            RefreshFailure::Permanent(PermanentReason::Revoked)
        );
        assert_eq!(
            classify(401, br#"{"error":{"code":"mystery"}}"#),
            RefreshFailure::Permanent(PermanentReason::Rejected)
        );
        assert_eq!(
            classify(401, b"").to_string(),
            "Your access token could not be refreshed. Please log out and sign in again."
        );
        for (status, body) in [
            (500, &br#"{"error":{"message":"boom"}}"#[..]),
            (429, b"slow down"),
            (400, br#"{"error":"weird"}"#),
        ] {
            let f = classify(status, body);
            assert!(!f.is_permanent(), "{status}");
            assert!(
                f.to_string()
                    .starts_with(&format!("Failed to refresh token: {status}: ")),
                "{f}"
            );
        }
        assert!(
            classify(500, br#"{"error":{"message":"boom"}}"#)
                .to_string()
                .ends_with("boom")
        );
    }
}

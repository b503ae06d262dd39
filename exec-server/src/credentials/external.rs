//! External-token mode: the connected client owns the tokens. On a 401 (or before the
//! first bound request) the server asks it with the server-to-client request
//! `account/chatgptAuthTokens/refresh {reason: "unauthorized", previousAccountId}` and
//! waits a bounded time. Tokens stay in memory only; failures are transient (never
//! poisoned) and an account outside the allowed list is refused.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::manager::RequestCredential;
use super::secret::Secret;
use crate::connection::Connection;
use crate::session::lock;

pub const REFRESH_METHOD: &str = "account/chatgptAuthTokens/refresh";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: String,
    chatgpt_account_id: Option<String>,
}

pub struct ExternalTokens {
    current: Mutex<Option<RequestCredential>>,
    allowed_accounts: Vec<String>,
    timeout: Duration,
}

impl ExternalTokens {
    pub fn new(allowed_accounts: Vec<String>, timeout: Duration) -> ExternalTokens {
        ExternalTokens {
            current: Mutex::new(None),
            allowed_accounts,
            timeout,
        }
    }

    pub fn current(&self) -> Option<RequestCredential> {
        lock(&self.current).clone()
    }

    /// Asks the client for tokens; installs them when acceptable.
    pub async fn refresh(
        &self,
        conn: &Connection,
        previous: Option<&RequestCredential>,
    ) -> Result<RequestCredential, String> {
        let params =
            json!({"reason": "unauthorized", "previousAccountId": previous.and_then(|p| p.account_id.clone())});
        let value = conn
            .request_client(REFRESH_METHOD, params, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let answer: Answer =
            serde_json::from_value(value).map_err(|e| format!("auth refresh answer is invalid: {e}"))?;
        if !self.allowed_accounts.is_empty()
            && !answer
                .chatgpt_account_id
                .as_ref()
                .is_some_and(|a| self.allowed_accounts.contains(a))
        {
            return Err(format!(
                "auth refresh answered for account {:?}, which is not in the allowed list",
                answer.chatgpt_account_id.unwrap_or_default()
            ));
        }
        let token = Secret::new(answer.access_token);
        let cred = RequestCredential {
            fingerprint: token.fingerprint(),
            access_token: token,
            account_id: answer.chatgpt_account_id,
        };
        *lock(&self.current) = Some(cred.clone());
        Ok(cred)
    }
}

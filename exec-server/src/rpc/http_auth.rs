//! Bound `http/request`s: the binding's current credential is injected (only on hops to
//! its allowed origins), and a 401 for the credential that was sent gets one recovery
//! (a joined refresh, or the external client's new tokens) and one replay, then at most
//! one adopt-only check (see `credentials::budget`). A recovery that outlives the request's deadline is not replayed:
//! the 401 goes back with `retryRequired`.

use std::sync::Arc;
use std::time::Duration;

use exec_protocol::RpcError;
use serde_json::json;
use tokio::time::Instant;

use super::http::broker_error;
use crate::connection::Connection;
use crate::credentials::bindings::{Binding, Source};
use crate::credentials::budget::{Failure, RecoveryBudget, Step};
use crate::credentials::{CredentialError, RequestCredential};
use crate::http::{Broker, BrokerRequest, Sent};

/// Recovery waits at most this long when the request has no deadline of its own.
const DEFAULT_RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

fn credential_error(binding: &Binding, e: impl std::fmt::Display) -> RpcError {
    RpcError::internal(format!("http/request credential `{}`: {e}", binding.name))
        .with_data(json!({"kind": "credential"}))
}

/// The binding's credential now (asking the client first in external mode).
async fn current(conn: &Connection, binding: &Binding) -> Result<RequestCredential, RpcError> {
    match &binding.source {
        Source::Managed(m) => m.current().map_err(|e| credential_error(binding, e)),
        Source::External(ext) => match ext.current() {
            Some(c) => Ok(c),
            None => ext.refresh(conn, None).await.map_err(|e| credential_error(binding, e)),
        },
    }
}

/// One recovery step after a 401 for `sent`.
async fn recover(
    conn: &Connection,
    binding: &Binding,
    sent: &RequestCredential,
    deadline: Instant,
) -> Result<RequestCredential, CredentialError> {
    match &binding.source {
        Source::Managed(m) => {
            m.recover(sent, deadline).await?;
            m.current()
        }
        Source::External(ext) => ext
            .refresh(conn, Some(sent))
            .await
            .map_err(|e| CredentialError::Refresh(crate::credentials::authority::RefreshFailure::Transient(e))),
    }
}

/// Sends a bound request; the flag is `retryRequired`.
pub async fn send_bound(
    conn: &Arc<Connection>,
    broker: &Broker,
    binding: &Binding,
    req: BrokerRequest,
) -> Result<(Sent, bool), RpcError> {
    let deadline = Instant::now()
        + req
            .timeout
            .or(broker.config().default_timeout)
            .unwrap_or(DEFAULT_RECOVERY_DEADLINE);
    let mut cred = current(conn, binding).await?;
    let mut budget = RecoveryBudget::default();
    loop {
        let mut attempt = req.clone();
        attempt.auth = binding.injection(&cred);
        let sent = broker.send(attempt).await.map_err(|e| broker_error(&e))?;
        if sent.response.status().as_u16() != 401 || !sent.injected {
            return Ok((sent, false));
        }
        tracing::info!(binding = %binding.name, token = %cred.fingerprint, "bound request got 401");
        match budget.next(Failure::Unauthorized) {
            Step::RecoverCredential => match recover(conn, binding, &cred, deadline).await {
                Ok(next) => {
                    cred = next;
                    continue;
                }
                Err(CredentialError::DeadlineExceeded) => return Ok((sent, true)),
                Err(e) => return Err(credential_error(binding, e)),
            },
            Step::AdoptOnly => {
                if let Source::Managed(m) = &binding.source
                    && m.adopt_only(&cred).await.is_ok()
                {
                    cred = m.current().map_err(|e| credential_error(binding, e))?;
                    continue;
                }
            }
            Step::RebuildSession | Step::GiveUp => {}
        }
        return Ok((sent, false));
    }
}

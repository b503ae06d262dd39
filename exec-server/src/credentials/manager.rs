//! The credential manager of one store. It hands out request-only credentials, runs at
//! most one refresh transaction at a time in a task of its own (callers join it; a
//! caller's deadline or cancellation never interrupts it), adopts tokens another process
//! stored, refuses to refresh across an account change, poisons a permanent failure for
//! the refresh token that failed, and fails closed when a refreshed token could not be
//! persisted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::authority::{HttpAuthority, PermanentReason, RefreshFailure};
use super::claims;
use super::lock;
use super::secret::{Fingerprint, Secret};
use super::store::{FileStore, StoredAuth, rfc3339_now};
use crate::session::lock as guard;

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Refresh in the background this long before the access token expires.
    pub proactive_skew: Duration,
    pub lock_budget: Duration,
    pub authority_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            proactive_skew: Duration::from_secs(300),
            lock_budget: Duration::from_secs(60),
            authority_timeout: Duration::from_secs(45),
        }
    }
}

/// What a request may carry: the access token only (no refresh token, no expiry).
#[derive(Debug, Clone)]
pub struct RequestCredential {
    pub access_token: Secret,
    pub account_id: Option<String>,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A newer token was already there (installed by us or another process).
    Adopted,
    /// The authority issued a new token.
    Refreshed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Refresh(RefreshFailure),
    #[error("not signed in: the credential store holds no tokens")]
    NotSignedIn,
    #[error("the credential refresh did not finish before the request's deadline")]
    DeadlineExceeded,
    #[error("authorization required: the resource rejected the refreshed credential")]
    AuthorizationRequired,
    #[error("credential store: {0}")]
    Store(String),
    #[error("{0}")]
    Lock(String),
    #[error("refusing to refresh: the previous refresh succeeded but its credentials were not persisted")]
    Unpersisted,
}

type Outcome = Result<Recovery, CredentialError>;

struct State {
    auth: Option<StoredAuth>,
    /// A permanent failure, for the refresh token (fingerprint) that caused it.
    poison: Option<(Fingerprint, RefreshFailure)>,
    /// Set when a refreshed token could not be saved: the store generation then on disk.
    unpersisted_from: Option<u64>,
    /// Bumped on every install, to tell whether memory changed during a transaction.
    epoch: u64,
    /// When a background refresh last failed (no new one for `BACKGROUND_BACKOFF`).
    background_failed: Option<std::time::Instant>,
}

/// After a failed background refresh, how long near-expiry requests wait before the next.
const BACKGROUND_BACKOFF: Duration = Duration::from_secs(30);

pub struct CredentialManager {
    store: FileStore,
    authority: HttpAuthority,
    config: ManagerConfig,
    state: Mutex<State>,
    inflight: Mutex<Option<watch::Receiver<Option<Outcome>>>>,
    #[cfg(test)]
    pub(crate) fail_next_save: std::sync::atomic::AtomicBool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn expired(token: &str, skew: Duration) -> bool {
    claims::parse(token)
        .ok()
        .and_then(|c| c.exp)
        .is_some_and(|exp| now_secs() + skew.as_secs() >= exp)
}

impl CredentialManager {
    pub fn new(
        store: FileStore,
        authority: HttpAuthority,
        config: ManagerConfig,
    ) -> Result<Arc<Self>, CredentialError> {
        let auth = store.load().map_err(|e| CredentialError::Store(e.to_string()))?;
        Ok(Arc::new(CredentialManager {
            store,
            authority,
            config,
            state: Mutex::new(State {
                auth,
                poison: None,
                unpersisted_from: None,
                epoch: 0,
                background_failed: None,
            }),
            inflight: Mutex::new(None),
            #[cfg(test)]
            fail_next_save: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    fn credential_of(auth: &StoredAuth) -> Option<RequestCredential> {
        let tokens = auth.tokens.as_ref()?;
        let access_token = Secret::new(tokens.access_token.clone());
        Some(RequestCredential {
            fingerprint: access_token.fingerprint(),
            access_token,
            account_id: tokens.account_id.clone(),
        })
    }

    /// The current credential. With nothing in memory it rereads the store (a login made
    /// after start). Near expiry it starts a background refresh (never for a poisoned
    /// token, and not again within `BACKGROUND_BACKOFF` of a failed one) and still answers
    /// with the current token.
    pub fn current(self: &Arc<Self>) -> Result<RequestCredential, CredentialError> {
        if guard(&self.state).auth.is_none() {
            self.reload()?;
        }
        let (cred, stale) = {
            let st = guard(&self.state);
            let auth = st.auth.as_ref().ok_or(CredentialError::NotSignedIn)?;
            let cred = Self::credential_of(auth).ok_or(CredentialError::NotSignedIn)?;
            let backing_off = st.background_failed.is_some_and(|t| t.elapsed() < BACKGROUND_BACKOFF);
            let stale =
                expired(cred.access_token.expose(), self.config.proactive_skew) && st.poison.is_none() && !backing_off;
            (cred, stale)
        };
        if stale {
            info!(token = %cred.fingerprint, "access token near expiry; refreshing in the background");
            let mut rx = self.transaction(None);
            let me = self.clone();
            tokio::spawn(async move {
                let failed = loop {
                    if let Some(outcome) = rx.borrow_and_update().clone() {
                        break outcome.is_err();
                    }
                    if rx.changed().await.is_err() {
                        break true;
                    }
                };
                guard(&me.state).background_failed = failed.then(std::time::Instant::now);
            });
        }
        Ok(cred)
    }

    /// Recovery after a 401 for `rejected`: adopt a newer token at once, else join or
    /// start one refresh, waiting no longer than `deadline`.
    pub async fn recover(self: &Arc<Self>, rejected: &RequestCredential, deadline: Instant) -> Outcome {
        if self.current()?.fingerprint != rejected.fingerprint {
            return Ok(Recovery::Adopted);
        }
        self.wait(self.transaction(Some(rejected.fingerprint)), deadline).await
    }

    /// A refresh, as a caller with `deadline` sees it.
    pub async fn refresh(self: &Arc<Self>, deadline: Instant) -> Outcome {
        self.wait(self.transaction(None), deadline).await
    }

    /// After a second 401: adopt a different, unexpired token from the store, else fail.
    pub async fn adopt_only(self: &Arc<Self>, rejected: &RequestCredential) -> Outcome {
        let _lock = lock::acquire(&self.store.lock_path(), self.config.lock_budget)
            .await
            .map_err(|e| CredentialError::Lock(e.to_string()))?;
        let stored = self.store.load().map_err(|e| CredentialError::Store(e.to_string()))?;
        let Some(stored) = stored else {
            return Err(CredentialError::AuthorizationRequired);
        };
        let same_account = self.account_matches(&stored);
        match Self::credential_of(&stored) {
            Some(c)
                if same_account
                    && c.fingerprint != rejected.fingerprint
                    && !expired(c.access_token.expose(), Duration::ZERO) =>
            {
                self.install(stored);
                Ok(Recovery::Adopted)
            }
            _ => Err(CredentialError::AuthorizationRequired),
        }
    }

    /// Rereads the store (after an external login, say); a change clears the poison.
    pub fn reload(&self) -> Result<(), CredentialError> {
        let stored = self.store.load().map_err(|e| CredentialError::Store(e.to_string()))?;
        match stored {
            Some(s) => self.install(s),
            None => {
                let mut st = guard(&self.state);
                st.auth = None;
                st.poison = None;
                st.epoch += 1;
            }
        }
        Ok(())
    }

    fn install(&self, auth: StoredAuth) {
        let mut st = guard(&self.state);
        if st.auth.as_ref() != Some(&auth) {
            st.poison = None;
            st.epoch += 1;
        }
        if st.unpersisted_from.is_some_and(|g| g != auth.generation) {
            st.unpersisted_from = None;
        }
        st.auth = Some(auth);
    }

    fn account_matches(&self, stored: &StoredAuth) -> bool {
        let st = guard(&self.state);
        let mine = st
            .auth
            .as_ref()
            .and_then(|a| a.tokens.as_ref())
            .and_then(|t| t.account_id.as_ref());
        let theirs = stored.tokens.as_ref().and_then(|t| t.account_id.as_ref());
        matches!((mine, theirs), (Some(a), Some(b)) if a == b)
    }

    async fn wait(&self, mut rx: watch::Receiver<Option<Outcome>>, deadline: Instant) -> Outcome {
        let waited = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(outcome) = rx.borrow_and_update().clone() {
                    return outcome;
                }
                if rx.changed().await.is_err() {
                    return Err(CredentialError::Store("refresh task ended without an outcome".into()));
                }
            }
        })
        .await;
        waited.unwrap_or(Err(CredentialError::DeadlineExceeded))
    }

    /// Joins the transaction in flight or starts one in its own task.
    fn transaction(self: &Arc<Self>, rejected: Option<Fingerprint>) -> watch::Receiver<Option<Outcome>> {
        let mut inflight = guard(&self.inflight);
        if let Some(rx) = inflight.as_ref()
            && rx.borrow().is_none()
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        *inflight = Some(rx.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let outcome = me.run(rejected).await;
            if let Err(e) = &outcome {
                warn!(error = %e, "credential refresh failed");
            }
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// The transaction: lock, reread, check the account, adopt, check poison, refresh,
    /// persist, install.
    async fn run(&self, rejected: Option<Fingerprint>) -> Outcome {
        let (epoch, snapshot) = {
            let st = guard(&self.state);
            (st.epoch, st.auth.as_ref().and_then(Self::credential_of))
        };
        let _lock = lock::acquire(&self.store.lock_path(), self.config.lock_budget)
            .await
            .map_err(|e| CredentialError::Lock(e.to_string()))?;
        let Some(stored) = self.store.load().map_err(|e| CredentialError::Store(e.to_string()))? else {
            let mut st = guard(&self.state);
            st.auth = None;
            st.epoch += 1;
            return Err(CredentialError::Refresh(RefreshFailure::Permanent(
                PermanentReason::LoggedOut,
            )));
        };
        if !self.account_matches(&stored) {
            return Err(CredentialError::Refresh(RefreshFailure::Permanent(
                PermanentReason::AccountChanged,
            )));
        }
        // After a refresh that could not be persisted, the store still holding that
        // generation means nothing changed: neither adopt its spent tokens nor refresh.
        if guard(&self.state).unpersisted_from == Some(stored.generation) {
            return Err(CredentialError::Unpersisted);
        }
        let disk = Self::credential_of(&stored).ok_or(CredentialError::NotSignedIn)?;
        let compare = rejected.or(snapshot.as_ref().map(|s| s.fingerprint));
        if Some(disk.fingerprint) != compare && !expired(disk.access_token.expose(), Duration::ZERO) {
            info!(token = %disk.fingerprint, "adopting the token another writer stored");
            self.install(stored);
            return Ok(Recovery::Adopted);
        }
        let Some(refresh_token) = stored
            .tokens
            .as_ref()
            .and_then(|t| t.refresh_token.clone())
            .map(Secret::new)
        else {
            return Err(CredentialError::AuthorizationRequired);
        };
        let rt_fp = refresh_token.fingerprint();
        {
            let st = guard(&self.state);
            if let Some((fp, failure)) = &st.poison
                && *fp == rt_fp
            {
                return Err(CredentialError::Refresh(failure.clone()));
            }
        }
        info!(refresh = %rt_fp, "calling the token authority");
        let answer = tokio::time::timeout(self.config.authority_timeout, self.authority.refresh(&refresh_token)).await;
        let response = match answer {
            Err(_) => {
                return Err(CredentialError::Refresh(RefreshFailure::Transient(
                    "token refresh timed out".into(),
                )));
            }
            Ok(Err(failure)) => {
                if failure.is_permanent() {
                    let mut st = guard(&self.state);
                    // A login installed meanwhile is never poisoned.
                    if st.epoch == epoch {
                        st.poison = Some((rt_fp, failure.clone()));
                    }
                }
                return Err(CredentialError::Refresh(failure));
            }
            Ok(Ok(r)) => r,
        };
        let mut next = stored.clone();
        if let Some(tokens) = next.tokens.as_mut() {
            if let Some(a) = response.access_token {
                tokens.access_token = a;
            }
            if let Some(r) = response.refresh_token {
                tokens.refresh_token = Some(r);
            }
            if let Some(i) = response.id_token {
                tokens.id_token = Some(i);
            }
        }
        next.last_refresh = Some(rfc3339_now());
        next.generation = stored.generation + 1;
        if let Err(e) = self.save(&next) {
            // The old refresh token is spent: keep the new one in memory, and refuse to
            // refresh again while the store still holds the old generation.
            let mut st = guard(&self.state);
            st.auth = Some(next);
            st.unpersisted_from = Some(stored.generation);
            st.epoch += 1;
            return Err(CredentialError::Store(e));
        }
        self.install(next);
        Ok(Recovery::Refreshed)
    }

    fn save(&self, auth: &StoredAuth) -> Result<(), String> {
        #[cfg(test)]
        if self.fail_next_save.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err("simulated write failure".into());
        }
        self.store.save(auth).map_err(|e| e.to_string())
    }
}

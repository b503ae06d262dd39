//! Server-owned credentials for brokered calls: secrets that never reach logs (only
//! fingerprints do), JWT claims, an atomic file store with a generation counter, a
//! cross-process lock, the token authority client, and the credential manager (one
//! serialized refresh transaction in its own task, poisoning, guarded reload, one-shot
//! 401 recovery with rejected-token attribution, deadline-bounded waits).

pub mod authority;
pub mod bindings;
pub mod budget;
pub mod claims;
pub mod cli;
pub mod external;
pub mod lock;
pub mod manager;
pub mod secret;
pub mod store;

#[cfg(test)]
mod tests;

pub use manager::{CredentialError, CredentialManager, ManagerConfig, Recovery, RequestCredential};
pub use secret::{Fingerprint, Secret};

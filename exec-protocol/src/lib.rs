//! Wire types of the exec-server protocol: the Codex exec-server JSON-RPC dialect (no
//! `jsonrpc` member, integer or string ids), error codes, method names, and the params,
//! results and notifications of every method. Pure serde: no I/O, no async runtime.

pub mod bytes;
pub mod envelope;
pub mod environment;
pub mod error;
pub mod fs;
pub mod http;
pub mod methods;
pub mod path_uri;
pub mod process;

pub use bytes::Base64Bytes;
pub use envelope::{Incoming, Notification, Request, RequestId};
pub use error::{ErrorCode, RpcError};
pub use path_uri::PathUri;

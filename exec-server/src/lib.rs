//! exec-server: a WebSocket JSON-RPC remote command runner that speaks the Codex
//! exec-server protocol. Layers, from the socket inwards: `transport` (listener, HTTP
//! routes, WebSocket auth, stdio), `connection` (handshake state, dispatch, outbound
//! queue, cancellation), `rpc` (one handler module per method family), and the engines
//! they drive: `session`, `process`, `fs`. `client` is a Rust client of the protocol and
//! `cli` the command-line front end (serve, run, bench).

pub mod bench;
pub mod cli;
pub mod cli_run;
pub mod client;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod environment;
pub mod fs;
pub mod http;
pub mod process;
pub mod rpc;
pub mod sandbox_exec;
pub mod server;
pub mod session;
pub mod transport;

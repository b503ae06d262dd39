//! Transports: the TCP listener that serves health checks and the WebSocket upgrade,
//! WebSocket auth, the WebSocket message loop, and newline-delimited JSON over stdio.

pub mod auth;
pub mod http;
pub mod stdio;
pub mod websocket;

use std::net::SocketAddr;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Ws(SocketAddr),
    Stdio,
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "stdio" || s == "stdio://" {
            return Ok(ListenAddr::Stdio);
        }
        let rest = s
            .strip_prefix("ws://")
            .ok_or_else(|| format!("`{s}`: expected ws://IP:PORT or stdio"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let rest = rest.replace("localhost", "127.0.0.1");
        rest.parse()
            .map(ListenAddr::Ws)
            .map_err(|e| format!("`{s}`: {e} (expected ws://IP:PORT)"))
    }
}

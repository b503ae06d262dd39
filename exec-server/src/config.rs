//! Server settings shared by every connection.

use std::time::Duration;

use crate::http::BrokerConfig;
use crate::transport::auth::WsAuth;

/// Runtime settings, built from the command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a session survives without a connection (0 = kill on disconnect).
    pub detach_grace: Duration,
    /// How long an exited process stays readable after `process/closed`.
    pub process_retention: Duration,
    /// Output retained per process for `process/read`.
    pub output_retention_bytes: usize,
    /// Most chunks retained per process.
    pub output_retention_chunks: usize,
    /// Requests handled at once per connection; 1 = strictly in order.
    pub concurrent_requests: usize,
    /// Messages queued per connection before producers wait.
    pub outbound_queue: usize,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    /// Largest file `fs/readFile`/`fs/writeFile` handle whole.
    pub fs_max_file_bytes: u64,
    pub ws_auth: WsAuth,
    /// Interval of server pings on idle WebSocket connections.
    pub ping_interval: Duration,
    /// `http/request` settings.
    pub http: BrokerConfig,
    /// Credential bindings for `http/request`.
    pub bindings: std::sync::Arc<crate::credentials::bindings::Bindings>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            detach_grace: Duration::from_secs(30),
            process_retention: Duration::from_secs(60),
            output_retention_bytes: 1 << 20,
            output_retention_chunks: 50_000,
            concurrent_requests: 64,
            outbound_queue: 256,
            max_message_bytes: 64 << 20,
            max_frame_bytes: 16 << 20,
            fs_max_file_bytes: 64 << 20,
            ws_auth: WsAuth::None,
            ping_interval: Duration::from_secs(30),
            http: BrokerConfig::default(),
            bindings: Default::default(),
        }
    }
}

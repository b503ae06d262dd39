//! Params, results and notifications of `http/request`.

use serde::{Deserialize, Serialize};

use crate::bytes::Base64Bytes;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderParam {
    pub name: String,
    pub value: String,
    /// The executor appends the value of this environment variable to `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_env_var: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectPolicy {
    #[default]
    Follow,
    Stop,
}

fn no_headers() -> Vec<HeaderParam> {
    Vec::new()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestParams {
    pub method: String,
    pub url: String,
    pub request_id: String,
    #[serde(default = "no_headers")]
    pub headers: Vec<HeaderParam>,
    #[serde(default)]
    pub body_base64: Option<Base64Bytes>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub redirect_policy: RedirectPolicy,
    #[serde(default)]
    pub stream_response: bool,
    /// A server-side credential binding to apply (extension).
    #[serde(default)]
    pub credential: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHeader {
    pub name: String,
    /// The value; for a value that is not UTF-8, its lossy text.
    pub value: String,
    /// The exact bytes, only for values that are not UTF-8 (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestResult {
    pub status: u16,
    pub headers: Vec<ResponseHeader>,
    pub body_base64: Base64Bytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyDeltaNotification {
    pub request_id: String,
    pub seq: u64,
    pub delta_base64: Base64Bytes,
    pub done: bool,
    pub error: Option<String>,
}

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
    /// A bound request got 401, the credential was refreshed (or is being refreshed) but
    /// not replayed: sending it again will carry the new credential (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_required: Option<bool>,
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

/// Encodes an `http/request/bodyDelta` notification directly, writing the base64 text
/// straight into the message (see `process::encode_output_notification`).
pub fn encode_body_delta(request_id: &str, seq: u64, data: &[u8], done: bool, error: Option<&str>) -> String {
    let id = serde_json::to_string(request_id).unwrap_or_else(|_| "\"\"".into());
    let error = serde_json::to_string(&error).unwrap_or_else(|_| "null".into());
    let mut s = String::with_capacity(112 + id.len() + error.len() + data.len().div_ceil(3) * 4);
    s.push_str(r#"{"method":"http/request/bodyDelta","params":{"requestId":"#);
    s.push_str(&id);
    s.push_str(r#","seq":"#);
    s.push_str(&seq.to_string());
    s.push_str(r#","deltaBase64":""#);
    crate::Base64Bytes::encode_into(data, &mut s);
    s.push_str(r#"","done":"#);
    s.push_str(if done { "true" } else { "false" });
    s.push_str(r#","error":"#);
    s.push_str(&error);
    s.push_str("}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_encoded_delta_matches_serde() {
        let fast = encode_body_delta("r\"1", 3, b"data", true, Some("bad \"thing\""));
        let slow = serde_json::json!({"method": "http/request/bodyDelta", "params": {
            "requestId": "r\"1", "seq": 3, "deltaBase64": crate::Base64Bytes::encode(b"data"), "done": true, "error": "bad \"thing\""}});
        assert_eq!(serde_json::from_str::<serde_json::Value>(&fast).unwrap(), slow);
        let none = encode_body_delta("r", 1, b"", false, None);
        assert!(
            none.ends_with(r#""deltaBase64":"","done":false,"error":null}}"#),
            "{none}"
        );
    }
}

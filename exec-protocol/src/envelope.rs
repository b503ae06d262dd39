//! The message envelope: decoding incoming messages and encoding outgoing ones.
//!
//! The dialect has no `jsonrpc` member (an incoming one is ignored), ids are an i64 or a
//! string, a message with `method` and `id` is a request, with `method` alone a
//! notification, and with `id` alone a response or an error.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RpcError;

/// Most JSON values one message may contain (the reference's decoder budget).
pub const MAX_JSON_VALUES: usize = 262_144;

/// A request id: an i64 or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(i64),
    Str(String),
}

impl RequestId {
    /// The id used for errors that cannot be tied to a request.
    pub const UNKNOWN: RequestId = RequestId::Int(-1);
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Int(i) => write!(f, "{i}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    /// `Value::Null` when absent.
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    pub params: Value,
}

/// One decoded incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request(Request),
    Notification(Notification),
    Response { id: RequestId, result: Value },
    Error { id: RequestId, error: RpcError },
}

/// Why a message could not be decoded; `Display` is the text after the transport prefix.
#[derive(Debug)]
pub enum DecodeError {
    Json(serde_json::Error),
    TooManyValues,
    NotObject,
    Field(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Json(e) => write!(f, "{e}"),
            DecodeError::TooManyValues => {
                write!(f, "JSON-RPC message exceeds the limit of {MAX_JSON_VALUES} JSON values")
            }
            DecodeError::NotObject => write!(f, "expected a JSON-RPC object"),
            DecodeError::Field(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DecodeError {}

impl Incoming {
    /// Decodes one message from its text.
    pub fn decode(text: &[u8]) -> Result<Incoming, DecodeError> {
        let value: Value = serde_json::from_slice(text).map_err(DecodeError::Json)?;
        if count_values(&value, MAX_JSON_VALUES).is_none() {
            return Err(DecodeError::TooManyValues);
        }
        let Value::Object(mut obj) = value else {
            return Err(DecodeError::NotObject);
        };
        let id = match obj.remove("id") {
            None => None,
            Some(v) => Some(RequestId::deserialize(v).map_err(|e| DecodeError::Field(e.to_string()))?),
        };
        let params = obj.remove("params").unwrap_or(Value::Null);
        match (obj.remove("method"), id) {
            (Some(method), id) => {
                let method = string_field(method, "method")?;
                Ok(match id {
                    Some(id) => Incoming::Request(Request { id, method, params }),
                    None => Incoming::Notification(Notification { method, params }),
                })
            }
            (None, Some(id)) => response(obj, id),
            (None, None) => Err(DecodeError::Field("missing field `method`".into())),
        }
    }
}

fn string_field(v: Value, name: &str) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(DecodeError::Field(format!(
            "invalid type for `{name}`: expected a string, got {}",
            kind(&other)
        ))),
    }
}

fn response(mut obj: Map<String, Value>, id: RequestId) -> Result<Incoming, DecodeError> {
    if let Some(result) = obj.remove("result") {
        return Ok(Incoming::Response { id, result });
    }
    match obj.remove("error") {
        Some(e) => {
            let error = RpcError::deserialize(e).map_err(|e| DecodeError::Field(e.to_string()))?;
            Ok(Incoming::Error { id, error })
        }
        None => Err(DecodeError::Field("missing field `error`".into())),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Counts the values in `v`, giving up (None) once `budget` is exceeded.
fn count_values(v: &Value, budget: usize) -> Option<usize> {
    let mut stack = vec![v];
    let mut n = 0usize;
    while let Some(v) = stack.pop() {
        n += 1;
        if n > budget {
            return None;
        }
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    Some(n)
}

/// A success response, serialized as `{"id":…,"result":…}`.
#[derive(Serialize)]
pub struct ResponseOut<'a, T: Serialize> {
    pub id: &'a RequestId,
    pub result: T,
}

/// An error response, serialized as `{"error":…,"id":…}`.
#[derive(Serialize)]
pub struct ErrorOut<'a> {
    pub error: &'a RpcError,
    pub id: &'a RequestId,
}

/// A notification or a server-to-client request.
#[derive(Serialize)]
pub struct NotificationOut<'a, T: Serialize> {
    pub method: &'a str,
    pub params: T,
}

/// A request sent by the server to the client.
#[derive(Serialize)]
pub struct RequestOut<'a, T: Serialize> {
    pub id: &'a RequestId,
    pub method: &'a str,
    pub params: T,
}

pub fn encode_response<T: Serialize>(id: &RequestId, result: T) -> String {
    serde_json::to_string(&ResponseOut { id, result })
        .unwrap_or_else(|e| encode_error(id, &RpcError::internal(format!("failed to encode result: {e}"))))
}

pub fn encode_error(id: &RequestId, error: &RpcError) -> String {
    // An RpcError always serializes: it is an integer, a string and a JSON value.
    serde_json::to_string(&ErrorOut { error, id }).unwrap_or_default()
}

pub fn encode_notification<T: Serialize>(method: &str, params: T) -> String {
    serde_json::to_string(&NotificationOut { method, params }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Incoming, String> {
        Incoming::decode(s.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn classifies_messages() {
        assert!(matches!(decode(r#"{"id":1,"method":"a"}"#), Ok(Incoming::Request(r)) if r.params.is_null()));
        assert!(
            matches!(decode(r#"{"id":"x","method":"a","jsonrpc":"2.0"}"#), Ok(Incoming::Request(r)) if r.id == RequestId::Str("x".into()))
        );
        assert!(matches!(
            decode(r#"{"method":"a","params":{}}"#),
            Ok(Incoming::Notification(_))
        ));
        assert!(matches!(
            decode(r#"{"id":-5,"result":{}}"#),
            Ok(Incoming::Response {
                id: RequestId::Int(-5),
                ..
            })
        ));
        assert_eq!(decode(r#"{"id":1}"#).unwrap_err(), "missing field `error`");
        assert_eq!(decode("[]").unwrap_err(), "expected a JSON-RPC object");
        assert_eq!(
            decode(r#"{"id":null,"method":"a"}"#).unwrap_err(),
            "data did not match any variant of untagged enum RequestId"
        );
        assert_eq!(
            decode(r#"{"id":1.5,"method":"a"}"#).unwrap_err(),
            "data did not match any variant of untagged enum RequestId"
        );
        assert!(decode("{1:2}").unwrap_err().contains("key must be a string"));
    }

    #[test]
    fn enforces_value_budget_and_depth() {
        let big = format!(
            "{{\"id\":1,\"method\":\"a\",\"params\":[{}0]}}",
            "0,".repeat(MAX_JSON_VALUES)
        );
        assert!(
            decode(&big)
                .unwrap_err()
                .contains("exceeds the limit of 262144 JSON values")
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(decode(&deep).unwrap_err().contains("recursion limit exceeded"));
    }

    #[test]
    fn encodes_in_reference_key_order() {
        assert_eq!(
            encode_response(&RequestId::Int(1), serde_json::json!({})),
            r#"{"id":1,"result":{}}"#
        );
        assert_eq!(
            encode_error(&RequestId::Int(-1), &RpcError::invalid_request("x")),
            r#"{"error":{"code":-32600,"message":"x"},"id":-1}"#
        );
    }
}

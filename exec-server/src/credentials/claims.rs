//! Claims read from a JWT payload (never verified here: the issuer verifies its tokens).
//! A missing plan claim is `Unknown`; a missing auth namespace gives empty fields.

use base64::Engine;
use serde_json::Value;

const AUTH_NAMESPACE: &str = "https://api.openai.com/auth";
const PROFILE_NAMESPACE: &str = "https://api.openai.com/profile";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Known(String),
    /// A plan string we do not know, or none (empty).
    Unknown(String),
}

const KNOWN_PLANS: &[&str] = &[
    "free",
    "go",
    "plus",
    "pro",
    "team",
    "business",
    "enterprise",
    "edu",
    "education",
    "hc",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Expiry, seconds since the epoch.
    pub exp: Option<u64>,
    pub account_id: Option<String>,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub plan: Plan,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed token: {0}")]
pub struct MalformedToken(pub &'static str);

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

pub fn parse(jwt: &str) -> Result<Claims, MalformedToken> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(MalformedToken("expected three segments"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(MalformedToken("empty segment"));
    }
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = engine
        .decode(p.trim_end_matches('='))
        .map_err(|_| MalformedToken("payload is not base64url"))?;
    let v: Value = serde_json::from_slice(&payload).map_err(|_| MalformedToken("payload is not JSON"))?;
    let auth = v.get(AUTH_NAMESPACE);
    let plan = match text(auth.and_then(|a| a.get("chatgpt_plan_type"))) {
        Some(p) if KNOWN_PLANS.contains(&p.to_ascii_lowercase().as_str()) => Plan::Known(p.to_ascii_lowercase()),
        Some(p) => Plan::Unknown(p),
        None => Plan::Unknown(String::new()),
    };
    Ok(Claims {
        exp: v.get("exp").and_then(Value::as_u64),
        account_id: text(auth.and_then(|a| a.get("chatgpt_account_id"))),
        user_id: text(auth.and_then(|a| a.get("chatgpt_user_id")))
            .or_else(|| text(auth.and_then(|a| a.get("user_id")))),
        email: text(v.get("email")).or_else(|| text(v.get(PROFILE_NAMESPACE).and_then(|p| p.get("email")))),
        plan,
    })
}

/// Builds an unsigned JWT with `claims` as payload (for tests and fakes).
pub fn unsigned_jwt(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
        engine.encode(claims.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scenario_01_missing_plan_or_namespace_is_not_an_error() {
        let c = parse(&unsigned_jwt(
            &json!({"exp": 100, AUTH_NAMESPACE: {"chatgpt_account_id": "acc"}}),
        ))
        .unwrap();
        assert_eq!(
            (c.plan, c.account_id.as_deref(), c.exp),
            (Plan::Unknown(String::new()), Some("acc"), Some(100))
        );
        let c = parse(&unsigned_jwt(&json!({"exp": 7}))).unwrap();
        assert_eq!(
            (c.account_id, c.user_id, c.plan, c.exp),
            (None, None, Plan::Unknown(String::new()), Some(7))
        );
        let c = parse(&unsigned_jwt(&json!({AUTH_NAMESPACE: {"chatgpt_plan_type": "Plus"}}))).unwrap();
        assert_eq!(c.plan, Plan::Known("plus".into()));
    }

    #[test]
    fn scenario_02_malformed_tokens_are_reported() {
        assert!(parse("abc.def").is_err());
        assert!(parse("a.!!!.c").is_err());
        assert!(parse("a..c").is_err());
    }
}

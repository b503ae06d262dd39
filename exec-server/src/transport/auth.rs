//! WebSocket authentication on the upgrade request: a capability token (compared by
//! SHA-256 in constant time) or an HS256 signed bearer token with expiry, not-before,
//! issuer and audience checks. Failure messages match the reference server.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

const JWT_B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How upgrade requests are authenticated.
#[derive(Clone, Default)]
pub enum WsAuth {
    #[default]
    None,
    CapabilityToken {
        digest: [u8; 32],
    },
    SignedBearer(JwtVerifier),
}

#[derive(Clone)]
pub struct JwtVerifier {
    secret: Vec<u8>,
    issuer: Option<String>,
    audience: Option<String>,
    skew_secs: u64,
}

impl std::fmt::Debug for WsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsAuth::None => f.write_str("none"),
            WsAuth::CapabilityToken { .. } => f.write_str("capability-token(<redacted>)"),
            WsAuth::SignedBearer(v) => write!(
                f,
                "signed-bearer-token(issuer={:?}, audience={:?})",
                v.issuer, v.audience
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    CapabilityToken,
    SignedBearerToken,
}

/// The `--ws-*` flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthFlags {
    /// Require a bearer token on the WebSocket upgrade.
    #[arg(long, value_enum)]
    pub ws_auth: Option<AuthMode>,
    /// File holding the capability token (absolute path; content trimmed).
    #[arg(long)]
    pub ws_token_file: Option<PathBuf>,
    /// SHA-256 (hex) of the capability token.
    #[arg(long)]
    pub ws_token_sha256: Option<String>,
    /// File holding the HS256 secret for signed bearer tokens (at least 32 bytes).
    #[arg(long)]
    pub ws_shared_secret_file: Option<PathBuf>,
    /// Required `iss` claim of signed bearer tokens.
    #[arg(long)]
    pub ws_issuer: Option<String>,
    /// Required `aud` claim of signed bearer tokens.
    #[arg(long)]
    pub ws_audience: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`.
    #[arg(long, default_value_t = 30)]
    pub ws_max_clock_skew_seconds: u64,
}

fn read_trimmed(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    if !path.is_absolute() {
        return Err(format!("{what} `{}` must be an absolute path", path.display()));
    }
    let data = std::fs::read(path).map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))?;
    let text = String::from_utf8(data).map_err(|_| format!("{what} `{}` is not UTF-8", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("{what} `{}` is empty", path.display()));
    }
    Ok(trimmed.as_bytes().to_vec())
}

impl WsAuth {
    pub fn from_flags(f: &AuthFlags) -> Result<WsAuth, String> {
        match f.ws_auth {
            None => {
                let stray = [
                    ("--ws-token-file", f.ws_token_file.is_some()),
                    ("--ws-token-sha256", f.ws_token_sha256.is_some()),
                    ("--ws-shared-secret-file", f.ws_shared_secret_file.is_some()),
                    ("--ws-issuer", f.ws_issuer.is_some()),
                    ("--ws-audience", f.ws_audience.is_some()),
                ];
                match stray.iter().find(|(_, set)| *set) {
                    Some((flag, _)) => Err(format!("`{flag}` requires `--ws-auth`")),
                    None => Ok(WsAuth::None),
                }
            }
            Some(AuthMode::CapabilityToken) => {
                let digest: [u8; 32] = match (&f.ws_token_file, &f.ws_token_sha256) {
                    (Some(_), Some(_)) => {
                        return Err("`--ws-token-file` and `--ws-token-sha256` are mutually exclusive".into());
                    }
                    (None, None) => {
                        return Err(
                            "`--ws-token-file` or `--ws-token-sha256` is required when `--ws-auth capability-token` is set".into()
                        );
                    }
                    (Some(path), None) => Sha256::digest(read_trimmed(path, "websocket token file")?).into(),
                    (None, Some(hex)) => parse_hex32(hex.trim()).ok_or("`--ws-token-sha256` must be 64 hex digits")?,
                };
                Ok(WsAuth::CapabilityToken { digest })
            }
            Some(AuthMode::SignedBearerToken) => {
                let path = f
                    .ws_shared_secret_file
                    .as_ref()
                    .ok_or("`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set")?;
                let secret = read_trimmed(path, "websocket shared secret file")?;
                if secret.len() < 32 {
                    return Err("websocket shared secret must be at least 32 bytes".into());
                }
                Ok(WsAuth::SignedBearer(JwtVerifier {
                    secret,
                    issuer: f.ws_issuer.clone(),
                    audience: f.ws_audience.clone(),
                    skew_secs: f.ws_max_clock_skew_seconds,
                }))
            }
        }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self, WsAuth::None)
    }

    /// Checks the `Authorization` header of an upgrade request.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), &'static str> {
        if matches!(self, WsAuth::None) {
            return Ok(());
        }
        let header = authorization.ok_or("missing websocket bearer token")?;
        let text = std::str::from_utf8(header).map_err(|_| "invalid authorization header")?;
        let (scheme, token) = text.trim().split_once(' ').ok_or("invalid authorization header")?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err("invalid authorization header");
        }
        match self {
            WsAuth::None => Ok(()),
            WsAuth::CapabilityToken { digest } => {
                let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                if constant_time_eq(&got, digest) {
                    Ok(())
                } else {
                    Err("invalid websocket bearer token")
                }
            }
            WsAuth::SignedBearer(v) => v.verify(token, now_secs()),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl JwtVerifier {
    fn verify(&self, token: &str, now: u64) -> Result<(), &'static str> {
        const INVALID: &str = "invalid websocket jwt";
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(INVALID);
        };
        let header: Value = JWT_B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(INVALID)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(INVALID);
        }
        let sig = JWT_B64.decode(s).map_err(|_| INVALID)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).map_err(|_| INVALID)?;
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| INVALID)?;
        let claims: Value = JWT_B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(INVALID)?;
        let exp = claims.get("exp").and_then(Value::as_u64).ok_or(INVALID)?;
        if now > exp.saturating_add(self.skew_secs) {
            return Err("expired websocket jwt");
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
            && nbf > now.saturating_add(self.skew_secs)
        {
            return Err("websocket jwt is not valid yet");
        }
        if let Some(iss) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(iss.as_str())
        {
            return Err("websocket jwt issuer mismatch");
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud.as_str())),
                _ => false,
            };
            if !ok {
                return Err("websocket jwt audience mismatch");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: &[u8], claims: &Value) -> String {
        let h = JWT_B64
            .encode(br#"{"alg":"HS256","typ":"JWT"}"#)
            .trim_end_matches('=')
            .to_string();
        let p = JWT_B64.encode(claims.to_string()).trim_end_matches('=').to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{h}.{p}").as_bytes());
        let s = JWT_B64
            .encode(mac.finalize().into_bytes())
            .trim_end_matches('=')
            .to_string();
        format!("{h}.{p}.{s}")
    }

    #[test]
    fn capability_token() {
        let auth = WsAuth::CapabilityToken {
            digest: Sha256::digest(b"tok").into(),
        };
        assert_eq!(auth.check(None), Err("missing websocket bearer token"));
        assert_eq!(auth.check(Some(b"Basic x")), Err("invalid authorization header"));
        assert_eq!(auth.check(Some(b"Bearer ")), Err("invalid authorization header"));
        assert_eq!(auth.check(Some(b"bearer nope")), Err("invalid websocket bearer token"));
        assert_eq!(auth.check(Some(b"bearer  tok ")), Ok(()));
    }

    #[test]
    fn signed_bearer() {
        let secret = [7u8; 32];
        let v = JwtVerifier {
            secret: secret.to_vec(),
            issuer: Some("me".into()),
            audience: Some("srv".into()),
            skew_secs: 30,
        };
        let now = 1_000_000;
        let good = serde_json::json!({"exp": now + 60, "iss": "me", "aud": ["x", "srv"]});
        assert_eq!(v.verify(&jwt(&secret, &good), now), Ok(()));
        assert_eq!(v.verify(&jwt(&[1u8; 32], &good), now), Err("invalid websocket jwt"));
        assert_eq!(
            v.verify(&jwt(&secret, &serde_json::json!({"iss":"me","aud":"srv"})), now),
            Err("invalid websocket jwt")
        );
        assert_eq!(
            v.verify(
                &jwt(&secret, &serde_json::json!({"exp": now - 31, "iss":"me","aud":"srv"})),
                now
            ),
            Err("expired websocket jwt")
        );
        assert_eq!(
            v.verify(
                &jwt(
                    &secret,
                    &serde_json::json!({"exp": now + 60, "nbf": now + 100, "iss":"me","aud":"srv"})
                ),
                now
            ),
            Err("websocket jwt is not valid yet")
        );
        assert_eq!(
            v.verify(
                &jwt(&secret, &serde_json::json!({"exp": now + 60, "iss":"you","aud":"srv"})),
                now
            ),
            Err("websocket jwt issuer mismatch")
        );
        assert_eq!(
            v.verify(
                &jwt(&secret, &serde_json::json!({"exp": now + 60, "iss":"me","aud":"other"})),
                now
            ),
            Err("websocket jwt audience mismatch")
        );
    }

    #[test]
    fn flag_misuse_is_reported() {
        let f = AuthFlags {
            ws_auth: Some(AuthMode::CapabilityToken),
            ..Default::default()
        };
        assert!(
            WsAuth::from_flags(&f)
                .unwrap_err()
                .contains("is required when `--ws-auth capability-token` is set")
        );
        let f = AuthFlags {
            ws_token_sha256: Some("00".into()),
            ..Default::default()
        };
        assert!(WsAuth::from_flags(&f).is_err());
        let f = AuthFlags {
            ws_auth: Some(AuthMode::CapabilityToken),
            ws_token_sha256: Some("ab".repeat(32)),
            ..Default::default()
        };
        assert!(WsAuth::from_flags(&f).unwrap().is_enabled());
    }
}

//! The listener and its front door: health routes, the browser guard, upgrade errors,
//! WebSocket auth (capability token and signed bearer token), startup refusals, and the
//! stdio transport.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a raw HTTP/1.1 request; returns (status, head, body) once the response is
/// complete (by Content-Length, at EOF, or right after the head of a 101).
async fn http(port: u16, head: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match tokio::time::timeout(WAIT, s.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => 0,
        };
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            });
            if n == 0 || status == 101 || length.is_some_and(|len| body.len() >= len) {
                return (status, head.to_string(), body.to_string());
            }
        } else if n == 0 {
            return (0, text, String::new());
        }
    }
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

#[tokio::test]
async fn health_routes_and_the_browser_guard() {
    let server = Server::start(&[]);
    let p = server.port;
    assert_eq!(http(p, "GET /readyz HTTP/1.1").await.0, 200);
    assert_eq!(http(p, "HEAD /readyz HTTP/1.1").await.0, 200);
    assert_eq!(http(p, "GET /healthz HTTP/1.1").await.0, 200);
    let (status, head, _) = http(p, "POST /readyz HTTP/1.1\r\nContent-Length: 0").await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: get,head"), "{head}");
    assert_eq!(http(p, "GET /elsewhere HTTP/1.1").await.0, 404);
    assert_eq!(
        http(p, "GET /readyz HTTP/1.1\r\nOrigin: https://evil.example").await.0,
        403
    );
    assert_eq!(
        http(
            p,
            &format!("GET / HTTP/1.1\r\nOrigin: https://evil.example\r\n{UPGRADE}")
        )
        .await
        .0,
        403
    );
    let (status, _, body) = http(p, "GET / HTTP/1.1").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Connection header did not include 'upgrade'")
    );
    let (status, head, _) = http(p, &format!("GET / HTTP/1.1\r\n{UPGRADE}")).await;
    assert_eq!(status, 101);
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "accept key: {head}");
}

#[tokio::test]
async fn scenario_36_capability_token_auth() {
    let dir = TempDir::new("auth");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "  s3cret-token\n").unwrap();
    let server = Server::start(&[
        "--ws-auth",
        "capability-token",
        "--ws-token-file",
        token_file.to_str().unwrap(),
    ]);
    let p = server.port;
    let (status, _, body) = http(p, &format!("GET / HTTP/1.1\r\n{UPGRADE}")).await;
    assert_eq!((status, body.as_str()), (401, "missing websocket bearer token"));
    let (status, _, body) = http(p, &format!("GET / HTTP/1.1\r\n{UPGRADE}\r\nAuthorization: Basic abc")).await;
    assert_eq!((status, body.as_str()), (401, "invalid authorization header"));
    let (status, _, body) = http(
        p,
        &format!("GET / HTTP/1.1\r\n{UPGRADE}\r\nAuthorization: Bearer wrong"),
    )
    .await;
    assert_eq!((status, body.as_str()), (401, "invalid websocket bearer token"));
    assert_eq!(http(p, "GET /readyz HTTP/1.1").await.0, 200, "health needs no auth");
    let mut c = Client::connect(&server.url, Some("s3cret-token")).await;
    c.handshake().await;
    c.ok("environment/status", Value::Null).await;
    // The same token by its SHA-256.
    let digest: String = Sha256::digest(b"s3cret-token")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = Server::start(&["--ws-auth", "capability-token", "--ws-token-sha256", &digest]);
    assert!(Client::try_connect(&server.url, Some("nope")).await.is_err());
    Client::connect(&server.url, Some("s3cret-token"))
        .await
        .handshake()
        .await;
}

fn jwt(secret: &[u8], claims: &Value) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let h = e.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = e.encode(claims.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", e.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn scenario_37_signed_bearer_token_auth() {
    let dir = TempDir::new("jwt");
    let secret = b"0123456789abcdef0123456789abcdef";
    std::fs::write(dir.join("secret"), secret).unwrap();
    let server = Server::start(&[
        "--ws-auth",
        "signed-bearer-token",
        "--ws-shared-secret-file",
        dir.join("secret").to_str().unwrap(),
        "--ws-issuer",
        "issuer-a",
        "--ws-audience",
        "exec",
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = jwt(
        secret,
        &json!({"exp": now + 60, "iss": "issuer-a", "aud": ["x", "exec"]}),
    );
    Client::connect(&server.url, Some(&good)).await.handshake().await;
    // Expired 20 s ago is within the 30 s skew; 40 s ago is not.
    let within_skew = jwt(secret, &json!({"exp": now - 20, "iss": "issuer-a", "aud": "exec"}));
    Client::connect(&server.url, Some(&within_skew)).await.handshake().await;
    let cases = [
        (
            jwt(secret, &json!({"exp": now - 40, "iss": "issuer-a", "aud": "exec"})),
            "expired websocket jwt",
        ),
        (
            jwt(
                secret,
                &json!({"exp": now + 120, "nbf": now + 60, "iss": "issuer-a", "aud": "exec"}),
            ),
            "websocket jwt is not valid yet",
        ),
        (
            jwt(secret, &json!({"exp": now + 60, "iss": "other", "aud": "exec"})),
            "websocket jwt issuer mismatch",
        ),
        (
            jwt(secret, &json!({"exp": now + 60, "iss": "issuer-a", "aud": "else"})),
            "websocket jwt audience mismatch",
        ),
        (
            jwt(b"another-secret-another-secret-xx", &json!({"exp": now + 60})),
            "invalid websocket jwt",
        ),
    ];
    for (token, message) in cases {
        let (status, _, body) = http(
            server.port,
            &format!("GET / HTTP/1.1\r\n{UPGRADE}\r\nAuthorization: Bearer {token}"),
        )
        .await;
        assert_eq!((status, body.as_str()), (401, message));
    }
}

fn startup_error(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{args:?} must fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn unsafe_or_inconsistent_startups_are_refused() {
    let e = startup_error(&["--listen", "ws://0.0.0.0:0"]);
    assert!(
        e.contains("refusing to listen on non-loopback address") && e.contains("--allow-unauthenticated-non-loopback"),
        "{e}"
    );
    let e = startup_error(&["--ws-auth", "capability-token"]);
    assert!(
        e.contains("`--ws-token-file` or `--ws-token-sha256` is required when `--ws-auth capability-token` is set"),
        "{e}"
    );
    let e = startup_error(&["--ws-token-sha256", &"ab".repeat(32)]);
    assert!(e.contains("requires `--ws-auth`"), "{e}");
    let e = startup_error(&[
        "--listen",
        "stdio",
        "--ws-auth",
        "capability-token",
        "--ws-token-sha256",
        &"ab".repeat(32),
    ]);
    assert!(e.contains("cannot be used with `--listen stdio`"), "{e}");
    let e = startup_error(&["--ws-auth", "signed-bearer-token"]);
    assert!(e.contains("`--ws-shared-secret-file` is required"), "{e}");
}

#[test]
fn stdio_transport_speaks_newline_delimited_json() {
    let mut child = Command::new(BIN)
        .args(["--listen", "stdio"])
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut recv = |line: &mut String| -> Value {
        line.clear();
        out.read_line(line).unwrap();
        serde_json::from_str(line).unwrap()
    };
    writeln!(
        stdin,
        "{}",
        json!({"id": 1, "method": "initialize", "params": {"clientName": "stdio"}})
    )
    .unwrap();
    assert!(recv(&mut line)["result"]["sessionId"].is_string());
    writeln!(stdin, "\n{}", json!({"method": "initialized"})).unwrap();
    writeln!(stdin, "not json").unwrap();
    let e = recv(&mut line);
    assert_eq!(e["id"], -1);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed to parse JSON-RPC message from exec-server stdio: ")
    );
    let start =
        json!({"id": 2, "method": "process/start", "params": start_params("p", &["echo", "via-stdio"], json!({}))});
    writeln!(stdin, "{start}").unwrap();
    let mut got = Vec::new();
    loop {
        let msg = recv(&mut line);
        if msg["method"] == "process/output" {
            got.extend(unb64(msg["params"]["chunk"].as_str().unwrap()));
        }
        if msg["method"] == "process/closed" {
            break;
        }
    }
    assert_eq!(got, b"via-stdio\n");
    drop(stdin); // EOF: the server exits
    let status = child.wait().unwrap();
    assert!(status.success());
}

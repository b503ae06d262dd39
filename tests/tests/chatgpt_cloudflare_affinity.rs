//! The Cloudflare affinity cookie store through a local TLS-intercepting proxy: the real
//! server runs with `HTTPS_PROXY`/`HTTP_PROXY` pointing at the proxy and the proxy's
//! test CA in `EXEC_SERVER_CA_CERTIFICATE`, and is driven over WebSocket as a client
//! would. Everything stays on 127.0.0.1: the proxy answers for every host itself.

mod common;

use common::mitm::{Mitm, Seen};
use common::upstream::{Body, Reply};
use common::*;
use serde_json::{Value, json};

const MCP: &str = "https://chatgpt.com/backend-api/ps/mcp";

/// The scripted upstream behind the proxy.
fn script(seen: &Seen) -> Reply {
    let ok = Reply::ok(b"{}").header("content-type", b"application/json");
    match (seen.host.as_str(), seen.path.as_str()) {
        ("chatgpt.com", "/backend-api/ps/mcp") if seen.cookies.is_empty() => ok
            .header("set-cookie", b"__cflb=west; Path=/; Secure; HttpOnly")
            .header("set-cookie", b"chatgpt_session=secret; Path=/"),
        ("chatgpt.com", "/backend-api/ps/mcp") => Reply::status(307)
            .header("location", b"/backend-api/ps/mcp/redirected")
            .header("set-cookie", b"__cflb=central; Path=/; Secure; HttpOnly"),
        (_, "/challenge") => ok
            .header("set-cookie", b"cf_chl_rc_i=7; Path=/")
            .header("set-cookie", b"cf_clearance=yes; Path=/"),
        (_, "/forget") => ok.header("set-cookie", b"cf_clearance=gone; Path=/; Max-Age=0"),
        (_, "/stream") => Reply::ok(b"")
            .header("set-cookie", b"__cf_bm=streamed; Path=/")
            .body(Body::Chunks(vec![(std::time::Duration::ZERO, b"data: x\n\n".to_vec())])),
        (_, "/lookalike") => ok
            .header("set-cookie", b"__cflb=lookalike; Path=/")
            .header("set-cookie", b"__cf_bm=lookalike; Domain=chatgpt.com; Path=/"),
        _ => ok,
    }
}

async fn start() -> (Mitm, Server, TempDir) {
    let mitm = Mitm::start(script).await;
    let dir = TempDir::new("mitm");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, mitm.ca.pem()).unwrap();
    let proxy = mitm.url();
    let env = [
        ("EXEC_SERVER_CA_CERTIFICATE", ca.to_str().unwrap()),
        ("HTTPS_PROXY", proxy.as_str()),
        ("https_proxy", proxy.as_str()),
        ("HTTP_PROXY", proxy.as_str()),
        ("http_proxy", proxy.as_str()),
        ("ALL_PROXY", proxy.as_str()),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ];
    let server = Server::start_with_env(&[], &env);
    (mitm, server, dir)
}

fn post(url: &str, cookies: &[&str]) -> Value {
    let headers: Vec<Value> = cookies.iter().map(|c| json!({"name": "cookie", "value": c})).collect();
    json!({"method": "POST", "url": url, "requestId": "r", "headers": headers, "bodyBase64": b64(b"{}"), "timeoutMs": 5000})
}

fn last(mitm: &Mitm, host: &str, path: &str) -> Seen {
    mitm.seen()
        .into_iter()
        .rev()
        .find(|s| s.host == host && s.path == path)
        .unwrap_or_else(|| panic!("no request to {host}{path}"))
}

#[tokio::test]
async fn affinity_cookies_follow_the_rules_across_connections_and_redirects() {
    let (mitm, server, _dir) = start().await;
    // 1. No cookie yet; the reply sets __cflb=west and a session cookie.
    let mut a = server.ready_client().await;
    let r = a.ok("http/request", post(MCP, &[])).await;
    assert_eq!(r["status"], 200);
    let first = last(&mitm, "chatgpt.com", "/backend-api/ps/mcp");
    assert_eq!(first.scheme, "https");
    assert!(first.cookies.is_empty(), "{first:?}");

    // 2. Another WebSocket connection, with caller cookies: they go out unchanged and the
    // affinity cookie follows in one more header; the session cookie was never stored.
    let mut b = server.ready_client().await;
    let caller = ["oai-chat-plugin-service-preview=true", "caller-cookie=preserved"];
    let r = b.ok("http/request", post(MCP, &caller)).await;
    assert_eq!(r["status"], 200, "the 307 was followed");
    let hops: Vec<Seen> = mitm.seen().into_iter().filter(|s| s.host == "chatgpt.com").collect();
    let second = &hops[hops.len() - 2];
    assert_eq!(second.path, "/backend-api/ps/mcp");
    assert_eq!(
        second.cookies,
        vec![caller[0].to_string(), caller[1].to_string(), "__cflb=west".to_string()]
    );
    assert!(second.cookies.iter().all(|c| !c.contains("chatgpt_session")));

    // 3. The redirected hop: caller cookies and the replaced value.
    let third = last(&mitm, "chatgpt.com", "/backend-api/ps/mcp/redirected");
    assert_eq!(third.method, "POST", "307 keeps the method");
    assert_eq!(
        third.cookies,
        vec![
            caller[0].to_string(),
            caller[1].to_string(),
            "__cflb=central".to_string()
        ]
    );

    // 4. Another host gets no stored cookie.
    a.ok("http/request", post("https://api.openai.com/backend-api/ps/mcp", &[]))
        .await;
    assert!(last(&mitm, "api.openai.com", "/backend-api/ps/mcp").cookies.is_empty());

    // Without caller cookies the jar's cookies go out alone, on any chatgpt.com path.
    a.ok("http/request", post("https://chatgpt.com/other", &[])).await;
    assert_eq!(
        last(&mitm, "chatgpt.com", "/other").cookies,
        vec!["__cflb=central".to_string()]
    );
}

#[tokio::test]
async fn plain_http_and_lookalike_hosts_never_store_or_receive() {
    let (mitm, server, _dir) = start().await;
    let mut c = server.ready_client().await;
    c.ok("http/request", post(MCP, &[])).await; // stores __cflb=west
    // Plain HTTP to chatgpt.com: nothing sent, nothing stored.
    c.ok("http/request", post("http://chatgpt.com/lookalike", &[])).await;
    let plain = last(&mitm, "chatgpt.com", "/lookalike");
    assert_eq!(plain.scheme, "http");
    assert!(plain.cookies.is_empty(), "{plain:?}");
    for host in ["evilchatgpt.com", "chatgpt.com.evil.example", "foo.chat.openai.com"] {
        c.ok("http/request", post(&format!("https://{host}/lookalike"), &[]))
            .await;
        c.ok("http/request", post(&format!("https://{host}/after"), &[])).await;
        assert!(last(&mitm, host, "/lookalike").cookies.is_empty(), "{host}");
        assert!(last(&mitm, host, "/after").cookies.is_empty(), "{host} stored a cookie");
    }
    c.ok("http/request", post("https://chatgpt.com/check", &[])).await;
    assert_eq!(
        last(&mitm, "chatgpt.com", "/check").cookies,
        vec!["__cflb=west".to_string()],
        "look-alikes changed nothing"
    );
}

#[tokio::test]
async fn challenge_cookies_kept_max_age_zero_deletes_and_streams_update_the_store() {
    let (mitm, server, _dir) = start().await;
    let mut c = server.ready_client().await;
    c.ok("http/request", post("https://chatgpt.com/challenge", &[])).await;
    c.ok("http/request", post("https://chatgpt.com/check1", &[])).await;
    let mut got = last(&mitm, "chatgpt.com", "/check1")
        .cookies
        .join("; ")
        .split("; ")
        .map(str::to_string)
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(got, vec!["cf_chl_rc_i=7".to_string(), "cf_clearance=yes".to_string()]);
    c.ok("http/request", post("https://chatgpt.com/forget", &[])).await;
    c.ok("http/request", post("https://chatgpt.com/check2", &[])).await;
    assert_eq!(
        last(&mitm, "chatgpt.com", "/check2").cookies,
        vec!["cf_chl_rc_i=7".to_string()]
    );
    // A streamed response updates the store like a buffered one.
    let mut p = post("https://chatgpt.com/stream", &[]);
    p["streamResponse"] = json!(true);
    p["requestId"] = json!("s");
    c.ok("http/request", p).await;
    c.notification(|m| m["method"] == "http/request/bodyDelta" && m["params"]["done"] == true)
        .await;
    c.ok("http/request", post("https://chatgpt.com/check3", &[])).await;
    let cookies = last(&mitm, "chatgpt.com", "/check3").cookies.join("; ");
    assert!(cookies.contains("__cf_bm=streamed"), "{cookies}");
}

#[tokio::test]
async fn one_upstream_tls_connection_serves_three_websocket_connections() {
    let (mitm, server, _dir) = start().await;
    let mut clients = [
        server.ready_client().await,
        server.ready_client().await,
        server.ready_client().await,
    ];
    for i in 0..100 {
        let c = &mut clients[i % 3];
        let r = c
            .ok("http/request", post(&format!("https://chatgpt.com/keepalive/{i}"), &[]))
            .await;
        assert_eq!(r["status"], 200);
    }
    assert_eq!(mitm.seen().len(), 100);
    assert_eq!(
        mitm.connect_count(),
        1,
        "one CONNECT, one TLS session, reused by every connection"
    );
}

#[tokio::test]
async fn untrusted_certificates_and_refusing_proxies_name_their_cause() {
    // The proxy's CA is not trusted here: the TLS handshake fails.
    let mitm = Mitm::start(script).await;
    let proxy = mitm.url();
    let server = Server::start_with_env(&[], &[("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "")]);
    let mut c = server.ready_client().await;
    let (code, msg) = c.err("http/request", post(MCP, &[])).await;
    assert_eq!(code, -32603);
    assert!(msg.starts_with("http/request failed (tls)"), "{msg}");
    assert!(mitm.seen().is_empty(), "nothing was decrypted");

    // A proxy that refuses the tunnel.
    let refuser = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = refuser.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = refuser.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let proxy = format!("http://127.0.0.1:{port}");
    let server = Server::start_with_env(&[], &[("HTTPS_PROXY", proxy.as_str()), ("NO_PROXY", "")]);
    let mut c = server.ready_client().await;
    let (code, msg) = c.err("http/request", post(MCP, &[])).await;
    assert_eq!(code, -32603);
    assert!(msg.starts_with("http/request failed (proxy)"), "{msg}");
}

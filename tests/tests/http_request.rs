//! `http/request` against scripted upstreams on 127.0.0.1: methods, headers (repeats,
//! order, `valueEnvVar`), bodies, validation messages, timeouts, redirects, streamed
//! bodies (ordering, size, errors, cancellation), the buffered-body cap, non-UTF-8
//! header values, the host policy, and connection reuse across WebSocket connections.

mod common;

use std::time::Duration;

use common::upstream::{Body, Reply, Upstream};
use common::*;
use serde_json::{Value, json};

fn req(method: &str, url: &str, extra: Value) -> Value {
    let mut p = json!({"method": method, "url": url, "requestId": "r1"});
    if let (Some(base), Some(more)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    p
}

fn header<'a>(result: &'a Value, name: &str) -> Vec<&'a str> {
    result["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == name)
        .map(|h| h["value"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn buffered_request_carries_method_headers_and_body() {
    let up = Upstream::start(|_| {
        Reply::ok(b"hello")
            .header("x-rep", b"1")
            .header("x-rep", b"2")
            .header("Set-Cookie", b"a=1")
    })
    .await;
    let server = Server::start_with_env(&[], &[("MY_TOKEN", "tok-123")]);
    let mut c = server.ready_client().await;
    let headers = json!([
        {"name": "x-a", "value": "1"}, {"name": "X-B", "value": "2"}, {"name": "x-a", "value": "3"},
        {"name": "Authorization", "value": "Bearer ", "valueEnvVar": "MY_TOKEN"}
    ]);
    let r = c
        .ok(
            "http/request",
            req(
                "post",
                &up.url("/p?q=1"),
                json!({"headers": headers, "bodyBase64": b64(b"payload")}),
            ),
        )
        .await;
    assert_eq!(r["status"], 200);
    assert_eq!(unb64(r["bodyBase64"].as_str().unwrap()), b"hello");
    assert_eq!(header(&r, "x-rep"), vec!["1", "2"]);
    let seen = &up.requests()[0];
    assert_eq!(seen.method, "post", "method is sent verbatim");
    assert_eq!(seen.path, "/p?q=1");
    assert_eq!(seen.all("x-a"), vec!["1", "3"]);
    assert_eq!(seen.all("x-b"), vec!["2"]);
    assert_eq!(seen.all("authorization"), vec!["Bearer tok-123"]);
    assert_eq!(seen.all("accept"), vec!["*/*"]);
    assert!(seen.all("user-agent").is_empty() && seen.all("accept-encoding").is_empty());
    assert_eq!(seen.body, b"payload");
    // Cookies from plain-HTTP or non-ChatGPT hosts are never kept.
    c.ok("http/request", req("GET", &up.url("/again"), json!({}))).await;
    assert!(up.requests()[1].all("cookie").is_empty());
}

#[tokio::test]
async fn invalid_requests_get_the_reference_messages() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let cases = [
        (
            req("BAD METHOD", "http://127.0.0.1:9/", json!({})),
            "http/request method is invalid: invalid HTTP method",
        ),
        (
            req("GET", "not a url", json!({})),
            "http/request url is invalid: relative URL without a base",
        ),
        (
            req("GET", "ftp://127.0.0.1/x", json!({})),
            "http/request only supports http and https URLs, got ftp",
        ),
        (
            req(
                "GET",
                "http://127.0.0.1:9/",
                json!({"headers": [{"name": "bad name", "value": "x"}]}),
            ),
            "http/request header name is invalid: invalid HTTP header name",
        ),
        (
            req(
                "GET",
                "http://127.0.0.1:9/",
                json!({"headers": [{"name": "x", "value": "a\nb"}]}),
            ),
            "http/request header value is invalid for x: failed to parse header value",
        ),
        (
            req(
                "GET",
                "http://127.0.0.1:9/",
                json!({"headers": [{"name": "x", "value": "", "valueEnvVar": "NO_SUCH_VAR_XYZ"}]}),
            ),
            "http/request header x requires executor environment variable NO_SUCH_VAR_XYZ",
        ),
        (
            json!({"method": "GET", "url": "http://127.0.0.1:9/"}),
            "missing field `requestId`",
        ),
        (
            req("GET", "http://127.0.0.1:9/", json!({"headers": null})),
            "invalid type: null, expected a sequence",
        ),
    ];
    for (params, message) in cases {
        let (code, msg) = c.err("http/request", params.clone()).await;
        assert_eq!((code, msg.as_str()), (-32602, message), "{params}");
    }
}

#[tokio::test]
async fn transport_failures_name_their_cause() {
    let slow = Upstream::start(|_| Reply::ok(b"late").delay(Duration::from_secs(5))).await;
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c2 = server.ready_client().await;
    let id = c2
        .send_request(
            "http/request",
            req("GET", &format!("http://127.0.0.1:{closed}/"), json!({})),
        )
        .await;
    let started = std::time::Instant::now();
    let r = c
        .call("http/request", req("GET", &slow.url("/"), json!({"timeoutMs": 200})))
        .await;
    let (code, msg) = r.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(code, -32603);
    assert!(msg.starts_with("http/request failed (timeout)"), "{msg}");
    let err = c2.response(id).await.unwrap_err();
    assert_eq!(err.0, -32603);
    assert!(err.1.starts_with("http/request failed (connect)"), "{}", err.1);
    // The kind is in error.data too.
    let n = c
        .send_request(
            "http/request",
            req(
                "GET",
                &format!("http://127.0.0.1:{closed}/"),
                json!({"headers": [{"name": "authorization", "value": "Bearer SECRET"}]}),
            ),
        )
        .await;
    let msg = loop {
        let m = c.recv().await;
        if m["id"] == n {
            break m;
        }
    };
    assert_eq!(msg["error"]["data"]["kind"], "connect");
    assert!(!msg.to_string().contains("SECRET"), "request headers are never echoed");
}

#[tokio::test]
async fn redirects_follow_or_stop() {
    let up = Upstream::start(|r| match r.path.as_str() {
        "/302" => Reply::status(302).header("location", b"/target"),
        "/307" => Reply::status(307).header("location", b"/target"),
        "/loop" => Reply::status(302).header("location", b"/loop"),
        _ => Reply::ok(b"landed"),
    })
    .await;
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let r = c
        .ok(
            "http/request",
            req("POST", &up.url("/302"), json!({"bodyBase64": b64(b"x")})),
        )
        .await;
    assert_eq!(
        (r["status"].clone(), unb64(r["bodyBase64"].as_str().unwrap())),
        (json!(200), b"landed".to_vec())
    );
    let log = up.requests();
    assert_eq!(
        (log[1].method.as_str(), log[1].body.is_empty()),
        ("GET", true),
        "302 turns POST into GET"
    );
    assert_eq!(log[1].all("referer"), vec![up.url("/302")]);
    c.ok(
        "http/request",
        req("PUT", &up.url("/307"), json!({"bodyBase64": b64(b"keep")})),
    )
    .await;
    let log = up.requests();
    assert_eq!(
        (log[3].method.as_str(), log[3].body.as_slice()),
        ("PUT", &b"keep"[..]),
        "307 keeps method and body"
    );
    let r = c
        .ok(
            "http/request",
            req("GET", &up.url("/302"), json!({"redirectPolicy": "stop"})),
        )
        .await;
    assert_eq!(r["status"], 302);
    assert_eq!(header(&r, "location"), vec!["/target"]);
    let (code, msg) = c.err("http/request", req("GET", &up.url("/loop"), json!({}))).await;
    assert_eq!(code, -32603);
    assert!(msg.starts_with("http/request failed (redirect)"), "{msg}");
}

async fn collect_stream(c: &mut Client, request_id: &str) -> (Vec<u8>, Vec<Value>) {
    let mut data = Vec::new();
    let mut deltas = Vec::new();
    loop {
        let n = c
            .notification(|m| m["method"] == "http/request/bodyDelta" && m["params"]["requestId"] == request_id)
            .await;
        data.extend(unb64(n["params"]["deltaBase64"].as_str().unwrap()));
        let done = n["params"]["done"] == true;
        deltas.push(n["params"].clone());
        if done {
            return (data, deltas);
        }
    }
}

#[tokio::test]
async fn streamed_bodies_arrive_in_order_after_the_response() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let body = big.clone();
    let up = Upstream::start(move |r| match r.path.as_str() {
        "/big" => Reply::ok(&body),
        "/slow" => Reply::ok(b"").body(Body::Chunks(vec![
            (Duration::ZERO, b"data: 1\n\n".to_vec()),
            (Duration::from_millis(50), b"data: 2\n\n".to_vec()),
        ])),
        "/cut" => Reply::ok(b"")
            .header("content-length", b"1000")
            .body(Body::CutAfter(b"partial".to_vec())),
        _ => Reply::ok(b"").body(Body::Chunks(vec![(Duration::from_secs(30), b"never".to_vec())])),
    })
    .await;
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let id = c
        .send_request(
            "http/request",
            req(
                "GET",
                &up.url("/big"),
                json!({"requestId": "s1", "streamResponse": true}),
            ),
        )
        .await;
    // The response (status and headers) comes before any delta.
    let first = c.recv().await;
    assert_eq!(first["id"], id, "response first: {first}");
    assert_eq!(first["result"]["status"], 200);
    assert_eq!(first["result"]["bodyBase64"], "");
    let (data, deltas) = collect_stream(&mut c, "s1").await;
    assert_eq!(data, big);
    let seqs: Vec<u64> = deltas.iter().map(|d| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=deltas.len() as u64).collect::<Vec<_>>());
    assert!(
        deltas
            .iter()
            .all(|d| unb64(d["deltaBase64"].as_str().unwrap()).len() <= 1 << 20)
    );
    let last = deltas.last().unwrap();
    assert_eq!(
        (last["done"].clone(), last["deltaBase64"].clone(), last["error"].clone()),
        (json!(true), json!(""), Value::Null)
    );

    // Server-sent events arrive as they are produced.
    c.ok(
        "http/request",
        req(
            "GET",
            &up.url("/slow"),
            json!({"requestId": "sse", "streamResponse": true}),
        ),
    )
    .await;
    let (data, _) = collect_stream(&mut c, "sse").await;
    assert_eq!(data, b"data: 1\n\ndata: 2\n\n");

    // A body cut short ends with an error.
    c.ok(
        "http/request",
        req(
            "GET",
            &up.url("/cut"),
            json!({"requestId": "cut", "streamResponse": true}),
        ),
    )
    .await;
    let (_, deltas) = collect_stream(&mut c, "cut").await;
    let err = deltas.last().unwrap()["error"].as_str().unwrap().to_string();
    assert!(err.starts_with("error decoding response body"), "{err}");

    // An active requestId cannot be reused; $/cancelRequest ends the stream.
    let hang = c
        .send_request(
            "http/request",
            req(
                "GET",
                &up.url("/hang"),
                json!({"requestId": "h", "streamResponse": true}),
            ),
        )
        .await;
    c.response(hang).await.unwrap();
    let (code, msg) = c
        .err(
            "http/request",
            req(
                "GET",
                &up.url("/hang"),
                json!({"requestId": "h", "streamResponse": true}),
            ),
        )
        .await;
    assert_eq!(
        (code, msg.as_str()),
        (-32602, "http/request streamResponse requestId `h` is already active")
    );
    c.notify("$/cancelRequest", json!({"id": hang})).await;
    let (_, deltas) = collect_stream(&mut c, "h").await;
    assert_eq!(deltas.last().unwrap()["error"], "cancelled");
    // Released: the id works again, and a buffered request may reuse it any time.
    c.ok("http/request", req("GET", &up.url("/big"), json!({"requestId": "h"})))
        .await;
}

#[tokio::test]
async fn buffered_bodies_are_capped_and_odd_headers_kept() {
    let up = Upstream::start(|r| match r.path.as_str() {
        "/chunked" => Reply::ok(b"").body(Body::Chunks(vec![
            (Duration::ZERO, vec![b'x'; 800]),
            (Duration::ZERO, vec![b'y'; 800]),
        ])),
        "/latin1" => Reply::ok(b"ok").header("x-odd", b"caf\xe9"),
        _ => Reply::ok(&[b'z'; 2000]),
    })
    .await;
    let server = Server::start(&["--http-max-buffered-body", "1000"]);
    let mut c = server.ready_client().await;
    for path in ["/sized", "/chunked"] {
        let (code, msg) = c.err("http/request", req("GET", &up.url(path), json!({}))).await;
        assert_eq!(code, -32603, "{path}");
        assert!(
            msg.contains("1000-byte limit") && msg.contains("streamResponse"),
            "{msg}"
        );
    }
    // Streaming has no such cap.
    c.ok(
        "http/request",
        req(
            "GET",
            &up.url("/sized"),
            json!({"requestId": "big", "streamResponse": true}),
        ),
    )
    .await;
    assert_eq!(collect_stream(&mut c, "big").await.0.len(), 2000);
    let r = c.ok("http/request", req("GET", &up.url("/latin1"), json!({}))).await;
    let odd = r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "x-odd")
        .expect("non-UTF-8 value kept");
    assert_eq!(unb64(odd["valueBase64"].as_str().unwrap()), b"caf\xe9");
}

#[tokio::test]
async fn host_policy_is_checked_before_connecting_and_after_resolution() {
    let up = Upstream::start(|_| Reply::ok(b"reached")).await;
    let server = Server::start(&["--http-deny", "*.blocked.test", "--http-deny", "127.0.0.0/8"]);
    let mut c = server.ready_client().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        &up.url("/"),
        "http://api.blocked.test/",
    ] {
        let (code, msg) = c.err("http/request", req("GET", url, json!({}))).await;
        assert_eq!(code, -32602, "{url}");
        assert!(msg.starts_with("http/request denied"), "{url}: {msg}");
    }
    // `localhost` passes the name check but resolves (via /etc/hosts) to a denied address.
    let (code, msg) = c
        .err(
            "http/request",
            req("GET", &format!("http://localhost:{}/", up.port), json!({})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("denied"), "{msg}");
    assert!(up.requests().is_empty(), "nothing reached the upstream");

    let server = Server::start(&["--http-allow", "localhost"]);
    let mut c = server.ready_client().await;
    let (code, _) = c.err("http/request", req("GET", &up.url("/"), json!({}))).await;
    assert_eq!(code, -32602, "127.0.0.1 is not on the allow list");
    let r = c
        .ok(
            "http/request",
            req("GET", &format!("http://localhost:{}/", up.port), json!({})),
        )
        .await;
    assert_eq!(unb64(r["bodyBase64"].as_str().unwrap()), b"reached");
}

#[tokio::test]
async fn one_pool_serves_every_websocket_connection() {
    let up = Upstream::start(|_| Reply::ok(b"x")).await;
    let server = Server::start(&[]);
    let mut clients = [
        server.ready_client().await,
        server.ready_client().await,
        server.ready_client().await,
    ];
    for i in 0..30 {
        let c = &mut clients[i % 3];
        c.ok("http/request", req("GET", &up.url(&format!("/{i}")), json!({})))
            .await;
    }
    assert_eq!(up.requests().len(), 30);
    assert_eq!(
        up.connection_count(),
        1,
        "keep-alive connections are shared across WebSocket connections"
    );
}

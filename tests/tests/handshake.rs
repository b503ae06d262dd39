//! The handshake and connection-level behaviour: `initialize` result, state errors by
//! method family, second `initialize`, unknown methods and notifications, concurrency
//! (a long-poll never blocks other requests; `--concurrent-requests 1` keeps order),
//! `$/cancelRequest`, unit params, and `environmentConfig/read`.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn initialize_returns_a_session_and_environment_info() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let r = c.initialize(None).await.unwrap();
    let sid = r["sessionId"].as_str().unwrap();
    assert_eq!(sid.len(), 36, "uuid: {sid}");
    let info = &r["environmentInfo"];
    assert!(info["shell"]["path"].as_str().unwrap().starts_with('/'));
    assert!(!info["shell"]["name"].as_str().unwrap().is_empty());
    assert_eq!(info["platformOs"], "linux");
    assert!(info["cwd"].as_str().unwrap().starts_with("file:///"));
    let caps = info["capabilities"].as_object().unwrap();
    assert!(caps.values().all(Value::is_boolean), "capabilities are booleans");
    assert_eq!(caps["fsWatchMissing"], true);
    assert_eq!(caps["environmentConfigRead"], true);
    assert_eq!(caps["processResize"], true);
    assert_eq!(info["detachGraceMs"], 30000);
    c.notify("initialized", json!({})).await;
    let same = c.ok("environment/info", Value::Null).await;
    assert_eq!(&same, info);
}

#[tokio::test]
async fn requests_before_the_handshake_name_their_family() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let cases = [
        ("process/read", json!({"processId": "x"}), "exec"),
        ("fs/getMetadata", json!({"path": "file:///tmp"}), "filesystem"),
        ("environment/info", Value::Null, "environment info"),
        ("environment/status", Value::Null, "environment status"),
        ("environmentConfig/read", json!({}), "environment config"),
    ];
    for (method, params, family) in &cases {
        let (code, msg) = c.err(method, params.clone()).await;
        assert_eq!(code, -32600);
        assert_eq!(
            msg,
            format!("client must call initialize before using {family} methods")
        );
    }
    // Params are decoded before the state check, as the reference does.
    let (code, msg) = c.err("process/start", json!({})).await;
    assert_eq!((code, msg.as_str()), (-32602, "missing field `processId`"));
    c.initialize(None).await.unwrap();
    for (method, params, family) in &cases {
        let (code, msg) = c.err(method, params.clone()).await;
        assert_eq!(code, -32600);
        assert_eq!(
            msg,
            format!("client must send initialized before using {family} methods")
        );
    }
    let (code, msg) = c.err("initialize", json!({"clientName": "again"})).await;
    assert_eq!(
        (code, msg.as_str()),
        (-32600, "initialize may only be sent once per connection")
    );
    c.notify("initialized", json!(null)).await;
    c.notify("initialized", json!([])).await; // a second one is accepted
    c.ok("environment/status", Value::Null).await;
}

#[tokio::test]
async fn unknown_methods_and_notifications() {
    let server = Server::start(&[]);
    let mut c = server.connect().await;
    let (code, msg) = c.err("foo/bar", json!({})).await;
    assert_eq!((code, msg.as_str()), (-32601, "method not found: foo/bar"));
    c.handshake().await;
    c.notify("something/unknown", json!({"x": 1})).await;
    c.notify("process/output", json!({})).await;
    c.send_text(r#"{"id": 999, "result": {}}"#).await; // a stray response
    let (code, _) = c.err("fs/rename", json!({})).await;
    assert_eq!(code, -32601);
    c.ok("environment/status", Value::Null).await;
}

#[tokio::test]
async fn unit_params_accept_null_and_empty_only() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.ok("environment/info", json!({})).await;
    c.ok("environment/status", Value::Null).await;
    let (code, msg) = c.err("environment/status", json!({"a": 1})).await;
    assert_eq!((code, msg.as_str()), (-32602, "invalid type: map, expected unit"));
}

#[tokio::test]
async fn concurrent_by_default_and_ordered_with_one() {
    // Default: a long-poll does not hold back a later status request.
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("s", &["sleep", "30"], json!({})).await;
    let poll = c
        .send_request("process/read", json!({"processId": "s", "waitMs": 2000}))
        .await;
    let status = c.send_request("environment/status", Value::Null).await;
    let first = c.recv().await;
    assert_eq!(first["id"], status, "status answered first: {first}");
    c.response(poll).await.unwrap();
    c.ok("process/terminate", json!({"processId": "s"})).await;

    // --concurrent-requests 1: strictly in arrival order.
    let server = Server::start(&["--concurrent-requests", "1"]);
    let mut c = server.ready_client().await;
    c.start("s", &["sleep", "30"], json!({})).await;
    let poll = c
        .send_request("process/read", json!({"processId": "s", "waitMs": 300}))
        .await;
    let _status = c.send_request("environment/status", Value::Null).await;
    let first = c.recv().await;
    assert_eq!(first["id"], poll, "in-order mode answers the long-poll first");
    c.ok("process/terminate", json!({"processId": "s"})).await;
}

#[tokio::test]
async fn cancel_request_ends_a_long_poll() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("s", &["sleep", "30"], json!({})).await;
    let poll = c
        .send_request("process/read", json!({"processId": "s", "waitMs": 60000}))
        .await;
    c.notify("$/cancelRequest", json!({"id": poll})).await;
    let (code, msg) = c.response(poll).await.unwrap_err();
    assert_eq!((code, msg.as_str()), (-32800, "request cancelled"));
    c.notify("$/cancelRequest", json!({"id": 12345})).await; // unknown id: ignored
    c.ok("process/terminate", json!({"processId": "s"})).await;
}

#[tokio::test]
async fn environment_config_read_answers_empty_layers() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let r = c
        .ok(
            "environmentConfig/read",
            json!({"cwd": "file:///tmp", "configPaths": [["mcp_servers"]], "requirementsPaths": [["mcp_servers"]]}),
        )
        .await;
    assert_eq!(r["config"], json!({"layers": [], "cloudInsertionIndex": 0}));
    assert_eq!(r["requirements"], json!({"layers": [], "cloudInsertionIndex": 0}));
    assert!(r["codexHomeDir"].as_str().unwrap().starts_with("file:///"));
    assert!(r["hostname"].is_string());
}

#[tokio::test]
async fn ids_may_be_strings_or_negative() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.send_text(r#"{"id":"abc","method":"environment/status","jsonrpc":"2.0"}"#)
        .await;
    let r = c.recv().await;
    assert_eq!(r, json!({"id": "abc", "result": {"status": "ready"}}));
    c.send_text(r#"{"id":-7,"method":"environment/status"}"#).await;
    let r = c.recv().await;
    assert_eq!(r["id"], -7);
}

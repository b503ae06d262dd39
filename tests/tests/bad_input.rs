//! Bad input, one test per row of the reference's error table: each sends the input and
//! asserts code and message, while a second connection keeps working and the server
//! never dies. Plus oversize frames (Close 1009) and 10,000 pipelined requests.

mod common;

use common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Sends `raw` and returns the error response (which must carry id -1 for parse errors).
async fn parse_error(c: &mut Client, raw: &str) -> (Value, i64, String) {
    c.send_text(raw).await;
    let msg = c.recv().await;
    let e = &msg["error"];
    (
        msg["id"].clone(),
        e["code"].as_i64().unwrap(),
        e["message"].as_str().unwrap().to_string(),
    )
}

/// A bystander connection must be unaffected.
async fn still_serving(server: &Server, bystander: &mut Client) {
    bystander.ok("environment/status", Value::Null).await;
    let mut fresh = server.ready_client().await;
    fresh.ok("environment/status", Value::Null).await;
}

#[tokio::test]
async fn malformed_messages_get_id_minus_one_and_the_connection_stays() {
    let server = Server::start(&[]);
    let mut bystander = server.ready_client().await;
    let mut c = server.connect().await;
    let prefix = "failed to parse websocket JSON-RPC message from exec-server websocket 127.0.0.1:";
    let cases = [
        ("{1:2}", "key must be a string at line 1 column 2"),
        ("not json", "expected ident at line 1 column 2"),
        ("[]", "expected a JSON-RPC object"),
        (
            r#"[{"id":1,"method":"environment/status"}]"#,
            "expected a JSON-RPC object",
        ),
        ("42", "expected a JSON-RPC object"),
        (
            r#"{"id":null,"method":"x"}"#,
            "data did not match any variant of untagged enum RequestId",
        ),
        (
            r#"{"id":1.5,"method":"x"}"#,
            "data did not match any variant of untagged enum RequestId",
        ),
        (
            r#"{"id":{},"method":"x"}"#,
            "data did not match any variant of untagged enum RequestId",
        ),
        (r#"{"id":1}"#, "missing field `error`"),
        (r#"{"params":{}}"#, "missing field `method`"),
        (
            r#"{"id":1,"method":5}"#,
            "invalid type for `method`: expected a string, got a number",
        ),
    ];
    for (raw, expected) in cases {
        let (id, code, msg) = parse_error(&mut c, raw).await;
        assert_eq!(id, json!(-1), "{raw}");
        assert_eq!(code, -32600, "{raw}");
        assert!(msg.starts_with(prefix), "{msg}");
        assert!(msg.ends_with(expected), "{raw}: {msg}");
    }
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let (_, code, msg) = parse_error(&mut c, &deep).await;
    assert_eq!(code, -32600);
    assert!(msg.contains("recursion limit exceeded"), "{msg}");
    let many = format!(r#"{{"id":1,"method":"x","params":[{}0]}}"#, "0,".repeat(262_144));
    let (_, code, msg) = parse_error(&mut c, &many).await;
    assert_eq!(code, -32600);
    assert!(msg.contains("exceeds the limit of 262144 JSON values"), "{msg}");
    // Binary frames carry JSON too.
    c.ws.send_binary(br#"{"id":3,"method":"nope"}"#).await;
    let r = c.recv().await;
    assert_eq!(r["error"]["code"], -32601);
    c.handshake().await;
    still_serving(&server, &mut bystander).await;
}

trait SendBinary {
    async fn send_binary(&mut self, data: &[u8]);
}

impl SendBinary for Ws {
    async fn send_binary(&mut self, data: &[u8]) {
        use futures_util::SinkExt;
        self.send(Message::binary(data.to_vec())).await.expect("send");
    }
}

#[tokio::test]
async fn bad_params_get_serde_messages() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let cases = [
        (
            "process/start",
            json!({"argv": ["true"]}),
            -32602,
            "missing field `processId`",
        ),
        (
            "process/start",
            json!({"processId": 5}),
            -32602,
            "invalid type: integer `5`, expected a string",
        ),
        (
            "process/start",
            start_params("e", &[], json!({})),
            -32602,
            "argv must not be empty",
        ),
        (
            "process/start",
            start_params("", &["true"], json!({})),
            -32602,
            "processId must not be empty",
        ),
        (
            "process/start",
            start_params("t", &["true"], json!({"tty": "yes"})),
            -32602,
            "invalid type: string \"yes\", expected a boolean",
        ),
        ("process/read", json!({}), -32602, "missing field `processId`"),
        (
            "process/read",
            json!({"processId": "nope"}),
            -32600,
            "unknown process id nope",
        ),
        (
            "process/resize",
            json!({"processId": "nope", "cols": 10, "rows": 10}),
            -32600,
            "unknown process id nope",
        ),
        (
            "process/closeStdin",
            json!({"processId": "nope"}),
            -32600,
            "unknown process id nope",
        ),
        (
            "process/write",
            json!({"processId": "p", "chunk": "!!!!", "writeId": "1"}),
            -32602,
            "Invalid symbol 33, offset 0.",
        ),
        (
            "process/write",
            json!({"processId": "p", "chunk": ""}),
            -32602,
            "missing field `writeId`",
        ),
        (
            "process/write",
            json!({"processId": "p", "chunk": "", "writeId": ""}),
            -32602,
            "writeId must not be empty",
        ),
        (
            "process/signal",
            json!({"processId": "p", "signal": "bogus"}),
            -32602,
            "unknown variant `bogus`, expected one of `interrupt`, `terminate`, `kill`, `hangup`, `quit`, `user1`, `user2`",
        ),
        (
            "process/resize",
            json!({"processId": "p", "cols": 0, "rows": 5}),
            -32602,
            "cols and rows must be positive",
        ),
        (
            "fs/readFile",
            json!({"path": "/tmp/x"}),
            -32602,
            "invalid URI: relative URL without a base",
        ),
        (
            "fs/readFile",
            json!({"path": "http://x/y"}),
            -32602,
            "unsupported path URI scheme `http`",
        ),
        (
            "fs/readFile",
            json!({"path": "file:///tmp/x?y=1"}),
            -32602,
            "query parameters are not allowed in path URIs",
        ),
        (
            "fs/readFile",
            json!({"path": "file://relative/a.txt"}),
            -32600,
            "'file://relative/a.txt' is invalid on 'linux'",
        ),
        (
            "fs/writeFile",
            json!({"path": "file:///tmp/x", "dataBase64": "!!!!"}),
            -32600,
            "fs/writeFile requires valid base64 dataBase64: Invalid symbol 33, offset 0.",
        ),
        (
            "fs/copy",
            json!({"sourcePath": "file:///tmp", "destinationPath": "file:///tmp/y"}),
            -32602,
            "missing field `recursive`",
        ),
        (
            "fs/readBlock",
            json!({"handleId": "nope", "offset": 0, "len": 1}),
            -32004,
            "unknown file handle `nope`",
        ),
        (
            "fs/open",
            json!({"handleId": "h", "path": "file:///tmp", "mode": "append"}),
            -32602,
            "unknown variant `append`, expected `read` or `replace`",
        ),
    ];
    for (method, params, code, message) in cases {
        let (got_code, got) = c.err(method, params.clone()).await;
        assert_eq!((got_code, got.as_str()), (code, message), "{method} {params}");
    }
    // Unknown fields are ignored.
    c.start("extra", &["true"], json!({"unknownField": {"deep": [1, 2]}}))
        .await;
    c.events_until_closed("extra").await;
}

#[tokio::test]
async fn file_errors_keep_the_reference_codes() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("fserr");
    std::fs::write(dir.join("file"), "x").unwrap();
    std::fs::create_dir_all(dir.join("full/sub")).unwrap();
    let u = |p: &str| uri(&dir.join(p));
    let cases = [
        (
            "fs/readFile",
            json!({"path": u("missing")}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/readFile",
            json!({"path": u("full")}),
            -32600,
            &*format!("path `{}` is not a file", dir.join("full").display()),
        ),
        (
            "fs/writeFile",
            json!({"path": u("no/parent.txt"), "dataBase64": ""}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/writeFile",
            json!({"path": u("full"), "dataBase64": ""}),
            -32603,
            "Is a directory (os error 21)",
        ),
        (
            "fs/createDirectory",
            json!({"path": u("file")}),
            -32603,
            "File exists (os error 17)",
        ),
        (
            "fs/createDirectory",
            json!({"path": u("full"), "recursive": false}),
            -32603,
            "File exists (os error 17)",
        ),
        (
            "fs/getMetadata",
            json!({"path": u("missing")}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/canonicalize",
            json!({"path": u("missing")}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/readDirectory",
            json!({"path": u("file")}),
            -32603,
            "Not a directory (os error 20)",
        ),
        (
            "fs/remove",
            json!({"path": u("missing"), "force": false}),
            -32004,
            "No such file or directory (os error 2)",
        ),
        (
            "fs/remove",
            json!({"path": u("full"), "recursive": false}),
            -32603,
            "Directory not empty (os error 39)",
        ),
        (
            "fs/copy",
            json!({"sourcePath": u("full"), "destinationPath": u("copy"), "recursive": false}),
            -32600,
            "fs/copy requires recursive: true when sourcePath is a directory",
        ),
    ];
    for (method, params, code, message) in cases {
        let (got_code, got) = c.err(method, params.clone()).await;
        assert_eq!((got_code, got.as_str()), (code, message), "{method} {params}");
    }
    // sysfs refuses writes to read-only attributes even for root.
    let (code, msg) = c
        .err(
            "fs/writeFile",
            json!({"path": "file:///sys/kernel/notes", "dataBase64": ""}),
        )
        .await;
    assert_eq!((code, msg.as_str()), (-32600, "Permission denied (os error 13)"));
    c.ok("fs/remove", json!({"path": u("missing")})).await; // force defaults to true
    c.ok("fs/open", json!({"handleId": "h", "path": u("file"), "mode": "read"}))
        .await;
    let (code, msg) = c
        .err("fs/open", json!({"handleId": "h", "path": u("file"), "mode": "read"}))
        .await;
    assert_eq!((code, msg.as_str()), (-32600, "file handle `h` already exists"));
    let (code, msg) = c
        .err(
            "fs/writeBlock",
            json!({"handleId": "h", "offset": 0, "chunk": b64(b"x")}),
        )
        .await;
    assert_eq!(
        (code, msg.as_str()),
        (-32600, "file handle `h` is not open for writing")
    );
}

#[tokio::test]
async fn oversize_messages_close_with_1009_and_spare_other_connections() {
    let server = Server::start(&["--max-frame-bytes", "65536", "--max-message-bytes", "131072"]);
    let mut bystander = server.ready_client().await;
    let mut c = server.ready_client().await;
    let big = format!(
        r#"{{"id":1,"method":"environment/status","params":"{}"}}"#,
        "x".repeat(100_000)
    );
    c.send_text(big).await;
    let mut close_code = None;
    while let Some(frame) = c.recv_frame().await {
        if let Message::Close(frame) = frame {
            close_code = frame.map(|f| u16::from(f.code));
            break;
        }
    }
    assert_eq!(close_code, Some(1009));
    still_serving(&server, &mut bystander).await;
}

#[tokio::test]
async fn ten_thousand_pipelined_requests_are_all_answered() {
    let server = Server::start(&[]);
    let mut bystander = server.ready_client().await;
    let mut c = server.ready_client().await;
    let n = 10_000i64;
    let mut batch = Vec::new();
    for i in 0..n {
        let method = if i % 3 == 0 {
            "environment/status"
        } else if i % 3 == 1 {
            "process/read"
        } else {
            "bogus/method"
        };
        let params = if i % 3 == 0 {
            Value::Null
        } else {
            json!({"processId": "none"})
        };
        batch.push(json!({"id": 1000 + i, "method": method, "params": params}).to_string());
    }
    let sender = async {
        for text in batch {
            c.send_text(text).await;
        }
    };
    sender.await;
    let mut seen = vec![false; n as usize];
    for _ in 0..n {
        let msg = c.recv().await;
        let id = msg["id"].as_i64().unwrap() - 1000;
        assert!(!seen[id as usize], "duplicate answer for {id}");
        seen[id as usize] = true;
        match id % 3 {
            0 => assert_eq!(msg["result"]["status"], "ready"),
            1 => assert_eq!(msg["error"]["message"], "unknown process id none"),
            _ => assert_eq!(msg["error"]["code"], -32601),
        }
    }
    assert!(seen.iter().all(|s| *s));
    still_serving(&server, &mut bystander).await;
}

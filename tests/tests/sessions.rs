//! Sessions across connections: resume after a dropped connection with `process/read`
//! catch-up, live notifications on the new connection, the grace period killing every
//! process of an abandoned session (checked by scanning /proc), SIGTERM cleanup, busy
//! and unknown sessions, and isolation between sessions.

mod common;

use common::*;
use serde_json::json;

fn marker(tag: &str) -> (String, String) {
    (
        format!("EXEC_SERVER_TEST_MARK_{}", tag.to_uppercase()),
        format!("{tag}-{}", std::process::id()),
    )
}

#[tokio::test]
async fn resume_after_a_dropped_connection_catches_up_with_read() {
    let server = Server::start(&[]);
    let mut a = server.connect().await;
    let session = a.handshake().await;
    a.start(
        "p",
        &["sh", "-c", "echo one; read x; echo two-$x"],
        json!({"pipeStdin": true}),
    )
    .await;
    let first = a.notification(|m| m["method"] == "process/output").await;
    assert_eq!(unb64(first["params"]["chunk"].as_str().unwrap()), b"one\n");
    drop(a); // TCP dropped without a close frame, like Codex at exit

    let mut b = server.connect().await;
    let r = b.initialize(Some(&session)).await.expect("resume");
    assert_eq!(r["sessionId"], session.as_str());
    b.notify("initialized", json!({})).await;
    let w = b
        .ok(
            "process/write",
            json!({"processId": "p", "chunk": b64(b"x\n"), "writeId": "1"}),
        )
        .await;
    assert_eq!(w["status"], "accepted");
    let read = b
        .ok(
            "process/read",
            json!({"processId": "p", "afterSeq": 1, "waitMs": 10000}),
        )
        .await;
    assert_eq!(unb64(read["chunks"][0]["chunk"].as_str().unwrap()), b"two-x\n");
    // Notifications flow on the new connection.
    let events = b.events_until_closed("p").await;
    assert_eq!(events.last().unwrap()["method"], "process/closed");
}

#[tokio::test]
async fn output_produced_while_detached_is_kept() {
    let server = Server::start(&[]);
    let mut a = server.connect().await;
    let session = a.handshake().await;
    a.start("bg", &["sh", "-c", "sleep 0.3; echo while-away"], json!({}))
        .await;
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let mut b = server.connect().await;
    b.initialize(Some(&session)).await.expect("resume");
    b.notify("initialized", json!({})).await;
    let read = b.ok("process/read", json!({"processId": "bg", "afterSeq": 0})).await;
    assert_eq!(unb64(read["chunks"][0]["chunk"].as_str().unwrap()), b"while-away\n");
    assert_eq!(read["closed"], true);
}

#[tokio::test]
async fn grace_period_kills_every_process_of_an_abandoned_session() {
    let server = Server::start(&["--detach-grace-ms", "300"]);
    let (k, v) = marker("grace");
    let probe = format!("{k}={v}");
    let mut a = server.connect().await;
    let session = a.handshake().await;
    let env = json!({"PATH": "/usr/bin:/bin", k.clone(): v.clone()});
    a.start(
        "tree",
        &["sh", "-c", "sleep 1000 & sleep 1000 & echo up; wait"],
        json!({"env": env.clone()}),
    )
    .await;
    a.start("tty", &["sh", "-c", "sleep 1000"], json!({"env": env, "tty": true}))
        .await;
    a.notification(|m| m["method"] == "process/output" && m["params"]["processId"] == "tree")
        .await;
    assert!(eventually(|| pids_with_env_marker(&probe).len() >= 4).await);
    drop(a);
    assert!(
        eventually(|| pids_with_env_marker(&probe).is_empty()).await,
        "processes outlived the grace period"
    );
    let mut b = server.connect().await;
    let (code, msg) = b.initialize(Some(&session)).await.unwrap_err();
    assert_eq!((code, msg), (-32600, format!("unknown session id {session}")));
    // A failed initialize leaves the slot free.
    b.handshake().await;
}

#[tokio::test]
async fn zero_grace_kills_on_disconnect() {
    let server = Server::start(&["--detach-grace-ms", "0"]);
    let (k, v) = marker("zero");
    let probe = format!("{k}={v}");
    let mut a = server.ready_client().await;
    a.start("s", &["sleep", "1000"], json!({"env": {"PATH": "/usr/bin:/bin", k: v}}))
        .await;
    assert!(eventually(|| pids_with_env_marker(&probe).len() == 1).await);
    drop(a);
    assert!(eventually(|| pids_with_env_marker(&probe).is_empty()).await);
}

#[tokio::test]
async fn sigterm_kills_and_reaps_every_process() {
    let mut server = Server::start(&[]);
    let (k, v) = marker("sigterm");
    let probe = format!("{k}={v}");
    let mut c = server.ready_client().await;
    for i in 0..5 {
        let env = json!({"PATH": "/usr/bin:/bin", k.clone(): v.clone()});
        c.start(
            &format!("p{i}"),
            &["sh", "-c", "sleep 1000 & sleep 1000"],
            json!({"env": env, "tty": i % 2 == 0}),
        )
        .await;
    }
    assert!(eventually(|| pids_with_env_marker(&probe).len() >= 10).await);
    let status = server.terminate().expect("server exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    assert!(
        eventually(|| pids_with_env_marker(&probe).is_empty()).await,
        "orphans after SIGTERM"
    );
}

#[tokio::test]
async fn an_attached_session_cannot_be_taken() {
    let server = Server::start(&[]);
    let mut a = server.connect().await;
    let session = a.handshake().await;
    let mut b = server.connect().await;
    let (code, msg) = b.initialize(Some(&session)).await.unwrap_err();
    assert_eq!(code, -32010);
    assert_eq!(
        msg,
        format!("session {session} is already attached to another connection")
    );
    // `a` still works.
    a.ok("environment/status", json!(null)).await;
}

#[tokio::test]
async fn sessions_are_isolated() {
    let server = Server::start(&[]);
    let mut a = server.ready_client().await;
    let mut b = server.ready_client().await;
    a.start("same", &["sh", "-c", "echo from-a"], json!({})).await;
    b.start("same", &["sh", "-c", "echo from-b"], json!({})).await;
    assert_eq!(output_of(&a.events_until_closed("same").await), b"from-a\n");
    assert_eq!(output_of(&b.events_until_closed("same").await), b"from-b\n");
    b.start("only-b", &["sleep", "30"], json!({})).await;
    let (code, _) = a.err("process/read", json!({"processId": "only-b"})).await;
    assert_eq!(code, -32600);
    b.ok("process/terminate", json!({"processId": "only-b"})).await;
}

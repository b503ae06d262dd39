//! Process engine conformance against the real binary: output order and seq, exit
//! codes, `process/read` (afterSeq, maxBytes, long-poll, loss reporting), stdin writes
//! with writeId dedup and EOF, PTYs (size, resize, Ctrl-C), signals, terminate, list,
//! env policy, arg0, cwd and limits.

mod common;

use std::os::fd::AsRawFd;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["params"]["seq"].as_u64().expect("seq"))
        .collect()
}

fn stream_bytes(events: &[Value], stream: &str) -> Vec<u8> {
    let only: Vec<Value> = events
        .iter()
        .filter(|e| e["params"]["stream"] == stream)
        .cloned()
        .collect();
    output_of(&only)
}

#[tokio::test]
async fn output_then_exited_then_closed_with_one_seq_counter() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let r = c
        .start("p1", &["bash", "-c", "echo hi; echo err >&2; exit 3"], json!({}))
        .await;
    assert_eq!(r, json!({"processId": "p1", "sandboxType": "none"}));
    let events = c.events_until_closed("p1").await;
    let methods: Vec<&str> = events.iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(methods.last(), Some(&"process/closed"));
    assert_eq!(methods[methods.len() - 2], "process/exited");
    assert!(
        methods[..methods.len() - 2].iter().all(|m| *m == "process/output"),
        "{methods:?}"
    );
    assert_eq!(seqs(&events), (1..=events.len() as u64).collect::<Vec<_>>());
    let exited = &events[events.len() - 2]["params"];
    assert_eq!(exited["exitCode"], 3);
    assert_eq!(exited["sandboxDenied"], false);
    assert_eq!(exited["reason"], "exited");
    assert_eq!(stream_bytes(&events, "stdout"), b"hi\n");
    assert_eq!(stream_bytes(&events, "stderr"), b"err\n");
}

#[tokio::test]
async fn exited_always_follows_the_last_output_chunk() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    for i in 0..15 {
        let id = format!("burst{i}");
        let tty = i % 3 == 0;
        c.start(
            &id,
            &["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; printf END"],
            json!({"tty": tty}),
        )
        .await;
        let events = c.events_until_closed(&id).await;
        let exited_at = events
            .iter()
            .position(|e| e["method"] == "process/exited")
            .expect("exited");
        assert_eq!(
            exited_at,
            events.len() - 2,
            "run {i}: exited must come right before closed"
        );
        let out = output_of(&events);
        assert!(out.ends_with(b"END"), "run {i}: last output arrived before exited");
        let xs = out.iter().filter(|b| **b == b'x').count();
        assert_eq!(xs, 300_000, "run {i}");
    }
}

#[tokio::test]
async fn read_pages_with_after_seq_and_max_bytes() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start(
        "r",
        &["sh", "-c", "echo a; sleep 0.05; echo b; sleep 0.05; echo c"],
        json!({}),
    )
    .await;
    let events = c.events_until_closed("r").await;
    let total = events.len() as u64;
    let all = c.ok("process/read", json!({"processId": "r"})).await;
    assert_eq!(all["chunks"].as_array().unwrap().len() as u64, total - 2);
    assert_eq!(
        all["nextSeq"],
        total + 1,
        "without a byte budget nextSeq is the next seq to assign"
    );
    assert_eq!(all["exited"], true);
    assert_eq!(all["closed"], true);
    assert_eq!(all["exitCode"], 0);
    // Page one chunk at a time with maxBytes 1 and the returned nextSeq.
    let mut after = 0u64;
    let mut text = Vec::new();
    for _ in 0..10 {
        let page = c
            .ok(
                "process/read",
                json!({"processId": "r", "afterSeq": after, "maxBytes": 1}),
            )
            .await;
        let chunks = page["chunks"].as_array().unwrap();
        if chunks.is_empty() {
            break;
        }
        assert_eq!(chunks.len(), 1, "maxBytes still returns one chunk");
        text.extend(unb64(chunks[0]["chunk"].as_str().unwrap()));
        after = page["nextSeq"].as_u64().unwrap() - 1;
    }
    assert_eq!(text, b"a\nb\nc\n");
}

#[tokio::test]
async fn long_poll_wakes_on_output_and_does_not_block_other_requests() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("lp", &["sh", "-c", "read x; echo got $x"], json!({"pipeStdin": true}))
        .await;
    let read_id = c
        .send_request(
            "process/read",
            json!({"processId": "lp", "afterSeq": 0, "waitMs": 15000}),
        )
        .await;
    // While the long-poll waits, other requests are answered.
    let status = c.ok("environment/status", Value::Null).await;
    assert_eq!(status, json!({"status": "ready"}));
    let w = c
        .ok(
            "process/write",
            json!({"processId": "lp", "chunk": b64(b"42\n"), "writeId": "w1"}),
        )
        .await;
    assert_eq!(w, json!({"status": "accepted"}));
    let read = c.response(read_id).await.expect("read");
    let chunk = unb64(read["chunks"][0]["chunk"].as_str().unwrap());
    assert_eq!(chunk, b"got 42\n");
}

#[tokio::test]
async fn long_poll_returns_empty_at_its_deadline() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("idle", &["sleep", "30"], json!({})).await;
    let started = std::time::Instant::now();
    let r = c.ok("process/read", json!({"processId": "idle", "waitMs": 300})).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(r["chunks"], json!([]));
    assert_eq!(r["exited"], false);
    assert_eq!(r["nextSeq"], 1);
    c.ok("process/terminate", json!({"processId": "idle"})).await;
}

#[tokio::test]
async fn output_beyond_the_ring_reports_the_loss() {
    let server = Server::start(&["--output-retention-bytes", "65536"]);
    let mut c = server.ready_client().await;
    c.start("big", &["sh", "-c", "head -c 1048576 /dev/zero"], json!({}))
        .await;
    let events = c.events_until_closed("big").await;
    assert_eq!(output_of(&events).len(), 1 << 20, "live notifications carry everything");
    let r = c.ok("process/read", json!({"processId": "big", "afterSeq": 0})).await;
    let chunks = r["chunks"].as_array().unwrap();
    let first = chunks[0]["seq"].as_u64().unwrap();
    assert!(first > 1);
    assert_eq!(r["droppedBeforeSeq"], first);
    let retained: usize = chunks.iter().map(|c| unb64(c["chunk"].as_str().unwrap()).len()).sum();
    assert!(retained <= 65536 + 65536, "ring bounded, got {retained}");
    // Reading from inside the retained range reports no loss.
    let r = c
        .ok("process/read", json!({"processId": "big", "afterSeq": first}))
        .await;
    assert!(r.get("droppedBeforeSeq").is_none());
}

#[tokio::test]
async fn writes_are_ordered_deduplicated_and_stdin_closes() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("cat", &["cat"], json!({"pipeStdin": true})).await;
    // Pipelined writes keep their order; a repeated writeId is not written twice.
    let ids: Vec<i64> = futures_join(&mut c, &[("1", "a"), ("1", "a"), ("2", "b"), ("3", "c")]).await;
    for id in ids {
        assert_eq!(c.response(id).await.unwrap(), json!({"status": "accepted"}));
    }
    c.ok("process/closeStdin", json!({"processId": "cat"})).await;
    let events = c.events_until_closed("cat").await;
    assert_eq!(output_of(&events), b"abc");
    assert_eq!(events[events.len() - 2]["params"]["exitCode"], 0);
}

async fn futures_join(c: &mut Client, writes: &[(&str, &str)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (write_id, data) in writes {
        let params = json!({"processId": "cat", "chunk": b64(data.as_bytes()), "writeId": write_id});
        ids.push(c.send_request("process/write", params).await);
    }
    ids
}

#[tokio::test]
async fn write_statuses() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let r = c
        .ok(
            "process/write",
            json!({"processId": "nope", "chunk": "", "writeId": "1"}),
        )
        .await;
    assert_eq!(r["status"], "unknownProcess");
    c.start("nostdin", &["sleep", "30"], json!({})).await;
    let r = c
        .ok(
            "process/write",
            json!({"processId": "nostdin", "chunk": b64(b"x"), "writeId": "1"}),
        )
        .await;
    assert_eq!(r["status"], "stdinClosed");
    c.ok("process/terminate", json!({"processId": "nostdin"})).await;
}

#[tokio::test]
async fn pty_has_its_size_resizes_and_echoes() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let script = "stty size; read x; stty size";
    c.start(
        "tty",
        &["sh", "-c", script],
        json!({"tty": true, "size": {"cols": 100, "rows": 40}}),
    )
    .await;
    let first = c.notification(|m| m["method"] == "process/output").await;
    let mut seen = unb64(first["params"]["chunk"].as_str().unwrap());
    assert_eq!(first["params"]["stream"], "pty");
    while !String::from_utf8_lossy(&seen).contains("40 100") {
        let n = c.notification(|m| m["method"] == "process/output").await;
        seen.extend(unb64(n["params"]["chunk"].as_str().unwrap()));
    }
    c.ok("process/resize", json!({"processId": "tty", "cols": 120, "rows": 50}))
        .await;
    c.ok(
        "process/write",
        json!({"processId": "tty", "chunk": b64(b"go\n"), "writeId": "1"}),
    )
    .await;
    let events = c.events_until_closed("tty").await;
    let text = String::from_utf8_lossy(&output_of(&events)).to_string();
    assert!(text.contains("go\r\n"), "input is echoed with CRLF: {text:?}");
    assert!(text.contains("50 120"), "stty size after resize: {text:?}");
}

#[tokio::test]
async fn ctrl_c_over_a_pty_interrupts_the_foreground_job() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let script = "trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.05; done";
    for (id, how) in [("byte", "write"), ("signal", "signal")] {
        c.start(id, &["bash", "-c", script], json!({"tty": true})).await;
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("ready") {
            let n = c
                .notification(|m| m["method"] == "process/output" && m["params"]["processId"] == id)
                .await;
            seen.extend(unb64(n["params"]["chunk"].as_str().unwrap()));
        }
        if how == "write" {
            c.ok(
                "process/write",
                json!({"processId": id, "chunk": b64(b"\x03"), "writeId": "1"}),
            )
            .await;
        } else {
            let r = c
                .ok("process/signal", json!({"processId": id, "signal": "interrupt"}))
                .await;
            assert_eq!(r["delivered"], true);
        }
        let events = c.events_until_closed(id).await;
        assert!(String::from_utf8_lossy(&output_of(&events)).contains("caught"), "{how}");
        assert_eq!(events[events.len() - 2]["params"]["exitCode"], 7, "{how}");
    }
}

#[tokio::test]
async fn signals_reach_the_process_group() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    for (signal, trap) in [
        ("terminate", "TERM"),
        ("hangup", "HUP"),
        ("user1", "USR1"),
        ("user2", "USR2"),
        ("quit", "QUIT"),
        ("interrupt", "INT"),
    ] {
        let script = format!("trap 'echo got-{trap}; exit 5' {trap}; echo ready; while :; do sleep 0.05; done");
        let id = format!("sig-{signal}");
        c.start(&id, &["bash", "-c", &script], json!({})).await;
        c.notification(|m| m["method"] == "process/output" && m["params"]["processId"] == id.as_str())
            .await;
        let r = c.ok("process/signal", json!({"processId": id, "signal": signal})).await;
        assert_eq!(r["delivered"], true);
        let events = c.events_until_closed(&id).await;
        assert!(
            String::from_utf8_lossy(&output_of(&events)).contains(&format!("got-{trap}")),
            "{signal}"
        );
        assert_eq!(events[events.len() - 2]["params"]["exitCode"], 5);
    }
    c.start("k", &["sleep", "30"], json!({})).await;
    c.ok("process/signal", json!({"processId": "k", "signal": "kill"}))
        .await;
    let events = c.events_until_closed("k").await;
    let exited = &events[events.len() - 2]["params"];
    assert_eq!(exited["exitCode"], 137);
    assert_eq!(exited["reason"], "signaled");
    assert_eq!(exited["signal"], "SIGKILL");
    let r = c
        .ok("process/signal", json!({"processId": "k", "signal": "kill"}))
        .await;
    assert_eq!(r["delivered"], false, "an exited process gets no signal");
    let r = c
        .ok("process/signal", json!({"processId": "never", "signal": "interrupt"}))
        .await;
    assert_eq!(r["delivered"], false);
}

#[tokio::test]
async fn terminate_kills_the_whole_group() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let marker = format!("EXEC_SERVER_TEST_MARK=terminate-{}", std::process::id());
    let (k, v) = marker.split_once('=').unwrap();
    c.start(
        "grp",
        &["sh", "-c", "sleep 1000 & sleep 1000 & echo up; wait"],
        json!({"env": {"PATH": "/usr/bin:/bin", k: v}}),
    )
    .await;
    c.notification(|m| m["method"] == "process/output").await;
    assert!(eventually(|| pids_with_env_marker(&marker).len() >= 3).await);
    let r = c.ok("process/terminate", json!({"processId": "grp"})).await;
    assert_eq!(r["running"], true);
    let events = c.events_until_closed("grp").await;
    assert_eq!(events[events.len() - 2]["params"]["exitCode"], 137);
    assert!(
        eventually(|| pids_with_env_marker(&marker).is_empty()).await,
        "children of the group survive"
    );
    let r = c.ok("process/terminate", json!({"processId": "grp"})).await;
    assert_eq!(r["running"], false);
}

#[tokio::test]
async fn list_shows_running_and_finished_processes() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start(
        "a",
        &["sleep", "30"],
        json!({"metadata": {"threadId": "t", "toolCallId": "c"}}),
    )
    .await;
    c.start("b", &["true"], json!({})).await;
    c.events_until_closed("b").await;
    let list = c.ok("process/list", json!({})).await;
    let procs = list["processes"].as_array().unwrap();
    let a = procs.iter().find(|p| p["processId"] == "a").expect("a listed");
    let b = procs.iter().find(|p| p["processId"] == "b").expect("b listed");
    assert_eq!(a["exited"], false);
    assert_eq!(a["metadata"]["toolCallId"], "c");
    assert!(a["pid"].as_u64().unwrap() > 1);
    assert_eq!(b["closed"], true);
    assert_eq!(b["exitCode"], 0);
    c.ok("process/terminate", json!({"processId": "a"})).await;
}

#[tokio::test]
async fn env_policy_inherits_the_server_environment() {
    let server = Server::start_with_env(&[], &[("E2E_SERVER_MARKER", "from-server"), ("SOME_TOKEN", "secret")]);
    let mut c = server.ready_client().await;
    let policy = json!({"inherit": "all", "ignoreDefaultExcludes": false, "exclude": ["NOT_*"], "set": {"SET_VAR": "s"}, "includeOnly": []});
    let script = "echo $E2E_SERVER_MARKER/${SOME_TOKEN:-none}/$SET_VAR/$OVERLAY";
    c.start(
        "env",
        &["sh", "-c", script],
        json!({"envPolicy": policy, "env": {"OVERLAY": "o"}}),
    )
    .await;
    let events = c.events_until_closed("env").await;
    assert_eq!(output_of(&events), b"from-server/none/s/o\n");
    // Without a policy the child gets exactly `env`.
    c.start("exact", &["sh", "-c", "echo ${E2E_SERVER_MARKER:-unset}"], json!({}))
        .await;
    let events = c.events_until_closed("exact").await;
    assert_eq!(output_of(&events), b"unset\n");
}

#[tokio::test]
async fn arg0_and_cwd_are_applied() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("cwd");
    let argv = ["sh", "-c", "pwd; tr '\\0' ' ' < /proc/$$/cmdline"];
    c.start("a0", &argv, json!({"arg0": "renamed-shell", "cwd": uri(dir.path())}))
        .await;
    let events = c.events_until_closed("a0").await;
    let text = String::from_utf8(output_of(&events)).unwrap();
    assert!(text.starts_with(&format!("{}\n", dir.path().display())), "{text}");
    assert!(text.contains("renamed-shell -c"), "{text}");
}

#[tokio::test]
async fn spawn_failures_leave_no_entry() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let cases = [
        (
            &["no-such-program-xyz"][..],
            json!({}),
            "No such file or directory (os error 2)",
        ),
        (
            &["true"][..],
            json!({"cwd": "file:///no/such/dir"}),
            "No such file or directory (os error 2)",
        ),
        (
            &["true"][..],
            json!({"cwd": "file:///etc/hostname"}),
            "Not a directory (os error 20)",
        ),
    ];
    for (argv, extra, prefix) in cases {
        let (code, msg) = c.err("process/start", start_params("x", argv, extra)).await;
        assert_eq!(code, -32603);
        assert!(msg.starts_with(prefix), "{msg}");
    }
    // The id is free: a later start with it works.
    c.start("x", &["true"], json!({})).await;
    c.events_until_closed("x").await;
}

#[tokio::test]
async fn duplicate_ids_are_refused_while_open_and_reusable_after() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("dup", &["sleep", "30"], json!({})).await;
    let (code, msg) = c.err("process/start", start_params("dup", &["true"], json!({}))).await;
    assert_eq!((code, msg.as_str()), (-32600, "process dup already exists"));
    c.ok("process/terminate", json!({"processId": "dup"})).await;
    c.events_until_closed("dup").await;
    c.start("dup", &["true"], json!({})).await;
    let events = c.events_until_closed("dup").await;
    assert_eq!(events[0]["params"]["seq"], 1, "a reused id starts a new seq counter");
}

#[tokio::test]
async fn timeout_and_output_limits_end_the_process_with_a_reason() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    c.start("slow", &["sleep", "100"], json!({"limits": {"timeoutMs": 300}}))
        .await;
    let events = c.events_until_closed("slow").await;
    assert_eq!(events[events.len() - 2]["params"]["reason"], "timedOut");
    c.start("yes", &["yes"], json!({"limits": {"outputBytes": 100000}}))
        .await;
    let events = c.events_until_closed("yes").await;
    assert_eq!(events[events.len() - 2]["params"]["reason"], "outputLimit");
    assert_eq!(output_of(&events).len(), 100000);
    let r = c.ok("process/read", json!({"processId": "yes"})).await;
    let kept: usize = r["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| unb64(c["chunk"].as_str().unwrap()).len())
        .sum();
    assert_eq!(kept, 100000, "output before the limit stays readable");
    assert_eq!(r["reason"], "outputLimit");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_grow_server_memory() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let before = rss_kib(server.pid());
    c.start("flood", &["head", "-c", "1073741824", "/dev/zero"], json!({}))
        .await;
    // Read nothing for a while: the child must be slowed down, not buffered.
    let mut peak = 0;
    let until = std::time::Instant::now() + Duration::from_millis(1500);
    while std::time::Instant::now() < until {
        peak = peak.max(rss_kib(server.pid()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "server memory grew by {grown_mib} MiB for a client that reads nothing"
    );
    c.ok("process/terminate", json!({"processId": "flood"})).await;
}

/// A client may pipeline start → write → closeStdin without waiting for the start's
/// answer: requests naming a process whose start is still running wait for it.
#[tokio::test]
async fn requests_pipelined_behind_a_start_wait_for_it() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    for round in 0..20 {
        let id = format!("piped{round}");
        let start = c
            .send_request("process/start", start_params(&id, &["cat"], json!({"pipeStdin": true})))
            .await;
        let write = c
            .send_request(
                "process/write",
                json!({"processId": id, "chunk": b64(b"hello"), "writeId": "w"}),
            )
            .await;
        let close = c.send_request("process/closeStdin", json!({"processId": id})).await;
        assert_eq!(c.response(start).await.expect("start")["processId"], id.as_str());
        assert_eq!(c.response(write).await.expect("write")["status"], "accepted");
        assert_eq!(c.response(close).await.expect("closeStdin")["closed"], true);
        let events = c.events_until_closed(&id).await;
        assert_eq!(output_of(&events), b"hello", "round {round}");
    }
}

/// Descriptors the server inherited from its own parent never reach its children.
#[tokio::test]
async fn children_inherit_only_their_stdio() {
    // A descriptor this test process leaks on purpose (no close-on-exec) to the server.
    let (leak_r, leak_w) = nix::unistd::pipe().expect("pipe");
    let server = Server::start(&[]);
    let server_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .expect("server fds")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let leaked = leak_w.as_raw_fd().to_string();
    assert!(
        server_fds.contains(&leaked),
        "the server did not inherit fd {leaked}: {server_fds:?}"
    );
    let mut c = server.ready_client().await;
    for tty in [false, true] {
        let id = format!("fds-{tty}");
        // `ls` lists the descriptors of `sh`, which opens none of its own.
        c.ok(
            "process/start",
            start_params(&id, &["sh", "-c", "ls /proc/$$/fd"], json!({"tty": tty})),
        )
        .await;
        let events = c.events_until_closed(&id).await;
        let text = String::from_utf8_lossy(&output_of(&events)).into_owned();
        let fds: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "tty={tty}: {text}");
    }
    drop((leak_r, leak_w));
}

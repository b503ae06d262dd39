//! The sandbox against the real binary: the applied-layer report, escape probes (each
//! asserting the denial and `sandboxDenied`), resource limits enforced by rlimits and
//! cgroups, and PTYs under `workspace-write`. Tests that need a kernel layer skip with a
//! reason locally and fail when `EXEC_SERVER_SANDBOX_REQUIRED=1` (as in CI).

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// Whether this machine has every layer; panics in CI when it does not.
fn layers_available() -> bool {
    let out = Command::new(BIN)
        .args(["sandbox-probe", "--json"])
        .output()
        .expect("probe");
    let probe: Value = serde_json::from_slice(&out.stdout).expect("probe json");
    let ok = probe["landlockAbi"].as_u64().unwrap_or(0) >= 4
        && probe["seccomp"] == true
        && probe["userNamespaces"] == true
        && probe["cgroupMemory"].is_string()
        && probe["cgroupPids"].is_string();
    if !ok {
        assert!(
            std::env::var("EXEC_SERVER_SANDBOX_REQUIRED").as_deref() != Ok("1"),
            "EXEC_SERVER_SANDBOX_REQUIRED=1 but a layer is missing: {probe}"
        );
        eprintln!("SKIPPED: sandbox layers missing on this kernel: {probe}");
    }
    ok
}

struct Dirs {
    ws: TempDir,
    outside: TempDir,
}

fn dirs() -> Dirs {
    let d = Dirs {
        ws: TempDir::new("ws"),
        outside: TempDir::new("outside"),
    };
    std::fs::write(d.outside.join("target"), "original").unwrap();
    d
}

/// `workspace-write` over `ws` only (temp directories excluded), network off.
fn ws_policy(d: &Dirs) -> Value {
    json!({"type": "workspace-write", "writableRoots": [d.ws.path()], "networkAccess": false, "excludeTmp": true})
}

async fn run(c: &mut Client, id: &str, script: &str, extra: Value) -> (i32, String, Value) {
    let mut params = start_params(id, &["bash", "-c", script], extra);
    params["env"]["PATH"] = json!("/usr/local/bin:/usr/bin:/bin");
    c.ok("process/start", params).await;
    let events = c.events_until_closed(id).await;
    let exited = events.iter().find(|e| e["method"] == "process/exited").expect("exited")["params"].clone();
    let code = exited["exitCode"].as_i64().unwrap() as i32;
    (code, String::from_utf8_lossy(&output_of(&events)).into_owned(), exited)
}

#[tokio::test]
async fn workspace_write_reports_its_layers_and_allows_the_workspace() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let params = start_params(
        "ok",
        &["bash", "-c", "echo inside > made.txt && cat made.txt"],
        json!({"cwd": uri(d.ws.path()), "sandbox": ws_policy(&d)}),
    );
    let r = c.ok("process/start", params).await;
    assert_eq!(r["sandboxType"], "linuxSeccomp");
    let layers: Vec<&str> = r["sandbox"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for layer in [
        "session",
        "pdeathsig",
        "rlimits",
        "userns",
        "netns",
        "landlock",
        "seccomp",
    ] {
        assert!(layers.contains(&layer), "{layer} missing from {layers:?}");
    }
    assert_eq!(r["sandbox"]["landlock"]["status"], "fullyEnforced");
    let events = c.events_until_closed("ok").await;
    assert_eq!(output_of(&events), b"inside\n");
    let exited = &events[events.len() - 2]["params"];
    assert_eq!(
        (exited["exitCode"].clone(), exited["sandboxDenied"].clone()),
        (json!(0), json!(false))
    );
    assert_eq!(std::fs::read_to_string(d.ws.join("made.txt")).unwrap(), "inside\n");
}

#[tokio::test]
async fn file_system_escapes_are_denied() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let out = d.outside.path().display().to_string();
    let ws = d.ws.path().display().to_string();
    let probes = [
        ("direct", format!("echo x > {out}/direct")),
        (
            "symlink",
            format!("ln -s {out} {ws}/link && echo x > {ws}/link/via-symlink"),
        ),
        (
            "dotdot",
            format!(
                "echo x > {ws}/../{}/via-dotdot",
                d.outside.path().file_name().unwrap().to_string_lossy()
            ),
        ),
        ("proc-root", format!("echo x > /proc/self/root{out}/via-proc-root")),
        ("hardlink", format!("ln {out}/target {ws}/hl && echo changed > {ws}/hl")),
        ("overwrite", format!("echo changed > {out}/target")),
        ("etc", "echo x >> /etc/hostname".to_string()),
    ];
    for (name, script) in probes {
        let extra = json!({"cwd": uri(d.ws.path()), "sandbox": ws_policy(&d)});
        let (code, text, exited) = run(&mut c, name, &script, extra).await;
        assert_ne!(code, 0, "{name} succeeded: {text}");
        assert_eq!(exited["sandboxDenied"], true, "{name}: {text}");
    }
    let leaked: Vec<_> = std::fs::read_dir(d.outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leaked,
        vec![std::ffi::OsString::from("target")],
        "nothing new outside the workspace"
    );
    assert_eq!(std::fs::read_to_string(d.outside.join("target")).unwrap(), "original");
}

#[tokio::test]
async fn network_is_off_for_tcp_and_udp_on_both_families() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = std::net::TcpListener::bind("[::1]:0").ok();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let mut probes = vec![
        format!("exec 3<>/dev/tcp/127.0.0.1/{}", v4.local_addr().unwrap().port()),
        format!("echo x > /dev/udp/127.0.0.1/{}", udp.local_addr().unwrap().port()),
    ];
    if let Some(v6) = &v6 {
        probes.push(format!("exec 3<>/dev/tcp/::1/{}", v6.local_addr().unwrap().port()));
    }
    for (i, script) in probes.iter().enumerate() {
        let (code, text, exited) = run(
            &mut c,
            &format!("net{i}"),
            script,
            json!({"cwd": uri(d.ws.path()), "sandbox": ws_policy(&d)}),
        )
        .await;
        assert_ne!(code, 0, "{script}: {text}");
        assert_eq!(exited["sandboxDenied"], true, "{script}: {text}");
    }
    // Codex's signal alone turns the network off too.
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{}", v4.local_addr().unwrap().port());
    let (code, _, _) = run(
        &mut c,
        "codex-env",
        &script,
        json!({"env": {"CODEX_SANDBOX_NETWORK_DISABLED": "1"}}),
    )
    .await;
    assert_ne!(code, 0);
    v4.set_nonblocking(true).unwrap();
    assert!(v4.accept().is_err(), "no connection reached the listener");
    let mut buf = [0u8; 8];
    assert!(udp.recv_from(&mut buf).is_err(), "no datagram arrived");
    // With network access the same connect works.
    let open = json!({"type": "workspace-write", "writableRoots": [d.ws.path()], "networkAccess": true});
    let (code, text, _) = run(
        &mut c,
        "net-on",
        &script,
        json!({"cwd": uri(d.ws.path()), "sandbox": open}),
    )
    .await;
    assert_eq!(code, 0, "{text}");
}

#[tokio::test]
async fn dangerous_system_calls_are_denied() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let sibling = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let py = |code: &str| format!("python3 -c \"import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); {code}\"");
    std::fs::create_dir_all(d.ws.join("m")).unwrap();
    let probes = [
        (
            "ptrace",
            py(&format!(
                "r = libc.ptrace(16, {}, 0, 0); e = ctypes.get_errno(); print('ptrace', r, os.strerror(e)); exit(0 if r == 0 else 1)",
                sibling.id()
            )),
        ),
        ("mount", format!("mount -t tmpfs none {}/m", d.ws.path().display())),
        (
            "io_uring",
            py(
                "p = ctypes.create_string_buffer(120); r = libc.syscall(425, 8, p); print('io_uring', r, os.strerror(ctypes.get_errno())); exit(0 if r >= 0 else 1)",
            ),
        ),
        ("rlimit", "ulimit -H -c unlimited".to_string()),
        ("unshare", "unshare -r true".to_string()),
    ];
    for (name, script) in probes {
        let (code, text, exited) = run(
            &mut c,
            name,
            &script,
            json!({"cwd": uri(d.ws.path()), "sandbox": ws_policy(&d)}),
        )
        .await;
        assert_ne!(code, 0, "{name}: {text}");
        assert!(
            text.to_lowercase().contains("not permitted") || text.to_lowercase().contains("permission denied"),
            "{name}: {text}"
        );
        assert_eq!(exited["sandboxDenied"], true, "{name}: {text}");
    }
    let mut sibling = sibling;
    let _ = sibling.kill();
    let _ = sibling.wait();
}

#[tokio::test]
async fn limits_stop_fork_bombs_memory_hogs_and_cpu_loops() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let bomb = "python3 -c \"import os, time\nn = 0\nwhile n < 200:\n    try:\n        pid = os.fork()\n    except OSError as e:\n        print('fork refused', e.errno); break\n    if pid == 0:\n        time.sleep(3); os._exit(0)\n    n += 1\nprint('forks', n)\"";
    let (code, text, _) = run(
        &mut c,
        "bomb",
        bomb,
        json!({"limits": {"pids": 20, "timeoutMs": 20000}}),
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let forks: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("forks "))
        .and_then(|n| n.trim().parse().ok())
        .expect(&text);
    assert!(forks < 20 && text.contains("fork refused 11"), "{text}");

    let hog = "python3 -c \"x = bytearray(512 * 1024 * 1024)\nprint('allocated')\"";
    let mut params = start_params(
        "hog-report",
        &["true"],
        json!({"limits": {"memoryBytes": 64 * 1024 * 1024, "pids": 50}}),
    );
    params["env"]["PATH"] = json!("/usr/bin:/bin");
    let r = c.ok("process/start", params).await;
    assert_eq!(r["sandbox"]["cgroup"]["memoryBytes"], 64 * 1024 * 1024, "{r}");
    assert!(r["sandbox"]["cgroup"]["version"].is_string(), "{r}");
    c.events_until_closed("hog-report").await;
    let (code, text, exited) = run(
        &mut c,
        "hog",
        hog,
        json!({"limits": {"memoryBytes": 64 * 1024 * 1024, "timeoutMs": 20000}}),
    )
    .await;
    assert_ne!(code, 0, "{text}");
    assert_eq!(exited["reason"], "memoryLimit", "{exited} {text}");

    let started = std::time::Instant::now();
    let (code, _, exited) = run(
        &mut c,
        "cpu",
        "while :; do :; done",
        json!({"limits": {"cpuSeconds": 1, "timeoutMs": 20000}}),
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(code == 128 + 24 || code == 128 + 9, "SIGXCPU or SIGKILL, got {code}");
    assert_eq!(exited["reason"], "signaled");
}

#[tokio::test]
async fn pty_programs_work_under_workspace_write() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let script = "stty size; tty >/dev/null && echo has-tty; read line; echo got:$line > answer.txt; cat answer.txt";
    let mut params = start_params(
        "pty",
        &["bash", "-c", script],
        json!({"tty": true, "cwd": uri(d.ws.path()), "sandbox": ws_policy(&d), "size": {"cols": 90, "rows": 30}}),
    );
    params["env"]["PATH"] = json!("/usr/bin:/bin");
    let r = c.ok("process/start", params).await;
    assert_eq!(r["sandboxType"], "linuxSeccomp");
    c.ok(
        "process/write",
        json!({"processId": "pty", "chunk": b64(b"hello\n"), "writeId": "1"}),
    )
    .await;
    let events = c.events_until_closed("pty").await;
    let text = String::from_utf8_lossy(&output_of(&events)).into_owned();
    assert!(
        text.contains("30 90") && text.contains("has-tty") && text.contains("got:hello"),
        "{text}"
    );
    assert_eq!(events[events.len() - 2]["params"]["exitCode"], 0);
}

/// The launcher's report pipe is made inheritable only while its own launcher starts:
/// ordinary children started at the same moment on another connection never get it.
#[tokio::test]
async fn launcher_report_pipes_do_not_leak_into_concurrent_children() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut boxed = server.ready_client().await;
    let mut plain = server.ready_client().await;
    let d = dirs();
    let rounds = 40;
    // The shell's own descriptors (bash keeps a few), taken while nothing else starts.
    let listing = "ls /proc/$$/fd";
    let (_, alone, _) = run(&mut plain, "alone", listing, json!({})).await;
    let alone = alone.split_whitespace().collect::<Vec<_>>().join(" ");
    let sandboxed = async {
        for i in 0..rounds {
            let (code, _, _) = run(&mut boxed, &format!("sb{i}"), "true", json!({"sandbox": ws_policy(&d)})).await;
            assert_eq!(code, 0);
        }
    };
    let ordinary = async {
        let mut seen = Vec::new();
        for i in 0..rounds {
            let (code, out, _) = run(&mut plain, &format!("p{i}"), listing, json!({})).await;
            assert_eq!(code, 0, "{out}");
            seen.push(out.split_whitespace().map(str::to_string).collect::<Vec<_>>().join(" "));
        }
        seen
    };
    let ((), seen) = tokio::join!(sandboxed, ordinary);
    for fds in &seen {
        assert_eq!(fds, &alone, "an ordinary child inherited extra descriptors: {seen:?}");
    }
}

#[tokio::test]
async fn read_only_policy_and_bad_policies() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    let (code, text, exited) = run(
        &mut c,
        "ro",
        &format!("cat /etc/hostname > /dev/null && echo x > {}/f", d.ws.path().display()),
        json!({"cwd": uri(d.ws.path()), "sandbox": {"type": "read-only"}}),
    )
    .await;
    assert_ne!(code, 0, "{text}");
    assert_eq!(exited["sandboxDenied"], true);
    let (code, msg) = c
        .err(
            "process/start",
            start_params("bad", &["true"], json!({"sandbox": {"type": "nonsense"}})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("unsupported sandbox policy"), "{msg}");
}

/// Calls `method` and returns whether it succeeded, plus the error.
async fn attempt(c: &mut Client, method: &str, params: Value) -> Result<Value, (i64, String)> {
    c.call(method, params).await
}

#[tokio::test]
async fn file_methods_obey_each_policy() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    std::fs::create_dir_all(d.ws.join("dir")).unwrap();
    std::fs::write(d.ws.join("dir/in.txt"), "in").unwrap();
    let policies = [
        ("full", json!({"type": "danger-full-access"}), true, true),
        ("ws", ws_policy(&d), true, false),
        ("ro", json!({"type": "read-only"}), false, false),
    ];
    for (name, policy, write_inside, write_outside) in policies {
        let sb = |mut p: Value| {
            p["sandbox"] = policy.clone();
            p
        };
        let inside = d.ws.join(format!("{name}.txt"));
        let outside = d.outside.join(format!("{name}.txt"));
        // Reads work everywhere.
        let r = attempt(
            &mut c,
            "fs/readFile",
            sb(json!({"path": uri(&d.outside.join("target"))})),
        )
        .await
        .expect(name);
        assert_eq!(unb64(r["dataBase64"].as_str().unwrap()), b"original");
        attempt(&mut c, "fs/getMetadata", sb(json!({"path": uri(&d.ws.join("dir"))})))
            .await
            .expect(name);
        attempt(&mut c, "fs/readDirectory", sb(json!({"path": uri(d.ws.path())})))
            .await
            .expect(name);
        attempt(
            &mut c,
            "fs/canonicalize",
            sb(json!({"path": uri(&d.ws.join("dir/../dir"))})),
        )
        .await
        .expect(name);
        let w = attempt(&mut c, "fs/walk", sb(json!({"path": uri(d.ws.path())})))
            .await
            .expect(name);
        assert!(!w["entries"].as_array().unwrap().is_empty());
        // Writes follow the policy, through every writing method.
        let data = json!({"dataBase64": b64(b"x")});
        let mut wf = sb(json!({"path": uri(&inside)}));
        wf["dataBase64"] = data["dataBase64"].clone();
        assert_eq!(
            attempt(&mut c, "fs/writeFile", wf).await.is_ok(),
            write_inside,
            "{name} writeFile inside"
        );
        let mut wf = sb(json!({"path": uri(&outside)}));
        wf["dataBase64"] = data["dataBase64"].clone();
        let r = attempt(&mut c, "fs/writeFile", wf).await;
        assert_eq!(r.is_ok(), write_outside, "{name} writeFile outside: {r:?}");
        if let Err((code, msg)) = r {
            assert_eq!(
                (code, msg.as_str()),
                (-32600, "Permission denied (os error 13)"),
                "{name}"
            );
        }
        let made = attempt(
            &mut c,
            "fs/createDirectory",
            sb(json!({"path": uri(&d.outside.join(format!("{name}-dir/sub")))})),
        )
        .await;
        assert_eq!(made.is_ok(), write_outside, "{name} createDirectory outside");
        let copied = attempt(&mut c, "fs/copy", sb(json!({"sourcePath": uri(&d.ws.join("dir")), "destinationPath": uri(&d.outside.join(format!("{name}-copy"))), "recursive": true}))).await;
        assert_eq!(copied.is_ok(), write_outside, "{name} copy outside");
        let copied = attempt(&mut c, "fs/copy", sb(json!({"sourcePath": uri(&d.ws.join("dir")), "destinationPath": uri(&d.ws.join(format!("{name}-copy"))), "recursive": true}))).await;
        assert_eq!(copied.is_ok(), write_inside, "{name} copy inside");
        let opened = attempt(&mut c, "fs/open", sb(json!({"handleId": format!("{name}-w"), "path": uri(&d.ws.join(format!("{name}-block"))), "mode": "replace"}))).await;
        assert_eq!(opened.is_ok(), write_inside, "{name} open inside");
        if opened.is_ok() {
            c.ok(
                "fs/writeBlock",
                json!({"handleId": format!("{name}-w"), "offset": 0, "chunk": b64(b"blocks")}),
            )
            .await;
            c.ok("fs/close", json!({"handleId": format!("{name}-w")})).await;
            assert_eq!(std::fs::read(d.ws.join(format!("{name}-block"))).unwrap(), b"blocks");
        }
        let opened = attempt(
            &mut c,
            "fs/open",
            sb(json!({"handleId": format!("{name}-r"), "path": uri(&d.outside.join("target")), "mode": "read"})),
        )
        .await;
        assert!(opened.is_ok(), "{name} open for reading works anywhere");
        let r = c
            .ok(
                "fs/readBlock",
                json!({"handleId": format!("{name}-r"), "offset": 0, "len": 100}),
            )
            .await;
        assert_eq!(unb64(r["chunk"].as_str().unwrap()), b"original");
        let removed = attempt(
            &mut c,
            "fs/remove",
            sb(json!({"path": uri(&d.outside.join("target")), "recursive": false, "force": false})),
        )
        .await;
        assert_eq!(removed.is_ok(), write_outside, "{name} remove outside");
        if removed.is_ok() {
            std::fs::write(d.outside.join("target"), "original").unwrap();
        }
    }
}

#[tokio::test]
async fn file_method_escapes_are_denied() {
    if !layers_available() {
        return;
    }
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let d = dirs();
    std::os::unix::fs::symlink(d.outside.path(), d.ws.join("link")).unwrap();
    let out_name = d.outside.path().file_name().unwrap().to_string_lossy().into_owned();
    let targets = [
        d.ws.join("link/via-symlink"),
        d.ws.join(format!("../{out_name}/via-dotdot")),
        std::path::PathBuf::from(format!("/proc/self/root{}/via-proc-root", d.outside.path().display())),
        d.outside.join("target"),
    ];
    for target in targets {
        let params = json!({"path": format!("file://{}", target.display()), "dataBase64": b64(b"escaped"), "sandbox": ws_policy(&d)});
        let (code, msg) = c.err("fs/writeFile", params).await;
        assert_eq!(
            (code, msg.as_str()),
            (-32600, "Permission denied (os error 13)"),
            "{}",
            target.display()
        );
        let params =
            json!({"path": format!("file://{}", target.display()), "recursive": true, "sandbox": ws_policy(&d)});
        assert!(
            c.call("fs/createDirectory", params).await.is_err(),
            "{}",
            target.display()
        );
    }
    // A rename into the workspace cannot move outside files either.
    let params = json!({"sourcePath": uri(&d.outside.join("target")), "destinationPath": uri(&d.ws.join("stolen")), "recursive": false, "sandbox": ws_policy(&d)});
    c.ok("fs/copy", params).await; // copying (reading) is allowed: reads are not restricted
    let params = json!({"path": uri(&d.ws.join("link")), "recursive": true, "force": true, "sandbox": ws_policy(&d)});
    c.ok("fs/remove", params).await; // removes the link, never what it points to
    assert_eq!(std::fs::read_to_string(d.outside.join("target")).unwrap(), "original");
    let leaked: Vec<_> = std::fs::read_dir(d.outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leaked, vec![std::ffi::OsString::from("target")]);
}

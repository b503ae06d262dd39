//! Credential bindings through the real binary: scenarios 33–35 (external tokens) and
//! 43–50 (the broker, cookies, sandboxes, logs) of `shared/reference/credentials.md`,
//! each test named after its number, against a fake authority and protected resource over
//! HTTPS on 127.0.0.1.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::authority::{ACCOUNT, Authority, jwt};
use common::upstream::{Reply, Upstream};
use common::*;
use serde_json::{Value, json};

struct Setup {
    auth: Authority,
    server: Server,
    dir: TempDir,
    store_dir: PathBuf,
}

impl Setup {
    fn store(&self) -> PathBuf {
        self.store_dir.join("auth.json")
    }
}

/// A server with binding `svc` (managed) for the fake's origin, plus any `extra` TOML.
async fn setup(access_accepted: bool, extra: &str, trace_log: bool) -> Setup {
    let auth = Authority::start().await;
    let dir = TempDir::new("cred");
    let store_dir = dir.join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    auth.write_store(&store_dir.join("auth.json"), &jwt("T0", 3600), access_accepted);
    std::fs::write(dir.join("ca.pem"), &auth.ca_pem).unwrap();
    let config = format!(
        r#"
[[binding]]
name = "svc"
origins = ["{origin}"]
account_header = "chatgpt-account-id"
store = "{store}"
authority_url = "{origin}/oauth/token"
client_id = "cid"
{extra}
"#,
        origin = auth.origin(),
        store = store_dir.join("auth.json").display(),
    );
    std::fs::write(dir.join("creds.toml"), config).unwrap();
    let ca = dir.join("ca.pem");
    let env = [("EXEC_SERVER_CA_CERTIFICATE", ca.to_str().unwrap())];
    let args = [
        "--credentials-config",
        dir.join("creds.toml").to_str().unwrap().to_string().leak(),
    ];
    let log = dir.join("server.log");
    let server = Server::start_logged(&args, &env, trace_log.then_some(log.as_path()));
    Setup {
        auth,
        server,
        dir,
        store_dir,
    }
}

fn bound(url: &str, extra: Value) -> Value {
    let mut p = json!({"method": "GET", "url": url, "requestId": "r", "credential": "svc", "timeoutMs": 10000});
    if let (Some(b), Some(e)) = (p.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    p
}

/// Every message text the client received, to look for leaked tokens.
fn leaks(texts: &[String], secrets: &[String]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| texts.iter().any(|t| t.contains(s.as_str())))
        .cloned()
        .collect()
}

async fn call_raw(c: &mut Client, method: &str, params: Value) -> Vec<Value> {
    let id = c.send_request(method, params).await;
    let mut got = Vec::new();
    loop {
        let m = c.recv().await;
        let done = m["id"] == id;
        got.push(m);
        if done {
            return got;
        }
    }
}

#[tokio::test]
async fn scenario_43_the_injected_bearer_never_comes_back() {
    let s = setup(true, "", false).await;
    let mut c = s.server.ready_client().await;
    let mut texts = Vec::new();
    for m in call_raw(
        &mut c,
        "http/request",
        bound(&format!("{}/resource", s.auth.origin()), json!({})),
    )
    .await
    {
        texts.push(m.to_string());
    }
    let r: Value = serde_json::from_str(texts.last().unwrap()).unwrap();
    assert_eq!(r["result"]["status"], 200, "{r}");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(s.store()).unwrap()).unwrap();
    let seen = s.auth.state.seen.lock().unwrap().clone();
    let expected = format!("Bearer {}", stored["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(
        seen[0].1.as_deref(),
        Some(expected.as_str()),
        "the resource got the injected bearer"
    );
    // Streamed too: no frame carries the token.
    let mut p = bound(
        &format!("{}/resource", s.auth.origin()),
        json!({"streamResponse": true, "requestId": "s"}),
    );
    p["requestId"] = json!("s");
    for m in call_raw(&mut c, "http/request", p).await {
        texts.push(m.to_string());
    }
    let done = c
        .notification(|m| m["method"] == "http/request/bodyDelta" && m["params"]["done"] == true)
        .await;
    texts.push(done.to_string());
    assert!(leaks(&texts, &s.auth.secrets()).is_empty());
}

#[tokio::test]
async fn scenario_44_client_auth_headers_are_stripped_or_refused() {
    let s = setup(true, "", false).await;
    let mut c = s.server.ready_client().await;
    let headers =
        json!([{"name": "Authorization", "value": "Bearer client-token"}, {"name": "Cookie", "value": "a=1"}]);
    let r = c
        .ok(
            "http/request",
            bound(&format!("{}/resource", s.auth.origin()), json!({"headers": headers})),
        )
        .await;
    assert_eq!(r["status"], 200);
    let seen = s.auth.state.seen.lock().unwrap().clone();
    let (_, auth, cookie) = &seen[0];
    assert!(auth.as_deref().is_some_and(|a| !a.contains("client-token")), "{auth:?}");
    assert!(cookie.is_none());
    // A binding that refuses them.
    let s2 = setup(true, "client_headers = \"reject\"", false).await;
    let mut c = s2.server.ready_client().await;
    let (code, msg) = c
        .err(
            "http/request",
            bound(&format!("{}/resource", s2.auth.origin()), json!({"headers": headers})),
        )
        .await;
    assert_eq!(code, -32602);
    assert!(msg.contains("must not carry Authorization"), "{msg}");
    assert!(s2.auth.state.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn scenario_45_credentials_never_cross_origins_on_redirect() {
    let s = setup(true, "", false).await;
    let other = Upstream::start(|_| Reply::ok(b"elsewhere")).await;
    let mut c = s.server.ready_client().await;
    let target = other.url("/landing");
    let p = bound(
        &format!("{}/redirect-away", s.auth.origin()),
        json!({"method": "POST", "bodyBase64": b64(target.as_bytes())}),
    );
    let r = c.ok("http/request", p).await;
    assert_eq!(r["status"], 200, "{r}");
    let hop = &other.requests()[0];
    assert!(hop.all("authorization").is_empty(), "{hop:?}");
    assert!(hop.all("cookie").is_empty(), "{hop:?}");
    assert!(hop.all("chatgpt-account-id").is_empty());
    assert!(
        s.auth.state.seen.lock().unwrap()[0].1.is_some(),
        "the bound origin got the credential"
    );
}

#[tokio::test]
async fn scenario_46_one_refresh_one_replay_then_the_401_goes_back() {
    let s = setup(false, "", false).await; // the stored token is stale for the resource
    let mut c = s.server.ready_client().await;
    let url = format!("{}/resource", s.auth.origin());
    let r = c
        .ok(
            "http/request",
            bound(&url, json!({"method": "POST", "bodyBase64": b64(b"payload")})),
        )
        .await;
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(s.auth.refreshes(), 1);
    let seen = s.auth.state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one replay");
    assert_ne!(seen[0].1, seen[1].1, "the replay carries the new token");
    // Now the resource rejects every token: one refresh, one replay, one adopt-only
    // check, then the 401 comes back.
    s.auth.state.reject_all.store(true, Ordering::SeqCst);
    let r = c.ok("http/request", bound(&url, json!({}))).await;
    assert_eq!(r["status"], 401);
    assert_eq!(s.auth.refreshes(), 2, "a single refresh for this request");
}

#[tokio::test]
async fn scenario_47_a_recovery_past_the_deadline_is_not_replayed() {
    let s = setup(false, "", false).await;
    s.auth.state.delay_ms.store(1500, Ordering::SeqCst);
    let mut c = s.server.ready_client().await;
    let url = format!("{}/resource", s.auth.origin());
    let r = c.ok("http/request", bound(&url, json!({"timeoutMs": 400}))).await;
    assert_eq!(
        (r["status"].clone(), r["retryRequired"].clone()),
        (json!(401), json!(true)),
        "{r}"
    );
    assert_eq!(s.auth.state.seen.lock().unwrap().len(), 1, "no replay");
    // The refresh finishes on its own; the next request carries the new token.
    let store = s.store();
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&store).unwrap().contains("rt-1") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.auth.state.delay_ms.store(0, Ordering::SeqCst);
    let r = c.ok("http/request", bound(&url, json!({}))).await;
    assert_eq!(r["status"], 200);
    assert_eq!(s.auth.refreshes(), 1);
}

#[tokio::test]
async fn scenario_48_authority_cookies_never_enter_the_jar() {
    let s = setup(false, "", false).await;
    let mut c = s.server.ready_client().await;
    let url = format!("{}/resource", s.auth.origin());
    c.ok("http/request", bound(&url, json!({}))).await; // 401, refresh (the authority sets cookies), replay
    c.ok("http/request", bound(&url, json!({}))).await;
    let seen = s.auth.state.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, _, cookie)| cookie.is_none()), "{seen:?}");
    assert_eq!(s.auth.refreshes(), 1);
}

#[tokio::test]
async fn scenario_49_sandboxed_processes_never_see_refresh_tokens() {
    let s = setup(false, "", false).await;
    let mut c = s.server.ready_client().await;
    c.ok(
        "http/request",
        bound(&format!("{}/resource", s.auth.origin()), json!({})),
    )
    .await; // refreshes
    let store = s.store();
    let ws = TempDir::new("cred-ws");
    let script = format!(
        "env; echo ---; cat {} 2>&1; ls -la {} 2>&1; cat /proc/self/cmdline",
        store.display(),
        s.store_dir.display()
    );
    let mut params = start_params(
        "sb",
        &["bash", "-c", &script],
        json!({"cwd": uri(ws.path()), "sandbox": {"type": "workspace-write", "writableRoots": [], "networkAccess": false}}),
    );
    params["envPolicy"] = json!({"inherit": "all"});
    c.ok("process/start", params).await;
    let out = String::from_utf8_lossy(&output_of(&c.events_until_closed("sb").await)).into_owned();
    assert!(out.contains("No such file or directory"), "{out}");
    let refresh_tokens: Vec<String> = s.auth.secrets().into_iter().filter(|t| t.starts_with("rt-")).collect();
    for rt in &refresh_tokens {
        assert!(
            !out.contains(&format!("\"{rt}\"")) && !out.contains(&format!("={rt}")),
            "{rt} leaked: {out}"
        );
    }
    assert!(
        std::fs::read_to_string(&store).unwrap().contains("rt-1"),
        "the store itself is intact"
    );
}

#[tokio::test]
async fn scenario_50_logs_carry_fingerprints_never_tokens() {
    let s = setup(false, "", true).await;
    let mut c = s.server.ready_client().await;
    let url = format!("{}/resource", s.auth.origin());
    c.ok("http/request", bound(&url, json!({}))).await;
    s.auth.state.reject_all.store(true, Ordering::SeqCst);
    c.ok(
        "http/request",
        bound(&url, json!({"streamResponse": true, "requestId": "x"})),
    )
    .await;
    drop(c);
    let log = std::fs::read_to_string(s.dir.join("server.log")).unwrap();
    assert!(log.contains("bound request got 401"), "trace log was captured");
    let leaked: Vec<String> = s
        .auth
        .secrets()
        .into_iter()
        .filter(|t| log.contains(t.as_str()))
        .collect();
    assert!(leaked.is_empty(), "tokens in the log: {leaked:?}");
    assert!(
        log.contains("token=") || log.contains("refresh="),
        "fingerprints are logged"
    );
}

/// The client side of external mode: answers each `account/chatgptAuthTokens/refresh`
/// with the next token, records the requests, and returns the final response.
async fn external_call(c: &mut Client, params: Value, answers: &mut Vec<Value>, asked: &mut Vec<Value>) -> Value {
    let id = c.send_request("http/request", params).await;
    loop {
        let m = c.recv().await;
        if m["id"] == id {
            return m;
        }
        if m["method"] == "account/chatgptAuthTokens/refresh" {
            asked.push(m.clone());
            if !answers.is_empty() {
                let answer = answers.remove(0);
                c.send_text(json!({"id": m["id"], "result": answer}).to_string()).await;
            }
        } else if m["method"] == "$/cancelRequest" {
            asked.push(m.clone());
        }
    }
}

async fn external_setup(extra: &str) -> Setup {
    let s = setup(false, "", false).await;
    let dir = &s.dir;
    let config = format!(
        "[[binding]]\nname = \"svc\"\norigins = [\"{}\"]\nmode = \"external\"\nallowed_accounts = [\"{ACCOUNT}\"]\n{extra}\n",
        s.auth.origin()
    );
    std::fs::write(dir.join("ext.toml"), config).unwrap();
    let ca = dir.join("ca.pem");
    let args = [
        "--credentials-config",
        dir.join("ext.toml").to_str().unwrap().to_string().leak(),
    ];
    let server = Server::start_with_env(&args, &[("EXEC_SERVER_CA_CERTIFICATE", ca.to_str().unwrap())]);
    Setup { server, ..s }
}

#[tokio::test]
async fn scenario_33_external_tokens_come_from_the_client() {
    let s = external_setup("").await;
    let good = jwt("EXT-2", 3600);
    s.auth.state.accepted.lock().unwrap().insert(good.clone());
    let before = std::fs::read_to_string(s.store()).unwrap();
    let mut c = s.server.ready_client().await;
    let mut answers = vec![
        json!({"accessToken": jwt("EXT-1", 3600), "chatgptAccountId": ACCOUNT}),
        json!({"accessToken": good, "chatgptAccountId": ACCOUNT, "chatgptPlanType": "plus"}),
    ];
    let mut asked = Vec::new();
    let r = external_call(
        &mut c,
        bound(&format!("{}/resource", s.auth.origin()), json!({})),
        &mut answers,
        &mut asked,
    )
    .await;
    assert_eq!(r["result"]["status"], 200, "{r}");
    assert_eq!(asked.len(), 2);
    assert_eq!(
        asked[1]["params"],
        json!({"reason": "unauthorized", "previousAccountId": ACCOUNT})
    );
    assert_eq!(
        s.auth.refreshes(),
        0,
        "the server never refreshes external tokens itself"
    );
    assert_eq!(
        std::fs::read_to_string(s.store()).unwrap(),
        before,
        "nothing written to disk"
    );
}

#[tokio::test]
async fn scenario_34_an_unanswered_refresh_times_out_and_is_cancelled() {
    let s = external_setup("external_timeout_ms = 300").await;
    let mut c = s.server.ready_client().await;
    let mut answers = Vec::new();
    let mut asked = Vec::new();
    let started = std::time::Instant::now();
    let r = external_call(
        &mut c,
        bound(&format!("{}/resource", s.auth.origin()), json!({})),
        &mut answers,
        &mut asked,
    )
    .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("auth refresh request timed out"),
        "{r}"
    );
    let request_id = asked[0]["id"].clone();
    assert!(
        asked
            .iter()
            .any(|m| m["method"] == "$/cancelRequest" && m["params"]["id"] == request_id),
        "{asked:?}"
    );
    // Not poisoned: the next request asks again.
    let mut answers = vec![json!({"accessToken": jwt("EXT-9", 3600), "chatgptAccountId": ACCOUNT})];
    let mut asked = Vec::new();
    external_call(
        &mut c,
        bound(&format!("{}/resource", s.auth.origin()), json!({})),
        &mut answers,
        &mut asked,
    )
    .await;
    assert!(!asked.is_empty());
}

#[tokio::test]
async fn scenario_35_tokens_for_another_account_are_refused() {
    let s = external_setup("").await;
    let good = jwt("EXT-OK", 3600);
    s.auth.state.accepted.lock().unwrap().insert(good.clone());
    let mut c = s.server.ready_client().await;
    let url = format!("{}/resource", s.auth.origin());
    let mut answers = vec![json!({"accessToken": good, "chatgptAccountId": ACCOUNT})];
    let mut asked = Vec::new();
    let r = external_call(&mut c, bound(&url, json!({})), &mut answers, &mut asked).await;
    assert_eq!(r["result"]["status"], 200);
    s.auth.state.reject_all.store(true, Ordering::SeqCst);
    let mut answers = vec![json!({"accessToken": jwt("EXT-OTHER", 3600), "chatgptAccountId": "someone-else"})];
    let r = external_call(&mut c, bound(&url, json!({})), &mut answers, &mut asked).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not in the allowed list"),
        "{r}"
    );
    // The old token is still the one in use.
    s.auth.state.reject_all.store(false, Ordering::SeqCst);
    let mut none = Vec::new();
    let before = asked.len();
    let r = external_call(&mut c, bound(&url, json!({})), &mut none, &mut asked).await;
    assert_eq!(r["result"]["status"], 200);
    assert_eq!(asked.len(), before, "no new refresh was needed");
}

/// `exec-server credentials refresh` for binding `svc` of `s`, as a child process.
fn refresh_child(s: &Setup, tasks: usize, log: &str) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args([
            "credentials",
            "refresh",
            "--binding",
            "svc",
            "--tasks",
            &tasks.to_string(),
            "--config",
        ])
        .arg(s.dir.join("creds.toml"))
        .env("EXEC_SERVER_CA_CERTIFICATE", s.dir.join("ca.pem"))
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("child")
}

/// Stores an expired access token with refresh token rt-0.
fn store_expired(s: &Setup) {
    let expired = jwt("T-expired", -10);
    let doc =
        json!({"tokens": {"access_token": expired, "refresh_token": "rt-0", "account_id": ACCOUNT}, "generation": 3});
    std::fs::write(s.store(), doc.to_string()).unwrap();
}

#[tokio::test]
async fn scenario_22_two_processes_refresh_once() {
    let s = setup(false, "", false).await;
    // Expired on disk: both processes must refresh, and only one may reach the authority.
    store_expired(&s);
    s.auth.state.delay_ms.store(300, Ordering::SeqCst);
    let spawn = || refresh_child(&s, 1, "credentials::lock=info,warn");
    let (a, b) = (spawn(), spawn());
    let (a, b) = tokio::join!(a.wait_with_output(), b.wait_with_output());
    let (a, b) = (a.unwrap(), b.unwrap());
    let text = |o: &std::process::Output| {
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let ((out_a, err_a), (out_b, err_b)) = (text(&a), text(&b));
    assert!(a.status.success() && b.status.success(), "{err_a}\n{err_b}");
    assert_eq!(s.auth.refreshes(), 1, "exactly one authority call");
    let token = |out: &str| {
        out.split_whitespace()
            .find(|w| w.starts_with("token="))
            .map(str::to_string)
    };
    assert_eq!(token(&out_a), token(&out_b), "both end with the same token");
    let stored = std::fs::read_to_string(s.store()).unwrap();
    assert!(stored.contains("rt-1"), "{stored}");
    assert!(
        err_a.contains("waiting for the credential lock") || err_b.contains("waiting for the credential lock"),
        "{err_a}\n{err_b}"
    );
}

#[tokio::test]
async fn stress_eight_processes_fifty_tasks_one_refresh_no_reuse() {
    let s = setup(false, "", false).await;
    store_expired(&s);
    s.auth.state.delay_ms.store(200, Ordering::SeqCst);
    let children: Vec<_> = (0..8).map(|_| refresh_child(&s, 50, "warn")).collect();
    let mut tokens = std::collections::HashSet::new();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("already used"), "refresh_token_reused: {stderr}");
        tokens.extend(
            stdout
                .split_whitespace()
                .filter(|w| w.starts_with("token="))
                .map(str::to_string),
        );
    }
    assert_eq!(s.auth.refreshes(), 1, "one refresh for one expiry");
    assert_eq!(tokens.len(), 1, "every process ends with the same token");
}

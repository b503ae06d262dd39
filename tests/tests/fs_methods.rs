//! The `fs/*` methods on real files: the Codex apply_patch sequence (writeFile into a
//! missing directory → -32004 → createDirectory → writeFile), metadata, canonicalize,
//! directory listing, walk, remove, copy, block I/O, the whole-file cap, and
//! `fs/watchMissing` with its `fs/missingChanged` notification.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn write_read_and_the_apply_patch_directory_dance() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("fs");
    let target = dir.join("sub/deep/extra.txt");
    let (code, _) = c
        .err(
            "fs/writeFile",
            json!({"path": uri(&target), "dataBase64": b64(b"x"), "sandbox": null}),
        )
        .await;
    assert_eq!(code, -32004, "Codex creates the parent only after -32004");
    c.ok(
        "fs/createDirectory",
        json!({"path": uri(&dir.join("sub/deep")), "recursive": true}),
    )
    .await;
    c.ok("fs/createDirectory", json!({"path": uri(&dir.join("sub/deep"))}))
        .await; // existing: fine when recursive
    c.ok(
        "fs/writeFile",
        json!({"path": uri(&target), "dataBase64": b64(b"hello\x00world")}),
    )
    .await;
    let r = c.ok("fs/readFile", json!({"path": uri(&target)})).await;
    assert_eq!(unb64(r["dataBase64"].as_str().unwrap()), b"hello\x00world");
    assert_eq!(std::fs::read(&target).unwrap(), b"hello\x00world");
}

#[tokio::test]
async fn metadata_canonicalize_and_listing() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("meta");
    std::fs::write(dir.join("f.txt"), "12345").unwrap();
    std::fs::create_dir(dir.join("d")).unwrap();
    std::os::unix::fs::symlink(dir.join("f.txt"), dir.join("link")).unwrap();
    std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).unwrap();
    let m = c.ok("fs/getMetadata", json!({"path": uri(&dir.join("f.txt"))})).await;
    assert_eq!(
        (
            m["isFile"].clone(),
            m["isDirectory"].clone(),
            m["isSymlink"].clone(),
            m["size"].clone()
        ),
        (json!(true), json!(false), json!(false), json!(5))
    );
    assert!(m["modifiedAtMs"].as_u64().unwrap() > 1_600_000_000_000);
    let m = c.ok("fs/getMetadata", json!({"path": uri(&dir.join("link"))})).await;
    assert_eq!(
        (m["isFile"].clone(), m["isSymlink"].clone()),
        (json!(true), json!(true))
    );
    let m = c
        .ok("fs/getMetadata", json!({"path": uri(&dir.join("dangling"))}))
        .await;
    assert_eq!(
        (m["isFile"].clone(), m["isSymlink"].clone()),
        (json!(false), json!(true))
    );
    let m = c.ok("fs/getMetadata", json!({"path": uri(&dir.join("d"))})).await;
    assert_eq!(m["isDirectory"], true);
    let r = c
        .ok("fs/canonicalize", json!({"path": uri(&dir.join("d/../link"))}))
        .await;
    assert_eq!(r["path"], uri(&dir.join("f.txt")));
    let r = c.ok("fs/readDirectory", json!({"path": uri(dir.path())})).await;
    let mut names: Vec<(String, bool, bool)> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["fileName"].as_str().unwrap().to_string(),
                e["isDirectory"].as_bool().unwrap(),
                e["isFile"].as_bool().unwrap(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("d".into(), true, false),
            ("dangling".into(), false, false),
            ("f.txt".into(), false, true),
            ("link".into(), false, true)
        ]
    );
}

#[tokio::test]
async fn walk_is_breadth_first_and_bounded() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("walk");
    std::fs::create_dir_all(dir.join("skills/demo/inner")).unwrap();
    std::fs::create_dir_all(dir.join("skills/.hidden")).unwrap();
    std::fs::write(dir.join("skills/demo/SKILL.md"), "x").unwrap();
    let root = dir.join("skills");
    let opts = json!({"maxDepth": 6, "maxDirectories": 2000, "maxEntries": 20000, "followDirectorySymlinks": true, "pruneHiddenDirectories": true});
    let r = c
        .ok("fs/walk", json!({"path": uri(&root), "options": opts, "sandbox": null}))
        .await;
    let got: Vec<(String, String)> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (uri(&root.join("demo")), "directory".to_string()),
            (uri(&root.join("demo/SKILL.md")), "file".to_string()),
            (uri(&root.join("demo/inner")), "directory".to_string()),
        ]
    );
    assert_eq!(r["truncated"], false);
    let r = c
        .ok("fs/walk", json!({"path": uri(&root), "options": {"maxEntries": 1}}))
        .await;
    assert_eq!(r["truncated"], true);
    assert_eq!(r["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn remove_and_copy() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("rmcp");
    std::fs::create_dir_all(dir.join("tree/a")).unwrap();
    std::fs::write(dir.join("tree/a/f"), "data").unwrap();
    std::os::unix::fs::symlink("a/f", dir.join("tree/l")).unwrap();
    c.ok(
        "fs/copy",
        json!({"sourcePath": uri(&dir.join("tree")), "destinationPath": uri(&dir.join("copy")), "recursive": true}),
    )
    .await;
    assert_eq!(std::fs::read_to_string(dir.join("copy/a/f")).unwrap(), "data");
    assert_eq!(
        std::fs::read_link(dir.join("copy/l")).unwrap(),
        std::path::PathBuf::from("a/f")
    );
    c.ok("fs/copy", json!({"sourcePath": uri(&dir.join("tree/a/f")), "destinationPath": uri(&dir.join("single")), "recursive": false})).await;
    assert_eq!(std::fs::read_to_string(dir.join("single")).unwrap(), "data");
    let (code, _) = c.err("fs/copy", json!({"sourcePath": uri(&dir.join("tree")), "destinationPath": uri(&dir.join("tree/inside")), "recursive": true})).await;
    assert_eq!(code, -32600);
    c.ok(
        "fs/remove",
        json!({"path": uri(&dir.join("single")), "recursive": false, "force": false}),
    )
    .await;
    assert!(!dir.join("single").exists());
    c.ok("fs/remove", json!({"path": uri(&dir.join("copy"))})).await;
    assert!(!dir.join("copy").exists());
    // Removing a symlink removes the link, not its target.
    c.ok("fs/remove", json!({"path": uri(&dir.join("tree/l"))})).await;
    assert!(dir.join("tree/a/f").exists());
}

#[tokio::test]
async fn block_io_and_the_whole_file_cap() {
    let server = Server::start(&["--fs-max-file-bytes", "1000"]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("blocks");
    let path = dir.join("big.bin");
    c.ok(
        "fs/open",
        json!({"handleId": "w", "path": uri(&path), "mode": "replace"}),
    )
    .await;
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    for (i, block) in data.chunks(1500).enumerate() {
        c.ok(
            "fs/writeBlock",
            json!({"handleId": "w", "offset": i * 1500, "chunk": b64(block)}),
        )
        .await;
    }
    c.ok("fs/close", json!({"handleId": "w"})).await;
    c.ok("fs/close", json!({"handleId": "w"})).await; // idempotent
    let (code, msg) = c.err("fs/readFile", json!({"path": uri(&path)})).await;
    assert_eq!(code, -32600);
    assert!(msg.contains("fs/open") && msg.contains("fs/readBlock"), "{msg}");
    c.ok("fs/open", json!({"handleId": "r", "path": uri(&path), "mode": "read"}))
        .await;
    let mut back = Vec::new();
    loop {
        let r = c
            .ok(
                "fs/readBlock",
                json!({"handleId": "r", "offset": back.len(), "len": 1024}),
            )
            .await;
        back.extend(unb64(r["chunk"].as_str().unwrap()));
        if r["eof"] == true {
            break;
        }
    }
    assert_eq!(back, data);
    let r = c
        .ok("fs/readBlock", json!({"handleId": "r", "offset": 999999, "len": 10}))
        .await;
    assert_eq!((r["chunk"].clone(), r["eof"].clone()), (json!(""), json!(true)));
    let (code, _) = c
        .err("fs/writeFile", json!({"path": uri(&path), "dataBase64": b64(&data)}))
        .await;
    assert_eq!(code, -32600);
}

#[tokio::test]
async fn watch_missing_reports_when_a_path_appears() {
    let server = Server::start(&[]);
    let mut c = server.ready_client().await;
    let dir = TempDir::new("watch");
    let missing = [uri(&dir.join(".git")), uri(&dir.join("AGENTS.md"))];
    let r = c
        .ok(
            "fs/watchMissing",
            json!({"watchId": 7, "missing": missing, "present": null}),
        )
        .await;
    assert_eq!(r, json!({"watching": true}));
    std::fs::write(dir.join("AGENTS.md"), "hi").unwrap();
    let n = c.notification(|m| m["method"] == "fs/missingChanged").await;
    assert_eq!(n["params"], json!({"watchId": 7}));
}

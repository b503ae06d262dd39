//! File operations under a sandbox policy. They run in a helper process (`exec-server
//! sandbox-fs`) that first applies the policy's layers (Landlock's read-only `/` with the
//! writable roots, namespaces, seccomp), so the kernel itself stops a symlink, `..`, a
//! hard link, `/proc/self/root` or a rename race from reaching outside the roots. The
//! request goes in on stdin; the answer (and, for `fs/open`, the opened descriptor)
//! comes back over a Unix socket.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;

use exec_protocol::fs::{
    CanonicalizeResult, CopyParams, CreateDirectoryParams, OpenMode, OpenParams, OpenResult, PathParams,
    ReadDirectoryResult, ReadFileResult, RemoveParams, WalkParams, WriteFileParams,
};
use exec_protocol::{Base64Bytes, PathUri, RpcError, methods as m};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the server sends the helper.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub params: Value,
    pub max_file_bytes: u64,
}

/// What the helper answers.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Answer {
    Result(Value),
    Error(RpcError),
}

/// The helper's answer: the result, and the opened file for `fs/open`.
pub struct Outcome {
    pub result: Value,
    pub file: Option<(File, OpenMode)>,
}

fn to_value<T: Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(e.to_string()))
}

/// Runs one operation in this (already confined) process.
fn perform(req: Request) -> Result<(Value, Option<File>), RpcError> {
    let max = req.max_file_bytes;
    let ack = Value::Object(Default::default());
    Ok(match req.method.as_str() {
        m::FS_READ_FILE => {
            let p: PathParams = parse(req.params)?;
            (
                to_value(&ReadFileResult {
                    data_base64: Base64Bytes(super::read_file(p.path.path()?, max)?),
                })?,
                None,
            )
        }
        m::FS_WRITE_FILE => {
            let p: WriteFileParams = parse(req.params)?;
            let data = Base64Bytes::decode(&p.data_base64).map_err(|e| {
                RpcError::invalid_request(format!("fs/writeFile requires valid base64 dataBase64: {e}"))
            })?;
            super::write_file(p.path.path()?, &data, max)?;
            (ack, None)
        }
        m::FS_CREATE_DIRECTORY => {
            let p: CreateDirectoryParams = parse(req.params)?;
            super::create_directory(p.path.path()?, p.recursive)?;
            (ack, None)
        }
        m::FS_GET_METADATA => {
            let p: PathParams = parse(req.params)?;
            (to_value(&super::metadata(p.path.path()?)?)?, None)
        }
        m::FS_CANONICALIZE => {
            let p: PathParams = parse(req.params)?;
            (
                to_value(&CanonicalizeResult {
                    path: PathUri::from_path(super::canonicalize(p.path.path()?)?),
                })?,
                None,
            )
        }
        m::FS_READ_DIRECTORY => {
            let p: PathParams = parse(req.params)?;
            (
                to_value(&ReadDirectoryResult {
                    entries: super::read_directory(p.path.path()?)?,
                })?,
                None,
            )
        }
        m::FS_WALK => {
            let p: WalkParams = parse(req.params)?;
            (to_value(&super::walk::walk(p.path.path()?, &p.options)?)?, None)
        }
        m::FS_REMOVE => {
            let p: RemoveParams = parse(req.params)?;
            super::remove(p.path.path()?, p.recursive, p.force)?;
            (ack, None)
        }
        m::FS_COPY => {
            let p: CopyParams = parse(req.params)?;
            super::copy(p.source_path.path()?, p.destination_path.path()?, p.recursive)?;
            (ack, None)
        }
        m::FS_OPEN => {
            let p: OpenParams = parse(req.params)?;
            let path = p.path.path()?;
            let file = match p.mode {
                OpenMode::Read => File::open(path),
                OpenMode::Replace => File::create(path),
            }
            .map_err(|e| super::io_error(e, path))?;
            if p.mode == OpenMode::Read && file.metadata().is_ok_and(|m| m.is_dir()) {
                return Err(RpcError::invalid_request(format!(
                    "path `{}` is not a file",
                    path.display()
                )));
            }
            (to_value(&OpenResult { handle_id: p.handle_id })?, Some(file))
        }
        other => return Err(RpcError::method_not_found(other)),
    })
}

/// The helper's entry point (`exec-server sandbox-fs --spec …`): stdout is a Unix socket.
pub fn helper_main(spec: &sandbox::LaunchSpec) -> i32 {
    let out_fd: RawFd = 1;
    let answer = |answer: Answer, fd: Option<RawFd>| {
        let text = serde_json::to_vec(&answer).unwrap_or_default();
        let fds: Vec<RawFd> = fd.into_iter().collect();
        let cmsgs = if fds.is_empty() {
            vec![]
        } else {
            vec![ControlMessage::ScmRights(&fds)]
        };
        let mut sent = 0;
        let mut first = true;
        while sent < text.len() {
            let iov = [IoSlice::new(&text[sent..])];
            let cm: &[ControlMessage] = if first { &cmsgs } else { &[] };
            match sendmsg::<()>(out_fd, &iov, cm, MsgFlags::empty(), None) {
                Ok(n) => sent += n,
                Err(_) => return,
            }
            first = false;
        }
    };
    if let Err(e) = sandbox::apply(spec) {
        answer(Answer::Error(RpcError::internal(e.to_string())), None);
        return 126;
    }
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return 2;
    }
    let request: Request = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            answer(Answer::Error(RpcError::invalid_request(e.to_string())), None);
            return 2;
        }
    };
    match perform(request) {
        Ok((result, file)) => answer(Answer::Result(result), file.as_ref().map(|f| f.as_raw_fd())),
        Err(e) => answer(Answer::Error(e), None),
    }
    0
}

/// Runs `method` with `params` in a helper confined by `spec` (blocking; call it from
/// the blocking pool).
pub fn run(spec: &sandbox::LaunchSpec, method: &str, params: Value, max_file_bytes: u64) -> Result<Outcome, RpcError> {
    let io = |e: &dyn std::fmt::Display| RpcError::internal(format!("sandboxed file helper: {e}"));
    let (ours, theirs) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(|e| io(&e))?;
    let exe = std::env::current_exe().map_err(|e| io(&e))?;
    let spec_json = serde_json::to_string(spec).map_err(|e| io(&e))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["sandbox-fs", "--spec", &spec_json])
        .stdin(Stdio::piped())
        .stdout(Stdio::from(theirs))
        .stderr(Stdio::null())
        .env_clear();
    let mut child = crate::process::inherit::spawn_plain(|| command.spawn()).map_err(|e| io(&e))?;
    drop(command); // closes our copy of the helper's end
    let request = serde_json::to_vec(&Request {
        method: method.to_string(),
        params,
        max_file_bytes,
    })
    .map_err(|e| io(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that failed to start its sandbox stops reading; its answer says why.
        let _ = stdin.write_all(&request);
    }
    let mut text = Vec::new();
    let mut fd: Option<OwnedFd> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(ours.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| io(&e))?;
        for c in msg.cmsgs().map_err(|e| io(&e))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let _ = child.wait();
    match serde_json::from_slice::<Answer>(&text).map_err(|e| io(&format!("no answer ({e})")))? {
        Answer::Error(e) => Err(e),
        Answer::Result(result) => {
            let mode = if method == m::FS_OPEN {
                let replace = result.get("handleId").is_some() && text_mode_is_replace(&request);
                Some(if replace { OpenMode::Replace } else { OpenMode::Read })
            } else {
                None
            };
            Ok(Outcome {
                result,
                file: fd.map(File::from).zip(mode),
            })
        }
    }
}

fn text_mode_is_replace(request: &[u8]) -> bool {
    serde_json::from_slice::<Request>(request)
        .ok()
        .and_then(|r| r.params.get("mode").and_then(Value::as_str).map(|m| m == "replace"))
        .unwrap_or(false)
}

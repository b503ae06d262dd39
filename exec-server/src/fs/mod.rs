//! File operations behind the `fs/*` methods, as blocking functions that the rpc layer
//! runs on the blocking pool. OS errors keep the reference's codes: not found → -32004,
//! permission denied or invalid input → -32600, anything else → -32603, each with the
//! OS text as message and the path in `error.data`.

pub mod confined;
pub mod handles;
pub mod walk;
pub mod watch;

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::UNIX_EPOCH;

use exec_protocol::RpcError;
use exec_protocol::fs::{DirectoryEntry, MetadataResult};
use serde_json::json;

/// Maps an OS error on `path` to a JSON-RPC error.
pub fn io_error(e: io::Error, path: &Path) -> RpcError {
    let err = match e.kind() {
        io::ErrorKind::NotFound => RpcError::not_found(e.to_string()),
        io::ErrorKind::PermissionDenied | io::ErrorKind::InvalidInput => RpcError::invalid_request(e.to_string()),
        _ => RpcError::internal(e.to_string()),
    };
    err.with_data(json!({ "path": path.display().to_string() }))
}

fn too_big(path: &Path, size: u64, max: u64) -> RpcError {
    RpcError::invalid_request(format!(
        "file `{}` is {size} bytes, over the {max}-byte limit for whole-file transfers; use fs/open with fs/readBlock or fs/writeBlock",
        path.display()
    ))
}

pub fn read_file(path: &Path, max: u64) -> Result<Vec<u8>, RpcError> {
    let file = fs::File::open(path).map_err(|e| io_error(e, path))?;
    let meta = file.metadata().map_err(|e| io_error(e, path))?;
    if !meta.is_file() {
        return Err(RpcError::invalid_request(format!(
            "path `{}` is not a file",
            path.display()
        )));
    }
    if meta.len() > max {
        return Err(too_big(path, meta.len(), max));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| io_error(e, path))?;
    if data.len() as u64 > max {
        return Err(too_big(path, data.len() as u64, max));
    }
    Ok(data)
}

pub fn write_file(path: &Path, data: &[u8], max: u64) -> Result<(), RpcError> {
    if data.len() as u64 > max {
        return Err(too_big(path, data.len() as u64, max));
    }
    fs::write(path, data).map_err(|e| io_error(e, path))
}

pub fn create_directory(path: &Path, recursive: bool) -> Result<(), RpcError> {
    let r = if recursive {
        fs::create_dir_all(path)
    } else {
        fs::create_dir(path)
    };
    r.map_err(|e| io_error(e, path))
}

fn millis(t: io::Result<std::time::SystemTime>) -> u64 {
    t.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn metadata(path: &Path) -> Result<MetadataResult, RpcError> {
    let link = fs::symlink_metadata(path).map_err(|e| io_error(e, path))?;
    let is_symlink = link.file_type().is_symlink();
    // Type and size follow a symlink; a dangling one reports the link itself.
    let meta = if is_symlink {
        fs::metadata(path).unwrap_or(link)
    } else {
        link
    };
    Ok(MetadataResult {
        is_directory: meta.is_dir(),
        is_file: meta.is_file(),
        is_symlink,
        size: meta.len(),
        created_at_ms: millis(meta.created()),
        modified_at_ms: millis(meta.modified()),
    })
}

pub fn canonicalize(path: &Path) -> Result<std::path::PathBuf, RpcError> {
    fs::canonicalize(path).map_err(|e| io_error(e, path))
}

pub fn read_directory(path: &Path) -> Result<Vec<DirectoryEntry>, RpcError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| io_error(e, path))? {
        let entry = entry.map_err(|e| io_error(e, path))?;
        let mut ft = entry.file_type().map_err(|e| io_error(e, &entry.path()))?;
        if ft.is_symlink()
            && let Ok(m) = fs::metadata(entry.path())
        {
            ft = m.file_type();
        }
        out.push(DirectoryEntry {
            file_name: entry.file_name().to_string_lossy().into_owned(),
            is_directory: ft.is_dir(),
            is_file: ft.is_file(),
        });
    }
    Ok(out)
}

pub fn remove(path: &Path, recursive: bool, force: bool) -> Result<(), RpcError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && force => return Ok(()),
        Err(e) => return Err(io_error(e, path)),
    };
    let r = if meta.is_dir() {
        if recursive {
            fs::remove_dir_all(path)
        } else {
            fs::remove_dir(path)
        }
    } else {
        fs::remove_file(path)
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound && force => Ok(()),
        r => r.map_err(|e| io_error(e, path)),
    }
}

pub fn copy(src: &Path, dst: &Path, recursive: bool) -> Result<(), RpcError> {
    let meta = fs::symlink_metadata(src).map_err(|e| io_error(e, src))?;
    if meta.is_dir() {
        if !recursive {
            return Err(RpcError::invalid_request(
                "fs/copy requires recursive: true when sourcePath is a directory",
            ));
        }
        if dst.starts_with(src) {
            return Err(RpcError::invalid_request("fs/copy cannot copy a directory into itself"));
        }
        return copy_tree(src, dst);
    }
    copy_entry(src, dst, &meta)
}

fn copy_entry(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), RpcError> {
    if meta.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(|e| io_error(e, src))?;
        return std::os::unix::fs::symlink(target, dst).map_err(|e| io_error(e, dst));
    }
    fs::copy(src, dst).map(|_| ()).map_err(|e| io_error(e, dst))
}

fn copy_tree(src: &Path, dst: &Path) -> Result<(), RpcError> {
    fs::create_dir_all(dst).map_err(|e| io_error(e, dst))?;
    for entry in fs::read_dir(src).map_err(|e| io_error(e, src))? {
        let entry = entry.map_err(|e| io_error(e, src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = fs::symlink_metadata(&from).map_err(|e| io_error(e, &from))?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            copy_entry(&from, &to, &meta)?;
        }
    }
    Ok(())
}

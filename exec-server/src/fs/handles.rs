//! Open file handles of a session (`fs/open`, `fs/readBlock`, `fs/writeBlock`, `fs/close`).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use exec_protocol::RpcError;
use exec_protocol::fs::OpenMode;

use super::io_error;
use crate::session::lock;

/// Most handles one session may hold open.
pub const MAX_HANDLES: usize = 1024;
/// Largest block one `fs/readBlock` returns.
pub const MAX_BLOCK: usize = 16 << 20;

pub struct Handle {
    file: File,
    mode: OpenMode,
}

#[derive(Default)]
pub struct FileHandles {
    map: Mutex<HashMap<String, Arc<Handle>>>,
}

impl FileHandles {
    pub fn open(&self, id: &str, path: &Path, mode: OpenMode) -> Result<(), RpcError> {
        if lock(&self.map).contains_key(id) {
            return Err(RpcError::invalid_request(format!("file handle `{id}` already exists")));
        }
        let file = match mode {
            OpenMode::Read => File::open(path),
            OpenMode::Replace => File::create(path),
        }
        .map_err(|e| io_error(e, path))?;
        if mode == OpenMode::Read && file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(RpcError::invalid_request(format!(
                "path `{}` is not a file",
                path.display()
            )));
        }
        let mut map = lock(&self.map);
        if map.len() >= MAX_HANDLES {
            return Err(RpcError::invalid_request(format!(
                "too many open file handles (limit {MAX_HANDLES})"
            )));
        }
        if map.contains_key(id) {
            return Err(RpcError::invalid_request(format!("file handle `{id}` already exists")));
        }
        map.insert(id.to_string(), Arc::new(Handle { file, mode }));
        Ok(())
    }

    /// Fails when `id` is taken.
    pub fn check_free(&self, id: &str) -> Result<(), RpcError> {
        if lock(&self.map).contains_key(id) {
            return Err(RpcError::invalid_request(format!("file handle `{id}` already exists")));
        }
        Ok(())
    }

    /// Registers a file opened elsewhere (by the sandboxed helper).
    pub fn insert(&self, id: &str, file: File, mode: OpenMode) -> Result<(), RpcError> {
        let mut map = lock(&self.map);
        if map.contains_key(id) {
            return Err(RpcError::invalid_request(format!("file handle `{id}` already exists")));
        }
        if map.len() >= MAX_HANDLES {
            return Err(RpcError::invalid_request(format!(
                "too many open file handles (limit {MAX_HANDLES})"
            )));
        }
        map.insert(id.to_string(), Arc::new(Handle { file, mode }));
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Arc<Handle>, RpcError> {
        lock(&self.map)
            .get(id)
            .cloned()
            .ok_or_else(|| RpcError::not_found(format!("unknown file handle `{id}`")))
    }

    pub fn close(&self, id: &str) {
        lock(&self.map).remove(id);
    }

    pub fn clear(&self) {
        lock(&self.map).clear();
    }
}

impl Handle {
    /// Reads up to `len` bytes at `offset`; `eof` when the end of the file was reached.
    pub fn read_block(&self, id: &str, offset: u64, len: usize) -> Result<(Vec<u8>, bool), RpcError> {
        if len > MAX_BLOCK {
            return Err(RpcError::invalid_params(format!("len must be at most {MAX_BLOCK}")));
        }
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RpcError::internal(format!("fs/readBlock `{id}`: {e}"))),
            }
        }
        buf.truncate(filled);
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok((buf, offset + filled as u64 >= size))
    }

    pub fn write_block(&self, id: &str, offset: u64, data: &[u8]) -> Result<(), RpcError> {
        if self.mode != OpenMode::Replace {
            return Err(RpcError::invalid_request(format!(
                "file handle `{id}` is not open for writing"
            )));
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| RpcError::internal(format!("fs/writeBlock `{id}`: {e}")))
    }
}

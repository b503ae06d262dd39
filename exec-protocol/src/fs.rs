//! Params and results of the `fs/*` methods.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bytes::Base64Bytes;
use crate::path_uri::PathUri;

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathParams {
    pub path: PathUri,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadFileResult {
    pub data_base64: Base64Bytes,
}

/// `dataBase64` stays a string so that a bad encoding gets the reference's -32600 error.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteFileParams {
    pub path: PathUri,
    pub data_base64: String,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateDirectoryParams {
    pub path: PathUri,
    #[serde(default = "yes")]
    pub recursive: bool,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataResult {
    pub is_directory: bool,
    pub is_file: bool,
    pub is_symlink: bool,
    pub size: u64,
    pub created_at_ms: u64,
    pub modified_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CanonicalizeResult {
    pub path: PathUri,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryEntry {
    pub file_name: String,
    pub is_directory: bool,
    pub is_file: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadDirectoryResult {
    pub entries: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WalkOptions {
    pub max_depth: Option<usize>,
    pub max_directories: Option<usize>,
    pub max_entries: Option<usize>,
    pub follow_directory_symlinks: bool,
    pub prune_hidden_directories: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalkParams {
    pub path: PathUri,
    #[serde(default)]
    pub options: WalkOptions,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalkEntry {
    pub path: PathUri,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalkError {
    pub path: PathUri,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalkResult {
    pub entries: Vec<WalkEntry>,
    pub errors: Vec<WalkError>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParams {
    pub path: PathUri,
    #[serde(default = "yes")]
    pub recursive: bool,
    #[serde(default = "yes")]
    pub force: bool,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyParams {
    pub source_path: PathUri,
    pub destination_path: PathUri,
    pub recursive: bool,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpenMode {
    Read,
    Replace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenParams {
    pub handle_id: String,
    pub path: PathUri,
    pub mode: OpenMode,
    #[serde(default)]
    pub sandbox: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenResult {
    pub handle_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadBlockParams {
    pub handle_id: String,
    pub offset: u64,
    pub len: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadBlockResult {
    pub chunk: Base64Bytes,
    pub eof: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteBlockParams {
    pub handle_id: String,
    pub offset: u64,
    pub chunk: Base64Bytes,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandleParams {
    pub handle_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchMissingParams {
    pub watch_id: u64,
    pub missing: Vec<PathUri>,
    #[serde(default)]
    pub present: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchMissingResult {
    pub watching: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingChangedNotification {
    pub watch_id: u64,
}

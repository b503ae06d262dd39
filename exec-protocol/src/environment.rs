//! The handshake (`initialize`) and the `environment/*` and `environmentConfig/read` methods.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path_uri::PathUri;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    pub client_name: String,
    #[serde(default)]
    pub resume_session_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    pub session_id: String,
    pub environment_info: EnvironmentInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellInfo {
    pub name: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentInfo {
    pub shell: ShellInfo,
    pub executor_version: String,
    pub provider_id: String,
    pub cwd: PathUri,
    pub user_home_dir: PathUri,
    pub platform_os: String,
    pub prepend_path_dirs: Vec<PathUri>,
    pub temporary_directories: Vec<PathUri>,
    pub temp_dir: PathUri,
    /// Feature flags, all booleans (reference flags plus our extensions).
    pub capabilities: BTreeMap<String, bool>,
    /// Name and version of this implementation (extension).
    pub server: String,
    /// How long a detached session survives before its processes are killed (extension).
    pub detach_grace_ms: u64,
    /// Output retained per process for `process/read` (extension).
    pub output_retention_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResult {
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigReadParams {
    pub cwd: Option<PathUri>,
    pub config_paths: Vec<Vec<String>>,
    pub requirements_paths: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLayers {
    pub layers: Vec<Value>,
    pub cloud_insertion_index: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReadResult {
    pub user_home_dir: PathUri,
    pub codex_home_dir: PathUri,
    pub hostname: String,
    pub config: ConfigLayers,
    pub requirements: ConfigLayers,
}

/// `$/cancelRequest` params.
#[derive(Debug, Clone, Deserialize)]
pub struct CancelParams {
    pub id: crate::envelope::RequestId,
}

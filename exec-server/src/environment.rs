//! The `environmentInfo` this server reports: shell, directories, version and the
//! capability flags (the reference's, plus our extensions).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use exec_protocol::PathUri;
use exec_protocol::environment::{EnvironmentInfo, ShellInfo};
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;

/// The protocol version we are compatible with, reported as `executorVersion`.
pub const PROTOCOL_VERSION: &str = "0.169.0";

fn shell() -> ShellInfo {
    let candidates = std::env::var("SHELL")
        .ok()
        .into_iter()
        .chain(["/bin/bash".to_string(), "/bin/sh".to_string()]);
    for path in candidates {
        if Path::new(&path).is_absolute() && Path::new(&path).is_file() {
            let name = Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return ShellInfo { name, path };
        }
    }
    ShellInfo {
        name: "sh".into(),
        path: "/bin/sh".into(),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn capabilities() -> BTreeMap<String, bool> {
    let flags = [
        // Reference flags.
        ("networkProxyLaunch", false),
        ("networkProxyReviewDomains", false),
        ("credentialMasking", false),
        ("credentialMaskingCustomProviders", false),
        ("capabilityDiscoverySandbox", false),
        ("fsWatchMissing", true),
        ("capabilityDiscoveryV2", false),
        ("environmentConfigRead", true),
        ("httpHeaderEnvVars", true),
        ("sandboxedFileStreaming", false),
        ("fileWriteStreaming", false),
        ("shellSnapshotV2", false),
        ("windowsMxc", false),
        ("linuxRootWritePreservesDevices", false),
        ("linuxApprovedRootWritePreservesRestrictions", false),
        // Extensions.
        ("processResize", true),
        ("processCloseStdin", true),
        ("processSignals", true),
        ("processList", true),
        ("processLimits", true),
        ("processTimeoutLimit", true),
        ("processOutputLimit", true),
        ("processReadDroppedBeforeSeq", true),
        ("cancelRequest", true),
        ("sessionResume", true),
        ("httpRequest", true),
        ("httpErrorKinds", true),
        ("httpNonUtf8HeaderValues", true),
        ("sandbox", true),
        ("sandboxedFileOperations", true),
    ];
    flags.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub fn detect(cfg: &ServerConfig) -> EnvironmentInfo {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let temp = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let server = format!("exec-server {}", env!("CARGO_PKG_VERSION"));
    let provider = Sha256::digest(format!("{server}/{}", std::env::consts::ARCH));
    let provider_id = format!(
        "sha256:{}",
        provider.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    EnvironmentInfo {
        shell: shell(),
        executor_version: PROTOCOL_VERSION.to_string(),
        provider_id,
        cwd: PathUri::from_path(cwd),
        user_home_dir: PathUri::from_path(home()),
        platform_os: std::env::consts::OS.to_string(),
        prepend_path_dirs: Vec::new(),
        temporary_directories: Vec::new(),
        temp_dir: PathUri::from_path(temp),
        capabilities: capabilities(),
        server,
        detach_grace_ms: cfg.detach_grace.as_millis() as u64,
        output_retention_bytes: cfg.output_retention_bytes,
    }
}

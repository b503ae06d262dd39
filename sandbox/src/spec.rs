//! What the launcher is asked to apply: the resolved confinement of one process.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::SandboxPolicy;

/// The resolved sandbox of one process, handed to the launcher as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchSpec {
    /// Confine the filesystem: read-only everywhere except these roots. `None` = no
    /// filesystem confinement.
    pub writable_roots: Option<Vec<PathBuf>>,
    /// Network access; `false` adds a private network namespace and denies IP sockets.
    pub network: bool,
    /// Apply the user namespace, Landlock and seccomp layers.
    pub confine: bool,
    /// The process has a terminal (its stdin is the PTY slave).
    pub tty: bool,
    /// RLIMIT_CPU, seconds.
    pub cpu_seconds: Option<u64>,
    /// cgroup directories the process joins before anything else.
    pub cgroups: Vec<PathBuf>,
    /// Directories covered by an empty read-only tmpfs in a private mount namespace
    /// (credential stores), applied with `confine`.
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
}

impl LaunchSpec {
    /// The spec for `policy`, run in `cwd` (writable under `workspace-write`), with the
    /// temp directory `tmpdir`.
    pub fn for_policy(
        policy: &SandboxPolicy,
        cwd: Option<&std::path::Path>,
        tmpdir: Option<&std::path::Path>,
    ) -> LaunchSpec {
        match policy {
            SandboxPolicy::DangerFullAccess => LaunchSpec {
                network: true,
                ..LaunchSpec::default()
            },
            SandboxPolicy::ReadOnly { network_access } => LaunchSpec {
                writable_roots: Some(Vec::new()),
                network: *network_access,
                confine: true,
                ..LaunchSpec::default()
            },
            SandboxPolicy::WorkspaceWrite {
                writable_roots,
                network_access,
                exclude_tmp,
            } => {
                let mut roots: Vec<PathBuf> = cwd.map(|c| c.to_path_buf()).into_iter().collect();
                roots.extend(writable_roots.iter().cloned());
                if !exclude_tmp {
                    roots.push(PathBuf::from("/tmp"));
                    roots.extend(tmpdir.map(|t| t.to_path_buf()));
                }
                roots.sort();
                roots.dedup();
                LaunchSpec {
                    writable_roots: Some(roots),
                    network: *network_access,
                    confine: true,
                    ..LaunchSpec::default()
                }
            }
        }
    }

    /// Whether a launcher is needed at all.
    pub fn needs_launcher(&self) -> bool {
        self.confine || self.cpu_seconds.is_some() || !self.cgroups.is_empty()
    }
}

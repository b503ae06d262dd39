//! Per-process cgroups for the memory and pids limits: cgroup v2 when it has the
//! controllers, else v1 (this project's machines: memory and pids only through v1).
//! Created by the server under its own cgroup, joined by the launcher, read after the
//! exit to tell a memory kill, and removed when the process is gone.

use std::fs;
use std::path::{Path, PathBuf};

/// The cgroups of one process.
#[derive(Debug, Clone, Default)]
pub struct ProcessCgroups {
    /// Directories to join (one per hierarchy).
    pub dirs: Vec<PathBuf>,
    /// Where the memory controller's files are.
    memory: Option<PathBuf>,
    /// Where the pids controller's files are.
    pids: Option<PathBuf>,
    /// `v2` or `v1`.
    pub version: &'static str,
}

const ROOT: &str = "/sys/fs/cgroup";

/// The path of this process in the hierarchy of `controller` (v1) or the unified one.
fn own_path(controller: Option<&str>) -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            Some(c) => ctrls.split(',').any(|x| x == c),
            None => ctrls.is_empty(),
        };
        hit.then(|| path.to_string())
    })
}

fn v2_controllers() -> Option<String> {
    let path = own_path(None)?;
    fs::read_to_string(
        Path::new(ROOT)
            .join(path.trim_start_matches('/'))
            .join("cgroup.controllers"),
    )
    .ok()
}

/// Which hierarchy can enforce `controller`: ("v2", dir) or ("v1", dir).
fn base_for(controller: &str) -> Option<(&'static str, PathBuf)> {
    if v2_controllers().is_some_and(|c| c.split_whitespace().any(|x| x == controller)) {
        let own = own_path(None)?;
        return Some(("v2", Path::new(ROOT).join(own.trim_start_matches('/'))));
    }
    let own = own_path(Some(controller))?;
    let dir = Path::new(ROOT).join(controller).join(own.trim_start_matches('/'));
    dir.join("cgroup.procs").exists().then_some(("v1", dir))
}

/// Which controllers can be used here, for the probe: (memory, pids).
pub fn available() -> (Option<&'static str>, Option<&'static str>) {
    (base_for("memory").map(|b| b.0), base_for("pids").map(|b| b.0))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs::write(path, value).map_err(|e| format!("{}: {e}", path.display()))
}

impl ProcessCgroups {
    /// Creates `exec-server/<name>` cgroups with the given limits.
    pub fn create(name: &str, memory_bytes: Option<u64>, pids: Option<u64>) -> Result<ProcessCgroups, String> {
        let mut out = ProcessCgroups::default();
        for (controller, limit) in [("memory", memory_bytes), ("pids", pids)] {
            let Some(limit) = limit else { continue };
            let (version, base) =
                base_for(controller).ok_or_else(|| format!("the cgroup {controller} controller is not available"))?;
            let parent = base.join("exec-server");
            if version == "v2" && !parent.exists() {
                fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                let _ = write(&base.join("cgroup.subtree_control"), &format!("+{controller}"));
                let _ = write(&parent.join("cgroup.subtree_control"), &format!("+{controller}"));
            }
            let dir = parent.join(name);
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            match (version, controller) {
                ("v1", "memory") => {
                    write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                    let _ = write(&dir.join("memory.swappiness"), "0");
                }
                ("v2", "memory") => {
                    write(&dir.join("memory.max"), &limit.to_string())?;
                    let _ = write(&dir.join("memory.swap.max"), "0");
                }
                _ => write(&dir.join("pids.max"), &limit.to_string())?,
            }
            if controller == "memory" {
                out.memory = Some(dir.clone());
            } else {
                out.pids = Some(dir.clone());
            }
            if !out.dirs.contains(&dir) {
                out.dirs.push(dir);
            }
            out.version = version;
        }
        Ok(out)
    }

    /// Whether the kernel OOM-killed something in the memory cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory else { return false };
        let text = fs::read_to_string(dir.join("memory.oom_control"))
            .or_else(|_| fs::read_to_string(dir.join("memory.events")))
            .unwrap_or_default();
        text.lines()
            .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
    }

    /// Whether a fork was refused by the pids limit.
    pub fn pids_limited(&self) -> bool {
        let Some(dir) = &self.pids else { return false };
        fs::read_to_string(dir.join("pids.events"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.strip_prefix("max ").is_some_and(|n| n.trim() != "0"))
    }

    /// Every process still in the cgroups (for killing escapees).
    pub fn pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Removes the cgroups (they must be empty).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

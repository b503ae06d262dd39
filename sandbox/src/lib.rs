//! Sandbox policies for processes and file operations.
//!
//! This crate decodes the `sandbox` field of `process/start` and `fs/*` requests into a
//! [`SandboxPolicy`]. Two wire forms are understood: the plain policy
//! (`{"type":"workspace-write","writableRoots":[…],"networkAccess":false}`) and the
//! managed permission profile a Codex client sends (`{"permissions":{"type":"managed",…},
//! "cwd":…,"workspaceRoots":[…]}`). Unknown shapes are rejected: a policy that cannot be
//! understood is never treated as "no sandbox".

mod policy;

pub use policy::{PolicyError, SandboxPolicy};

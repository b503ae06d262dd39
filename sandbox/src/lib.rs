//! The sandbox: policies (decoded from the `sandbox` field of `process/start` and `fs/*`
//! requests), the isolation layers a launcher applies before `execve` (session, parent
//! death signal, rlimits, cgroup membership, user and network namespaces, Landlock,
//! seccomp), per-process cgroups for memory and pids limits, the kernel probe, and the
//! heuristic that flags output caused by a denial.

mod apply;
pub mod cgroup;
mod denial;
pub mod launcher;
mod policy;
mod probe;
mod spec;

pub use apply::{ApplyError, LandlockReport, Report, abi_number, apply};
pub use denial::sandbox_denied;
pub use policy::{PolicyError, SandboxPolicy};
pub use probe::{Probe, probe};
pub use spec::LaunchSpec;

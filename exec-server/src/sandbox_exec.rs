//! `exec-server sandbox-exec` (the launcher as a mode of the server binary, used when the
//! small `exec-server-launcher` is not installed beside it) and `exec-server
//! sandbox-probe`. The launcher itself is `sandbox::launcher`.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SandboxExecArgs {
    /// The launch spec, JSON.
    #[arg(long)]
    pub spec: String,
    /// Descriptor the report is written to.
    #[arg(long)]
    pub report_fd: i32,
    /// The program (absolute path), then its argv (argv[0] first).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub use sandbox::launcher::LaunchMessage;

pub fn main(args: SandboxExecArgs) -> ExitCode {
    ExitCode::from(sandbox::launcher::launch(&args.spec, args.report_fd, &args.command))
}

/// `exec-server sandbox-probe`.
pub fn probe(json: bool) -> ExitCode {
    let p = sandbox::probe();
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "landlock:        {}",
        if p.landlock_abi > 0 {
            format!("ABI {}", p.landlock_abi)
        } else {
            "no".into()
        }
    );
    println!("seccomp:         {}", yes(p.seccomp));
    println!("user namespaces: {}", yes(p.user_namespaces));
    println!("cgroup memory:   {}", p.cgroup_memory.unwrap_or("no"));
    println!("cgroup pids:     {}", p.cgroup_pids.unwrap_or("no"));
    ExitCode::SUCCESS
}

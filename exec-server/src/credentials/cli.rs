//! `exec-server credentials status|refresh --config PATH --binding NAME`: what an operator
//! needs to check a binding or force a refresh, through the same store, lock and
//! transaction as a running server (so it never races one). Prints fingerprints, never
//! tokens.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::bindings::{Bindings, Source};
use super::claims;

#[derive(clap::Subcommand)]
pub enum Action {
    /// Show the account, expiry and fingerprint of a managed binding's token.
    Status {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        binding: String,
    },
    /// Refresh a managed binding's token now (or adopt a newer one another process stored).
    Refresh {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        binding: String,
        /// Concurrent refresh demands from this process (they join one transaction).
        #[arg(long, default_value_t = 1)]
        tasks: usize,
    },
}

pub async fn run(action: Action) -> ExitCode {
    let (config, name, tasks) = match action {
        Action::Status { config, binding } => (config, binding, 0),
        Action::Refresh { config, binding, tasks } => (config, binding, tasks.max(1)),
    };
    let bindings = match Bindings::load(&config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("exec-server credentials: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(binding) = bindings.get(&name) else {
        eprintln!("exec-server credentials: no binding `{name}` in {}", config.display());
        return ExitCode::from(2);
    };
    let Source::Managed(manager) = &binding.source else {
        eprintln!("exec-server credentials: binding `{name}` is external: its tokens live in the client");
        return ExitCode::from(2);
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let demands: Vec<_> = (0..tasks)
        .map(|_| {
            let m = manager.clone();
            tokio::spawn(async move { m.refresh(deadline).await })
        })
        .collect();
    for demand in demands {
        let failed = match demand.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            eprintln!("exec-server credentials: {e}");
            return ExitCode::from(1);
        }
    }
    match manager.current() {
        Ok(cred) => {
            let exp = claims::parse(cred.access_token.expose()).ok().and_then(|c| c.exp);
            println!(
                "binding={name} account={} token={} exp={}",
                cred.account_id.as_deref().unwrap_or("-"),
                cred.fingerprint,
                exp.map(|e| e.to_string()).unwrap_or_else(|| "-".into())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("exec-server credentials: {e}");
            ExitCode::from(1)
        }
    }
}

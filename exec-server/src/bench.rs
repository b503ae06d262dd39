//! `exec-server bench`.

#[derive(clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

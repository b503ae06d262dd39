//! The `exec-server` binary: see `exec_server::cli`.

fn main() -> std::process::ExitCode {
    exec_server::cli::main()
}

//! `exec-server-launcher --spec JSON --report-fd N -- PROGRAM ARGV…`: the sandbox
//! launcher as a small binary of its own, so that starting it costs little more than
//! starting the command (the server binary is large). `exec-server sandbox-exec` does
//! the same when this binary is not installed beside the server.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::ExitCode::from(sandbox::launcher::main_from_args(&args))
}

//! Whether a failed sandboxed command most likely failed because of the sandbox: exit
//! by SIGSYS, or output that reports a denial, for a non-zero exit that is not a plain
//! usage error or a missing command.

const PATTERNS: &[&str] = &[
    "operation not permitted",
    "permission denied",
    "read-only file system",
    "seccomp",
    "sandbox",
    "landlock",
    "failed to write file",
    "network is unreachable",
    // Landlock refuses links and renames that would widen access with EXDEV.
    "invalid cross-device link",
];

/// `exit_code` as reported (128 + signal for signal deaths); `output` is the tail of
/// what the process printed.
pub fn sandbox_denied(exit_code: i32, output: &[u8]) -> bool {
    match exit_code {
        0 | 2 | 126 | 127 => false,
        159 => true, // 128 + SIGSYS
        _ => {
            let text = String::from_utf8_lossy(output).to_ascii_lowercase();
            PATTERNS.iter().any(|p| text.contains(p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heuristic() {
        assert!(sandbox_denied(1, b"touch: cannot touch '/etc/x': Permission denied"));
        assert!(sandbox_denied(1, b"Read-only file system"));
        assert!(sandbox_denied(159, b""));
        assert!(!sandbox_denied(0, b"Permission denied"));
        assert!(!sandbox_denied(127, b"Permission denied"));
        assert!(!sandbox_denied(1, b"plain failure"));
    }
}

# Everyday commands for exec-server. `just` lists them; each is a plain cargo/shell command,
# so they work without `just` too (copy the line).

default:
    @just --list

# Build the release server and listen on loopback (the README's first command).
run listen="ws://127.0.0.1:8765":
    cargo build --release -p exec-server
    ./target/release/exec-server --listen {{listen}}

# Run every test suite (the README's second command).
test *args:
    cargo nextest run --workspace {{args}}

# Formatting and lints exactly as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the workspace.
fmt:
    cargo fmt --all

# Benchmarks against same-run baselines; pass e.g. `--quick` or `--only exec`.
bench *args:
    cargo build --release -p exec-server
    ./target/release/exec-server bench {{args}}

# Install the pinned Codex CLI used by the interop test.
codex:
    scripts/install-codex.sh

# What CI runs on a clean clone (installs tools, then lint and tests).
ci:
    bash .ci/run

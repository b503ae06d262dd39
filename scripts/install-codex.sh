#!/usr/bin/env bash
# Installs the Codex CLI 0.169.0 (the reference client) from npm into a cache directory
# and prints nothing, or with --print-bin prints the path of its native binary.
set -euo pipefail
version=0.169.0
prefix="${EXEC_SERVER_CODEX_PREFIX:-/var/tmp/exec-server-codex-$version}"

find_bin() {
  # The npm package ships the native binary inside a platform package.
  find "$prefix/node_modules" -type f -name codex -perm -u+x 2>/dev/null | grep -v '/\.bin/' | grep -E 'vendor|bin' | head -n 1
}

if [ "${1:-}" = "--print-bin" ]; then
  find_bin
  exit 0
fi

if [ -n "$(find_bin)" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
mkdir -p "$prefix"
npm install --no-audit --no-fund --loglevel=error --prefix "$prefix" "@openai/codex@$version" >/dev/null
bin="$(find_bin)"
if [ -z "$bin" ]; then
  echo "install-codex: no codex binary found under $prefix" >&2
  exit 1
fi
"$bin" --version

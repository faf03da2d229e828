#!/usr/bin/env bash
# Runs every Coffer test. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== schemathesis (for the OpenAPI conformance test)"
# A pinned schemathesis in a virtualenv kept between runs.
venv="${COFFER_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-tests-venv}"
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis==4.32.5
fi
export COFFER_SCHEMATHESIS="$venv/bin/st"

echo "== cargo test"
# Debian's psql, for the pgwire tests that run it.
if [ ! -x /usr/bin/psql ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-client
fi
# The fuzz tests are bounded (COFFER_FUZZ_CASES statements, printed seed).
cargo test --workspace

echo "== browser tests (headless Chromium, playwright-core)"
# Debian's Chromium, and the pinned npm packages of tests/browser.
if [ ! -x /usr/bin/chromium ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
# Installed again whenever package-lock.json differs from the one the
# present node_modules was installed from (its checksum is kept beside it).
lock_sum="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
if [ "$(cat tests/browser/node_modules/.package-lock.sha256 2>/dev/null)" != "$lock_sum" ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
    echo "$lock_sum" >tests/browser/node_modules/.package-lock.sha256
fi
# The tests start target/debug/coffer, which `cargo test` above built for
# the HTTP-level tests. (A separate `cargo build -p coffer` would resolve
# features differently and rebuild DataFusion for minutes.)
test -x target/debug/coffer
node --test tests/browser/

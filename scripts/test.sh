#!/usr/bin/env bash
# Runs every Coffer test. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== browser tests (headless Chromium, playwright-core)"
# Debian's Chromium, and the pinned npm packages of tests/browser.
if [ ! -x /usr/bin/chromium ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi
if [ ! -d tests/browser/node_modules ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
fi
# The tests start target/debug/coffer, which `cargo test` above built for
# the HTTP-level tests. (A separate `cargo build -p coffer` would resolve
# features differently and rebuild DataFusion for minutes.)
test -x target/debug/coffer
node --test tests/browser/

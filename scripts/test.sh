#!/usr/bin/env bash
# Runs every Coffer test. Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Installs the pinned npm packages of a folder again whenever its
# package-lock.json differs from the one the present node_modules was
# installed from (its checksum is kept beside it).
npm_ci() {
    local lock_sum
    lock_sum="$(sha256sum "$1/package-lock.json" | cut -d' ' -f1)"
    if [ "$(cat "$1/node_modules/.package-lock.sha256" 2>/dev/null)" != "$lock_sum" ]; then
        (cd "$1" && npm ci --no-audit --no-fund)
        echo "$lock_sum" >"$1/node_modules/.package-lock.sha256"
    fi
}

echo "== schemathesis and psycopg (for the OpenAPI conformance and Postgres driver tests)"
# Pinned schemathesis and psycopg in a virtualenv kept between runs.
venv="${COFFER_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/coffer-tests-venv}"
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis==4.32.5
fi
export COFFER_SCHEMATHESIS="$venv/bin/st"
psycopg_version=3.3.9
if [ "$("$venv/bin/python" -c 'import psycopg; print(psycopg.__version__)' 2>/dev/null)" != "$psycopg_version" ]; then
    "$venv/bin/pip" install --quiet "psycopg[binary]==$psycopg_version"
fi
export COFFER_PSYCOPG_PYTHON="$venv/bin/python"

echo "== node-postgres (for the Postgres driver tests)"
# The pinned pg of tests/pg-clients, whose scripts the pgwire driver tests run.
npm_ci tests/pg-clients

echo "== TypeScript (for the codegen tests)"
# The pinned typescript of tests/codegen, whose tsc checks what
# `coffer codegen --lang ts` writes.
npm_ci tests/codegen

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
npm_ci tests/browser
# The tests start target/debug/coffer, which `cargo test` above built for
# the HTTP-level tests. (A separate `cargo build -p coffer` would resolve
# features differently and rebuild DataFusion for minutes.)
test -x target/debug/coffer
node --test tests/browser/

echo "== TypeScript SDK (sdk/typescript, against target/debug/coffer)"
npm_ci sdk/typescript
(cd sdk/typescript && npm run build && npm test)

echo "== Example apps (sdk/examples, headless Chromium)"
npm_ci sdk/examples
(cd sdk/examples && npm test)

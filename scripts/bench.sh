#!/usr/bin/env bash
# The Envoy load benchmark (see scripts/bench.py): nhi-guard vs passthrough vs jwt_authn+RBAC.
# Writes a markdown table to stdout and target/bench-results.md. Full run: about 10 minutes.
# NHI_GUARD_BENCH_SMOKE=1 runs a short version that only proves the harness works (the test command does).
set -euo pipefail
cd "$(dirname "$0")/.."
NHI_GUARD_SETUP_WASM_BINDGEN=0 source scripts/setup.sh
cargo build --quiet --release --lib --target wasm32-wasip1
cargo build --quiet --release --bin nhi-guard
exec python3 scripts/bench.py

#!/usr/bin/env bash
# The Envoy load benchmark (see scripts/bench.py): nhi-guard vs passthrough, jwt_authn+RBAC, and two
# floors (an empty proxy-wasm filter, ext_authz to an allow-all service). Writes a markdown table to
# stdout and target/bench-results.md. Full run: about 20 minutes.
# NHI_GUARD_BENCH_SMOKE=1 runs a short version that only proves the harness works (the test command does).
set -euo pipefail
cd "$(dirname "$0")/.."
NHI_GUARD_SETUP_WASM_BINDGEN=0 source scripts/setup.sh
cargo build --quiet --release --lib --target wasm32-wasip1
cargo build --quiet --release --bin nhi-guard
cargo build --quiet --release --target wasm32-wasip1 --locked --manifest-path benches/empty-filter/Cargo.toml \
  --target-dir target/empty-filter
exec python3 scripts/bench.py

#!/usr/bin/env bash
# Runs every test: lints, the core natively, the core as wasm under Node, the filter in the real
# Envoy, the demo's own check, and a smoke run of the load benchmark. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
start=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(( $(date +%s) - start ))"; }

step "format and lints (clippy denies unwrap/expect/panic outside tests)"
cargo fmt --check
cargo clippy --quiet --all-targets -- -D warnings
cargo clippy --quiet --lib --target wasm32-wasip1 -- -D warnings

step "build the filter (wasm32-wasip1, release)"
cargo build --quiet --release --lib --target wasm32-wasip1
ls -l target/wasm32-wasip1/release/nhi_guard.wasm
# A test-only module that can be made to trap (feature test-trap), for the after-a-trap test; never shipped.
cargo build --quiet --release --lib --target wasm32-wasip1 --features test-trap --target-dir target/trap

step "core, CLI and end-to-end tests (native; e2e drives the real Envoy)"
cargo test --quiet

step "fuzz targets still compile (running them is scripts/fuzz.sh)"
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins

step "core tests compiled to wasm32-unknown-unknown, run by wasm-bindgen-test under Node"
cargo test --lib --target wasm32-unknown-unknown

step "demo check: Envoy + filter + example policy + upstream, and the curl lines it prints"
scripts/demo.sh --check

step "load benchmark smoke run (short; the full run is scripts/bench.sh)"
NHI_GUARD_BENCH_SMOKE=1 scripts/bench.sh

step "all tests passed"

#!/usr/bin/env bash
# Long-running check (not in the test command): the soak in scripts/soak.py, 10 minutes by default
# (SOAK_MINUTES=N for another length). Results in target/soak-results.md and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
NHI_GUARD_SETUP_WASM_BINDGEN=0 source scripts/setup.sh
cargo build --quiet --release --lib --target wasm32-wasip1
cargo build --quiet --release --bin nhi-guard
exec python3 scripts/soak.py

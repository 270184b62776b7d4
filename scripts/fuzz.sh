#!/usr/bin/env bash
# Long-running check (not in the test command): every cargo-fuzz target run to at least RUNS
# executions (default 10 000 000) with no finding, one after the other, starting from the seed
# corpus in fuzz/seeds/<target>. Writes executions, time and corpus size per target to
# target/fuzz-results.md; a crash stops the run and leaves its input in fuzz/artifacts/<target>.
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000000}
shift || true
NHI_GUARD_SETUP_WASM_BINDGEN=0 source scripts/setup.sh
if ! target/tools/bin/cargo-fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz into target/tools"
  cargo install --quiet cargo-fuzz --root target/tools
fi
export PATH="$PWD/target/tools/bin:$PATH"
# cargo-fuzz needs nightly flags (sanitizers); the stable toolchain allows them with this.
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
# Build every target first, so a build failure is told apart from a finding.
cargo fuzz build --fuzz-dir fuzz || { echo "fuzz: the targets do not build" >&2; exit 2; }
results=target/fuzz-results.md
mkdir -p target
{
  echo "| target | executions | seconds | exec/s | corpus files | finding |"
  echo "|---|---:|---:|---:|---:|---|"
} > "$results.new"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="target/fuzz-$t.log"
  echo "fuzz: $t to $runs executions (log $log)"
  start=$(date +%s)
  status=0
  cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -runs="$runs" -print_final_stats=1 -max_len=8192 > "$log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{ print $NF }' | tail -1)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  finding="none"
  [ "$status" -eq 0 ] || finding="exit $status: see $log"
  echo "| $t | ${execs:-?} | $secs | $(( ${execs:-0} / (secs > 0 ? secs : 1) )) | $corpus | $finding |" >> "$results.new"
  if [ "$status" -ne 0 ]; then
    mv "$results.new" "$results"
    echo "fuzz: $t found something (exit $status); see $log and fuzz/artifacts/$t" >&2
    exit 1
  fi
done
mv "$results.new" "$results"
cat "$results"

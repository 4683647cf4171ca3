#!/usr/bin/env bash
# Bounded fuzzing of the Helm-values parsers we wrote: --set, values merge/coalesce, the YAML
# error path, YAML merge keys, the unknown-key walk, the chart-rule evaluator
# (preflight/src/cilium/fuzz.rs). Prints
# executions and crashes per target; a crash fails with proptest's shrunk input. Usage: scripts/fuzz-values.sh [CASES_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-100000}"
start=$(date +%s)
PREFLIGHT_FUZZ_CASES="$cases" cargo test -q -p preflight --lib cilium::fuzz -- --nocapture --test-threads=1 2>&1 \
  | grep -oE 'fuzz [^:]+: [0-9]+ executions, [0-9]+ crashes|test result: [^.]+|panicked.*|minimal failing.*'
echo "fuzz-values: ${cases} cases per target in $(( $(date +%s) - start )) s"

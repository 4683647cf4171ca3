#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 30 s each) and prints executions and
# crashes per target. Seeds come from fixtures/nodes. Needs cargo-fuzz and the pinned nightly
# (scripts/setup.sh installs both).  Usage: scripts/fuzz.sh [seconds-per-target] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECS="${1:-30}"; shift || true
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly-2026-05-20}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cargo +"$TOOLCHAIN" fuzz list)
N=../fixtures/nodes
seed() { # target → seed files
  case "$1" in
    kconfig) ls $N/*/boot/config-* $N/*/usr/lib/modules/*/config $N/*/proc/config.gz ;;
    mountinfo) ls $N/*/proc/1/mountinfo ;;
    modules_dep) ls $N/*/lib/modules/*/modules.dep ;;
    containerd_toml) find $N -name 'config.toml*' ;;
    cni_config) find $N -name '*.conflist' ;;
    k3s_yaml) find $N -path '*rancher/k3s/config.yaml*' -type f ;;
    node_config_h) find $N -name '*.h' ;;
    os_release) ls $N/*/etc/os-release ;;
    iptables_save) ls ../fixtures/iptables/*.save ;;
    set_expr) ls ../fixtures/set/*.txt ;;
    values_yaml) ls ../fixtures/values/*.yaml ../fixtures/charts/*/values.yaml ;;
    reports) ls ../fixtures/reports/* ;;
    chart_rules) ls seeds/chart_rules/* ;;
    elf_object) find ../target/debug/build -path '*out*' -name '*.o' 2>/dev/null | head -20 ;;
    tar_extract) # tars made here from a fixture (plain and gzip), straight into the corpus
      tar -cf corpus/tar_extract/seed-mini-chart.tar -C ../fixtures/charts mini-cilium
      tar -czf corpus/tar_extract/seed-mini-chart.tar.gz -C ../fixtures/charts mini-cilium ;;
  esac 2>/dev/null || true
}
# The canary eBPF object is irrelevant to parsers; skip building it under the sanitizer.
export AYA_BUILD_SKIP=1
status=0
printf '%-16s %12s %8s\n' target executions crashes > fuzz-summary.txt
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  for f in $(seed "$t"); do cp -f "$f" "corpus/$t/seed-$(basename "$(dirname "$f")")-$(basename "$f")"; done
  log="fuzz-$t.log"
  if cargo +"$TOOLCHAIN" fuzz run "$t" "corpus/$t" -- -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=1024 -max_len=65536 >"$log" 2>&1; then :; else status=1; fi
  execs=$( (grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" || true) | grep -oE '[0-9]+$' | tail -1 || true)
  crashes=$(find "artifacts/$t" -name 'crash-*' 2>/dev/null | wc -l)
  printf '%-16s %12s %8s\n' "$t" "${execs:-?}" "$crashes" | tee -a fuzz-summary.txt
  [ "$crashes" -eq 0 ] || status=1
done
cat fuzz-summary.txt
exit $status

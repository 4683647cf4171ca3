#!/usr/bin/env bash
# Benchmark (not a test): median wall time and peak RSS (the largest process of the tree: the
# canary worker is waited for, so it counts) of `preflight run --no-compile` (no compile stage) on
# this machine, live with and without the attach canaries, and against a fixture root.
# Targets: < 150 ms, < 30 MB.
# Usage: scripts/bench.sh [runs]   (release build; BIN=path overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-21}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p preflight >/dev/null 2>&1 || cargo build --release -p preflight
  BIN=target/release/preflight
fi
python3 - "$BIN" "$RUNS" <<'PY'
import os, statistics, sys, time
binary, runs = sys.argv[1], int(sys.argv[2])
cases = {
    "live, canaries on": ["run", "--no-compile", "--format", "json"],
    "live, no canaries": ["run", "--no-canaries", "--no-compile", "--format", "json"],
    "fixture k3s-flannel": ["run", "--no-canaries", "--no-compile", "--format", "json", "--root", "fixtures/nodes/k3s-flannel"],
}
for name, args in cases.items():
    walls, rss = [], []
    for _ in range(runs):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1); os.dup2(fd, 2)
            os.execv(binary, [binary] + args)
        _, status, usage = os.wait4(pid, 0)
        walls.append((time.perf_counter() - start) * 1e3)
        rss.append(usage.ru_maxrss / 1024)  # KiB → MiB
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            sys.exit(f"{name}: exit {code}")
    print(f"{name:<20} median wall {statistics.median(walls):7.1f} ms  (min {min(walls):.1f}, max {max(walls):.1f})"
          f"   peak RSS {max(rss):5.1f} MiB   runs {runs}")
PY

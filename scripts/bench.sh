#!/usr/bin/env bash
# Benchmark (not a test): median wall time, CPU time and peak RSS (the largest process of the tree:
# the canary worker is waited for, so it counts) of `preflight run --no-compile` (no compile stage)
# on this machine, live with and without the attach canaries, with the canaries at -vv (the
# aya-log build of the programs), and against a fixture root.
# Targets: < 150 ms, < 30 MB.
# Usage: scripts/bench.sh [runs]   (release build; BIN=path overrides the binary)
#        BASE=path/to/other/preflight scripts/bench.sh   compares two binaries, runs alternating
#        (a busy machine slows both alike). Copy both binaries just before: a binary whose pages
#        left the page cache faults fewer of them in and shows a smaller RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-21}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p preflight >/dev/null 2>&1 || cargo build --release -p preflight
  BIN=target/release/preflight
fi
python3 - "$RUNS" "$BIN" ${BASE:+"$BASE"} <<'PY'
import os, statistics, sys, time
runs, binaries = int(sys.argv[1]), sys.argv[2:]
cases = {
    "live, canaries on": ["run", "--no-compile", "--format", "json"],
    "live, canaries -vv": ["run", "--no-compile", "--format", "json", "-vv"],
    "live, no canaries": ["run", "--no-canaries", "--no-compile", "--format", "json"],
    "fixture k3s-flannel": ["run", "--no-canaries", "--no-compile", "--format", "json", "--root", "fixtures/nodes/k3s-flannel"],
}
def once(binary, args):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1); os.dup2(fd, 2)
        os.execv(binary, [binary] + args)
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"{binary} {' '.join(args)}: exit {code}")
    # CPU and RSS include the waited-for children (the canary worker).
    return ((time.perf_counter() - start) * 1e3, (usage.ru_utime + usage.ru_stime) * 1e3,
            usage.ru_maxrss / 1024)  # KiB -> MiB

for name, args in cases.items():
    got = {b: [] for b in binaries}
    for _ in range(runs):
        for b in binaries:
            got[b].append(once(b, args))
    for b in binaries:
        wall, cpu, rss = zip(*got[b])
        label = name if len(binaries) == 1 else f"{name} [{b}]"
        print(f"{label:<20} median wall {statistics.median(wall):7.1f} ms  (min {min(wall):.1f}, max {max(wall):.1f})"
              f"   median CPU {statistics.median(cpu):6.1f} ms   peak RSS {max(rss):5.1f} MiB   runs {runs}")
PY

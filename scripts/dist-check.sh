#!/usr/bin/env bash
# The shipped artifacts themselves (docs/fleet.md, "The artifacts that ship"): builds the static
# binary for amd64 and arm64 once each (`cargo xtask dist`) and the release build once, runs
# every fixture node and compile fixture through all of them (arm64 under qemu-user) and fails
# on a crash or a verdict other than the release build's; then the kernel-upgrade gate from the
# amd64 artifact alone on Debian's 6.1 and 6.12 cloud kernels under qemu (TCG), and the same
# from the amd64 artifact with `--arch arm64` on Debian's 6.1 and 6.12 cloud-arm64 kernels
# (qemu-system-aarch64, TCG) with the arm64 artifact inside. Prints the time of each step. Live
# cases need root (CI is root); elsewhere they are skipped and say so.
# PREFLIGHT_DIST_CHECK_ARGS adds flags, e.g. "--no-gate" or "--arch amd64".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
cargo xtask dist-check ${PREFLIGHT_DIST_CHECK_ARGS:-}

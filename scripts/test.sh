#!/usr/bin/env bash
# The test command (README): formatting, lints for both crates, then every test. Root runs the
# privileged tests for real (real bpf(), namespaces, cgroups); non-root lists them as ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --exclude preflight-ebpf --all-targets -- -D warnings
# The eBPF crate: same lints, built for its own target with the pinned toolchain, in both of
# its builds (the default one and the aya-log one that `-vv` loads).
for features in "" log; do
  (cd preflight-ebpf && cargo +nightly-2026-05-20 clippy --target bpfel-unknown-none \
    -Z build-std=core --release --features "$features" -- -D warnings)
done
# Every test; one that needs what this machine lacks (root, clang-NN, setpriv, ../shared) is
# listed as ignored with its reason (preflight/build.rs's `prereq` cfg), never passed silently.
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
set +e
cargo test --workspace --exclude preflight-ebpf --no-fail-fast 2>&1 | tee "$test_log"
tests_status=${PIPESTATUS[0]}
set -e
bash scripts/ignored-tests.sh "$test_log"
[ "$tests_status" = 0 ] || exit "$tests_status"
# `preflight job` manifests against the Kubernetes API schema (1.33-1.37).
bash scripts/validate-manifests.sh
# The shipped static binaries (amd64, arm64 under qemu-user) on every fixture, against the
# release build's verdict, and the kernel-upgrade gate from the amd64 one (docs/fleet.md).
bash scripts/dist-check.sh

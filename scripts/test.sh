#!/usr/bin/env bash
# The test command (README): formatting, lints for both crates, then every test. Root runs the
# privileged tests for real (real bpf(), namespaces, cgroups); non-root skips them and says why.
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
cargo test --workspace --exclude preflight-ebpf --no-fail-fast
# The compile golden reports need root and clang-19 (tests/golden_reports.rs, ~5 s).
if [ "$(id -u)" = 0 ]; then
  cargo test -p preflight --test golden_reports -- --ignored
else
  echo "SKIP golden_reports::compile_fixtures_match_the_golden_files: needs root" >&2
fi
# `preflight job` manifests against the Kubernetes API schema (1.33-1.37).
bash scripts/validate-manifests.sh
# The shipped static binaries (amd64, arm64 under qemu-user) on every fixture, against the
# release build's verdict, and the kernel-upgrade gate from the amd64 one (docs/fleet.md).
bash scripts/dist-check.sh

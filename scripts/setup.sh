#!/usr/bin/env bash
# Takes a fresh Debian 12 machine of this project's kind to a working build and test run.
# Idempotent: every step checks first and returns quickly when its work is already done.
# Each step says why it is there; docs/compile.md and docs/probe.md say what the toolchains are for.
set -euo pipefail

# The eBPF crate must be compiled by a rustc whose LLVM matches bpf-linker's (22).
# The undated `nightly` moved to LLVM 23, so pin the dated one the image ships.
EBPF_TOOLCHAIN=${EBPF_TOOLCHAIN:-nightly-2026-05-20}
LLVM_MAJOR=22
# clang-19 matches the LLVM bundled in Cilium >= 1.18 images (19.1.7); clang-16 is the nearest
# Debian offers to 1.16's LLVM 17 and compiles 1.14-1.16 sources without -Wshorten-64-to-32 errors;
# clang-14, the oldest the real-tree tests compile every shared Cilium tree with.
CLANGS=(clang-19 clang-16 clang-14)

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

apt_packages=(
  "llvm-${LLVM_MAJOR}-dev"     # libLLVM for bpf-linker
  "${CLANGS[@]}"               # the datapath compile stage
  libclang1-19 libclang1-16 libclang1-14  # clang-sys loads the compiling clang's libclang for structured diagnostics
  llvm-19 llvm-16 llvm-14      # llc-NN for the Cilium 1.14 clang | llc pipeline, llvm-objdump
  bpftool                      # the peer tool in the probe benchmark
  iproute2                     # ip netns / veth for the attach canaries' scratch namespace; tc for tests/rehearsal.rs
  iptables                     # tests/cluster.rs: flannel's rules removed and restored for real in each node's netns
  make                         # tests read a real bpf tree's own Makefile options (tests/elf_real_trees.rs)
  qemu-system-x86 busybox-static cpio  # cargo xtask vm-test: real Debian kernels under TCG
  qemu-system-arm curl         # vm-test/gate --arch arm64: Debian arm64 kernels under qemu-system-aarch64 (TCG), their .debs over HTTPS
  docker-registry skopeo       # tests/compile_source.rs: a real OCI registry on 127.0.0.1 and a client to push to it
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross  # the arm64 artifact: cross linker, static glibc
  qemu-user-static             # scripts/dist-check.sh runs the arm64 artifact on the fixtures
)
missing=()
for p in "${apt_packages[@]}"; do have_pkg "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
  say "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
  # On a machine run by systemd the docker-registry package starts its own registry on :5000;
  # the tests start theirs on a free loopback port, so the packaged one is not wanted.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1 \
     && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
else
  say "apt: all packages present"
fi

if ! command -v bpf-linker >/dev/null 2>&1; then
  # Without LLVM_PREFIX its build finds the LLVM-14 llvm-config on PATH and fails to link -lLLVM;
  # the default feature wants LLVM 23, which Debian does not have.
  say "cargo: installing bpf-linker against LLVM ${LLVM_MAJOR} (about 80 s)"
  LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" cargo install bpf-linker --locked \
    --no-default-features --features "llvm-${LLVM_MAJOR}"
else
  say "bpf-linker present: $(bpf-linker --version 2>/dev/null || echo unknown version)"
fi

# rust-src to build `core` for the BPF target; clippy to lint the eBPF crate (scripts/test.sh).
if ! rustup run "$EBPF_TOOLCHAIN" rustc --print sysroot >/dev/null 2>&1 \
   || [ ! -d "$(rustup run "$EBPF_TOOLCHAIN" rustc --print sysroot)/lib/rustlib/src/rust/library" ] \
   || ! rustup run "$EBPF_TOOLCHAIN" cargo-clippy --version >/dev/null 2>&1; then
  say "rustup: installing $EBPF_TOOLCHAIN with rust-src and clippy"
  rustup toolchain install "$EBPF_TOOLCHAIN" --profile minimal -c rust-src -c clippy
fi
llvm_of_ebpf_rustc=$(rustup run "$EBPF_TOOLCHAIN" rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
if [ "$llvm_of_ebpf_rustc" != "$LLVM_MAJOR" ]; then
  say "error: $EBPF_TOOLCHAIN has LLVM $llvm_of_ebpf_rustc, bpf-linker needs LLVM $LLVM_MAJOR"
  exit 1
fi
say "eBPF toolchain $EBPF_TOOLCHAIN (LLVM $llvm_of_ebpf_rustc) ready"

# The arm64 artifact (`cargo xtask dist --arch arm64`) needs the target's standard library.
if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  say "rustup: adding target aarch64-unknown-linux-gnu (about 40 s)"
  rustup target add aarch64-unknown-linux-gnu
fi

# cargo-fuzz for scripts/fuzz.sh (not needed by the tests; runs the fuzz targets on the nightly above).
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "cargo: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
else
  say "cargo-fuzz present: $(cargo fuzz --version)"
fi

# scripts/validate-manifests.sh checks `preflight job` output against the Kubernetes API schema
# offline with kubernetes-validate (bundled schemas up to 1.37).
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  say "pip: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
  python3 -m pip install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    || python3 -m pip install --quiet --break-system-packages \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
else
  say "kubernetes-validate present: $(kubernetes-validate --version 2>/dev/null || echo unknown version)"
fi

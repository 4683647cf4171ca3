# The preflight image for `preflight job` (docs/fleet.md). Build where an image builder exists:
#   docker build -t preflight:0.1.0 .        (or: podman build / buildah bud / nerdctl build)
# Stage 1 builds the static binary with `cargo xtask dist`; stage 2 adds the clang the
# datapath compile stage runs. Nothing here runs on the machine this repository is tested on.

# --- build: toolchain recipe from scripts/setup.sh and ../shared/ENVIRONMENT.md -------------
FROM rust:1.95-bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
# bpf-linker needs libLLVM 22 (the LLVM of the pinned nightly that compiles preflight-ebpf);
# llvm-22 (a dependency) brings llvm-strip-22, which `cargo xtask dist` strips with.
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev \
 && rm -rf /var/lib/apt/lists/*
RUN LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --locked \
      --no-default-features --features llvm-22 \
 && rustup toolchain install nightly-2026-05-20 --profile minimal -c rust-src
WORKDIR /src
COPY . .
# The same build as on a workstation: `cargo xtask dist` (crt-static, so the binary also runs in
# a bare initramfs; stripped with llvm-strip, since binutils' strip misreads this binary's
# .strtab; refused if it still has an ELF interpreter). Fail rather than let dist fall back to
# binutils' strip, and check the lock file is current first.
RUN command -v llvm-strip-22 \
 && cargo fetch --locked \
 && cargo xtask dist \
 && cp target/dist/preflight /preflight

# --- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
# clang-19 matches the LLVM in Cilium >= 1.18 images, clang-16 is the nearest to 1.14-1.16's;
# libclang1-19 gives structured diagnostics; libc6-dev/linux-libc-dev are the system headers a
# `-target bpf` compile includes (-I/usr/include/x86_64-linux-gnu).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang-19 clang-16 libclang1-19 libc6-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /preflight /usr/local/bin/preflight
# Root with added capabilities (the DaemonSet grants BPF, PERFMON, NET_ADMIN, SYS_ADMIN,
# SYS_RESOURCE); without them the live probes report "unknown", never "fail".
USER 0
ENTRYPOINT ["/usr/local/bin/preflight"]
CMD ["run", "--root", "/host", "--host-kernel", "--format", "json-line"]

# The preflight image for `preflight job` (docs/fleet.md), one per architecture (amd64, arm64).
# Build where an image builder exists (BuildKit: it sets TARGETARCH and BUILDARCH):
#   docker buildx build --platform linux/amd64 -t REGISTRY/preflight:0.1.0-amd64 --load .
#   docker buildx build --platform linux/arm64 -t REGISTRY/preflight:0.1.0-arm64 --load .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/preflight:0.1.0 --push .
# Stage 1 builds the static binary with `cargo xtask dist --arch $TARGETARCH` on the build
# machine's own architecture (an arm64 image is cross-built, not emulated); stage 2 adds the
# clangs the datapath compile stage runs. Nothing here runs on the machine this repository is
# tested on (no image builder there); scripts/dist-check.sh runs the same binaries on every
# fixture node instead.
#
# Base images are pinned by the digest of their multi-architecture index, so a rebuild cannot
# change underneath a tag and each platform resolves its own image from the index. The digests
# are the ones BuildKit resolved for `rust:1.95-bookworm` and `debian:bookworm-slim` in a public
# build log of 2026-09-27; they could not be re-checked from the machine this was written on
# (it reaches no container registry). Check or refresh them with
#   docker buildx imagetools inspect rust:1.95-bookworm
#   docker buildx imagetools inspect debian:bookworm-slim

# --- build: toolchain recipe from scripts/setup.sh ------------------------------------------
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
ARG TARGETARCH
ARG BUILDARCH
ENV DEBIAN_FRONTEND=noninteractive
# bpf-linker needs libLLVM 22 (the LLVM of the pinned nightly that compiles preflight-ebpf);
# llvm-22 (a dependency) brings llvm-strip-22, which `cargo xtask dist` strips with. A target
# other than the build machine's needs Debian's cross gcc (its linker and static glibc) and
# the Rust standard library for that target.
RUN case "$TARGETARCH" in \
      amd64) cross=gcc-x86-64-linux-gnu triple=x86_64-unknown-linux-gnu ;; \
      arm64) cross=gcc-aarch64-linux-gnu triple=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH (amd64, arm64)" >&2; exit 1 ;; \
    esac \
 && if [ "$TARGETARCH" = "$BUILDARCH" ]; then cross=; fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev $cross \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$triple"
RUN LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --locked \
      --no-default-features --features llvm-22 \
 && rustup toolchain install nightly-2026-05-20 --profile minimal -c rust-src
WORKDIR /src
COPY . .
# The same build as on a workstation and in CI: `cargo xtask dist` (crt-static, so the binary
# also runs in a bare initramfs; stripped with llvm-strip; refused if it still has an ELF
# interpreter, is for the wrong machine, or lost the eBPF object). Check the lock file first.
RUN cargo fetch --locked \
 && cargo xtask dist --arch "$TARGETARCH" \
 && cp "target/dist/$TARGETARCH/preflight" /preflight

# --- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251
ENV DEBIAN_FRONTEND=noninteractive
# clang-19 matches the LLVM in Cilium >= 1.18 images, clang-16 is the nearest to 1.14-1.16's;
# libc6-dev/linux-libc-dev are the system headers a `-target bpf` compile includes
# (-I/usr/include/<multiarch>). No libclang: the binary is static and never loads it (it would
# crash inside libLLVM); clang's text diagnostics give the same findings (docs/fleet.md).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      clang-19 clang-16 libc6-dev linux-libc-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /preflight /usr/local/bin/preflight
# Root with added capabilities (the DaemonSet grants them); without them the live probes
# report "unknown", never "fail".
USER 0
ENTRYPOINT ["/usr/local/bin/preflight"]
CMD ["run", "--root", "/host", "--host-kernel", "--format", "json-line"]

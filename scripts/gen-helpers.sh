#!/usr/bin/env bash
# Regenerates preflight/src/probe/helpers.rs from aya-obj's UAPI bindings (enum bpf_func_id).
set -euo pipefail
bindings=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/aya-obj-0.3.0 | head -1)/src/generated/linux_bindings_x86_64.rs
out=$(dirname "$0")/../preflight/src/probe/helpers.rs
{
  echo '//! Every BPF helper by UAPI id (include/uapi/linux/bpf.h `enum bpf_func_id`; ids are stable ABI).'
  echo '//! Generated from aya-obj 0.3.0 bindings by scripts/gen-helpers.sh; do not edit by hand.'
  echo 'use aya::sys::BpfHelper;'
  echo
  echo 'pub const HELPERS: &[(&str, BpfHelper)] = &['
  grep -oE 'BPF_FUNC_[a-z0-9_]+ = [0-9]+' "$bindings" | grep -v 'BPF_FUNC_unspec' |
    sed -E 's/BPF_FUNC_([a-z0-9_]+) = [0-9]+/    ("\1", BpfHelper::BPF_FUNC_\1),/'
  echo '];'
} > "$out"

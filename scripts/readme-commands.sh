#!/usr/bin/env bash
# The README's "Two commands", run as written: each ```sh block of that section, taken from
# README.md itself (so the README cannot drift from what CI runs), in order. `.ci/run` is this
# script. The first command ends with `preflight run` on this machine: a verdict (exit 0 go,
# 1 no-go or go after plan) passes; 2 (bad input, an error, undecided) or a crash fails.
# CARGO_TARGET_DIR is the workspace's target/, so `cargo install` and the tests' release build
# compile once between them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# `cargo install` puts preflight in ~/.cargo/bin, which rustup's profile puts on PATH for a login
# shell; a CI job's shell may not have read it.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

mapfile -t commands < <(awk '
  /^## / { in_section = ($0 == "## Two commands") ; next }
  in_section && /^```sh$/ { in_block = 1; next }
  in_block && /^```$/ { in_block = 0; next }
  in_block { print }
' README.md)
if [ "${#commands[@]}" -ne 2 ]; then
  echo "readme-commands: README.md's \"Two commands\" section shows ${#commands[@]} sh lines, not 2:" >&2
  printf '  %s\n' "${commands[@]}" >&2
  exit 2
fi

# Each `a && b` part on its own, as `&&` runs them, so that a part that fails stops the run
# and `preflight run`'s verdict (exit 1 is an answer, not a failure) is told from an error.
for command in "${commands[@]}"; do
  rest=$command
  while [ -n "$rest" ]; do
    part=${rest%% && *}
    [ "$part" = "$rest" ] && rest="" || rest=${rest#* && }
    printf '\033[1mreadme-commands:\033[0m %s\n' "$part" >&2
    start=$SECONDS
    set +e
    bash -euo pipefail -c "$part"
    status=$?
    set -e
    printf '\033[1mreadme-commands:\033[0m exit %s after %s s\n' "$status" $((SECONDS - start)) >&2
    case "$part" in
      "preflight run"*) [ "$status" -le 1 ] || exit "$status" ;;
      *) [ "$status" = 0 ] || exit "$status" ;;
    esac
  done
done

#!/usr/bin/env bash
# Summarises the ignored tests in a `cargo test` log: the count (from the `test result:`
# summaries), then each reason with how many tests it holds back, so a CI log shows how much did
# not run. Reads libtest's `test NAME ... ignored, REASON` and libtest-mimic's
# `test NAME ... ignored (REASON)`.
# With CI=true it fails when a test was ignored for something CI provides (root, the tools
# scripts/setup.sh installs) or for no stated reason: only test data outside the repository
# (../shared), a kernel without /proc/config.gz and tests marked slow may be missing there; an
# "entry point" is no test but the body a test runs in a child process (e.g. the rehearsal's).
set -euo pipefail
log="$1"
total=$(sed -n 's/^test result: .* \([0-9][0-9]*\) ignored;.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
echo "ignored tests: $total"
# One line per ignored test: its reason, a tab, the test's name.
ignored=$(sed -n \
  -e 's/^test \(.*\) \.\.\. ignored, \(.*\)$/\2\t\1/p' \
  -e 's/^test \(.*\) \.\.\. ignored (\(.*\))$/\2\t\1/p' \
  -e 's/^test \(.*\) \.\.\. ignored$/(no reason given)\t\1/p' "$log")
[ -z "$ignored" ] || printf '%s\n' "$ignored" | cut -f1 | sort | uniq -c | sort -rn | sed 's/^ */  /'
if [ "${CI:-}" = true ] && [ -n "$ignored" ]; then
  unexpected=$(printf '%s\n' "$ignored" | grep -v -e 'shared' -e '/proc/config.gz' -e '^slow' -e '^entry point' || true)
  if [ -n "$unexpected" ]; then
    echo "error: CI can run these tests, yet they were ignored (reason, test):" >&2
    printf '%s\n' "$unexpected" | sed 's/^/  /' >&2
    exit 1
  fi
fi

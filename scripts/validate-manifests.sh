#!/usr/bin/env bash
# Validates `preflight job` output against the Kubernetes API schema of every version the
# manifests target, with kubernetes-validate (PyPI; offline, schemas bundled; setup.sh installs
# it). A negative control proves the validator really rejects a broken manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PREFLIGHT_BIN:-target/debug/preflight}
[ -x "$bin" ] || cargo build -q -p preflight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" job >"$tmp/default.yaml"
"$bin" job --namespace kube-system --no-namespace --image registry.example/preflight:1 \
  --need tunnel-geneve --need wireguard --ignore bpf.x --no-canaries -- --verbose \
  >"$tmp/custom.yaml"

# k8s-openapi is built with feature v1_33 (the oldest it supports); the same YAML must also be
# valid for every newer API version the validator knows.
for version in 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0; do
  kubernetes-validate --strict --quiet -k "$version" "$tmp/default.yaml" "$tmp/custom.yaml"
done

sed 's/hostPID: true/hostPID: "yes"/' "$tmp/default.yaml" >"$tmp/broken.yaml"
if kubernetes-validate --strict --quiet -k 1.33.0 "$tmp/broken.yaml" >/dev/null 2>&1; then
  echo "validate-manifests: kubernetes-validate accepted a broken manifest" >&2
  exit 1
fi
echo "validate-manifests: preflight job output is valid for Kubernetes 1.33-1.37 (strict)"

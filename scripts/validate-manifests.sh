#!/usr/bin/env bash
# Validates `preflight job` output against the Kubernetes API schema of every version the
# manifests target, with kubernetes-validate (PyPI; offline, schemas bundled; setup.sh installs
# it), then checks the API server's volumeMount rules that a schema cannot express. Negative
# controls prove both checks really reject a broken manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PREFLIGHT_BIN:-target/debug/preflight}
[ -x "$bin" ] || cargo build -q -p preflight
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

printf 'tunnelProtocol: geneve\nencryption:\n  enabled: true\n  type: wireguard\n' >"$tmp/values.yaml"
"$bin" job >"$tmp/default.yaml"
"$bin" job --namespace kube-system --no-namespace --image registry.example/preflight:1 \
  --need tunnel-geneve --need wireguard --ignore mounts.bpffs --no-canaries -- --verbose \
  >"$tmp/custom.yaml"
"$bin" job --values "$tmp/values.yaml" --values "$tmp/values.yaml" -- --set hubble.enabled=false \
  >"$tmp/values-shipped.yaml"
"$bin" job --cilium-version 1.16.4 --set hubble.enabled=false --chart /host/opt/cilium-chart \
  -f "$tmp/values.yaml" >"$tmp/target-flags.yaml"
manifests=("$tmp/default.yaml" "$tmp/custom.yaml" "$tmp/values-shipped.yaml" "$tmp/target-flags.yaml")

# k8s-openapi is built with feature v1_33 (the oldest it supports); the same YAML must also be
# valid for every newer API version the validator knows.
for version in 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0; do
  kubernetes-validate --strict --quiet -k "$version" "${manifests[@]}"
done

sed 's/readOnly: true/readOnly: "yes"/' "$tmp/default.yaml" >"$tmp/broken.yaml"
cmp -s "$tmp/default.yaml" "$tmp/broken.yaml" && { echo "validate-manifests: the broken manifest is not broken" >&2; exit 1; }
if kubernetes-validate --strict --quiet -k 1.33.0 "$tmp/broken.yaml" >/dev/null 2>&1; then
  echo "validate-manifests: kubernetes-validate accepted a broken manifest" >&2
  exit 1
fi

# The API server's own validation (pkg/apis/core/validation) also refuses, per volumeMount:
# recursiveReadOnly without readOnly: true; recursiveReadOnly IfPossible/Enabled with a
# mountPropagation other than None (the VolumeMount field docs of the API reference say so);
# Bidirectional propagation in an unprivileged container. kubernetes-validate checks the
# OpenAPI schema only, which cannot say any of that, so check it here.
volume_rules() {
  python3 - "$@" <<'PY'
import sys, yaml
bad = []
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec")
        if not pod:
            continue
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            privileged = (c.get("securityContext") or {}).get("privileged", False)
            for m in c.get("volumeMounts") or []:
                at = f"{path}: {doc['kind']} {doc['metadata']['name']}, container {c['name']}, volumeMount {m['name']}"
                prop, rro = m.get("mountPropagation"), m.get("recursiveReadOnly")
                if prop not in (None, "None", "HostToContainer", "Bidirectional"):
                    bad.append(f"{at}: mountPropagation {prop!r} is not a value")
                if prop == "Bidirectional" and not privileged:
                    bad.append(f"{at}: Bidirectional propagation needs a privileged container")
                if rro is None:
                    continue
                if rro not in ("Disabled", "IfPossible", "Enabled"):
                    bad.append(f"{at}: recursiveReadOnly {rro!r} is not a value")
                if m.get("readOnly") is not True:
                    bad.append(f"{at}: recursiveReadOnly without readOnly: true")
                if rro in ("IfPossible", "Enabled") and prop not in (None, "None"):
                    bad.append(f"{at}: recursiveReadOnly {rro} with mountPropagation {prop}")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}
volume_rules "${manifests[@]}"
# The pairing the DaemonSet once had must be caught.
sed 's/^\( *\)recursiveReadOnly: IfPossible/&\n\1mountPropagation: HostToContainer/' \
  "$tmp/default.yaml" >"$tmp/propagation.yaml"
grep -q 'mountPropagation: HostToContainer' "$tmp/propagation.yaml"
if volume_rules "$tmp/propagation.yaml" 2>/dev/null; then
  echo "validate-manifests: the volumeMount rules accepted recursiveReadOnly with HostToContainer" >&2
  exit 1
fi
echo "validate-manifests: preflight job output is valid for Kubernetes 1.33-1.37 (strict)" \
  "and keeps the volumeMount rules"

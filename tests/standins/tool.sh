#!/bin/bash
tool=$(basename "$0")
{ printf '%s' "$tool"; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> "$STANDIN_DIR/argv.log"
line="$tool $*"
if [ -n "$STANDIN_FAIL" ] && [[ "$line" == *"$STANDIN_FAIL"* ]]; then
  echo "stand-in $tool: told to fail on: $STANDIN_FAIL" >&2; exit 1
fi
links="$STANDIN_DIR/links"; mkdir -p "$links"
case "$tool" in
ip)
  if [ "$1 $2 $3 $4 $5" = "-d -j addr show dev" ]; then
    if [ -f "$links/$6" ]; then cat "$links/$6"; exit 0; fi
    echo "Device \"$6\" does not exist." >&2; exit 1
  fi
  if [ "$1 $2" = "link del" ]; then rm -f "$links/$3"; exit 0; fi
  if [ "$1 $2" = "link add" ]; then echo "[{\"ifname\":\"$3\",\"recreated\":true}]" > "$links/$3"; exit 0; fi
  exit 0 ;;
helm)
  case "$1" in
  status) [ -f "$STANDIN_DIR/release-$2" ] && { echo '{"version":1,"info":{"status":"deployed"},"chart":{"metadata":{"version":"0"}}}'; exit 0; }
          echo "Error: release: not found" >&2; exit 1 ;;
  upgrade)
    touch "$STANDIN_DIR/release-$3"
    # What the Cilium agent does on the node once the chart is applied.
    mkdir -p "$STANDIN_ROOT/etc/cni/net.d" "$STANDIN_ROOT/opt/cni/bin"
    echo '{"cniVersion":"0.3.1","name":"cilium","plugins":[{"type":"cilium-cni"}]}' > "$STANDIN_ROOT/etc/cni/net.d/05-cilium.conflist"
    printf 'ELF stand-in\n' > "$STANDIN_ROOT/opt/cni/bin/cilium-cni"; chmod 755 "$STANDIN_ROOT/opt/cni/bin/cilium-cni"
    mkdir -p "$STANDIN_ROOT/var/run/cilium/state/globals"
    echo '/* fresh header */' > "$STANDIN_ROOT/var/run/cilium/state/globals/node_config.h"
    echo '[{"ifname":"cilium_host"}]' > "$links/cilium_host"
    exit 0 ;;
  uninstall) rm -f "$STANDIN_DIR/release-$2"; exit 0 ;;
  esac
  exit 0 ;;
kubectl)
  case "$*" in
  *" logs "*) printf '%s\n' "$STANDIN_AGENT_LOG" ;;
  *hostNetwork*) printf '%s\n' "kube-system|cilium-x7k2p|true|DaemonSet" "default|web-0||ReplicaSet" "default|scratch||" ;;
  *jsonpath*) echo "kube-system/coredns-7b98449c4-x2x9v Running 10.42.0.17"; echo "default/web-0 Pending" ;;
  esac
  exit 0 ;;
systemctl)
  case "$1" in
  is-active|is-enabled)
    if [ -n "$STANDIN_ACTIVE" ] && [[ "$*" == *"$STANDIN_ACTIVE"* ]]; then exit 0; fi
    exit 1 ;;
  restart)
    # k3s regenerates containerd's config on start: with flannel off it drops its CNI dirs.
    cfg="$STANDIN_ROOT/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    # An agent does the same once its server runs without flannel (STANDIN_SERVER_MIGRATED).
    if { [ -f "$STANDIN_ROOT/etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml" ] || [ -n "$STANDIN_SERVER_MIGRATED" ]; } && [ -f "$cfg" ]; then
      sed -i -e 's|bin_dir = .*|bin_dir = "/opt/cni/bin"|' -e 's|conf_dir = .*|conf_dir = "/etc/cni/net.d"|' "$cfg"
    fi ;;
  esac
  exit 0 ;;
iptables-save) cat "$STANDIN_DIR/iptables" 2>/dev/null; exit 0 ;;
iptables-restore) cp "$1" "$STANDIN_DIR/iptables"; exit 0 ;;
iptables)
  # -X CHAIN: the chain and every rule naming it are gone (what -D, -F and -X do together).
  if [ "$3" = "-X" ]; then sed -i "/$4/d" "$STANDIN_DIR/iptables"; fi
  exit 0 ;;
*) exit 0 ;;
esac

#!/usr/bin/env bash
# Writes fixtures/cluster/k3s-three-node/: the node roots of a three-node k3s cluster on flannel
# (one server, two agents) and each node's `preflight run --format json` report.
#
# Nothing about the network is written by hand: each node is a network namespace of this kernel
# set up as flannel sets a node up (eth0 on a shared L2, cni0 with the node's pod subnet,
# flannel.1 VXLAN on UDP 8472, a route to every other node's pod subnet through flannel.1), and
# the node's proc/1/net files and sys/class/net uevents are what the kernel shows inside it. The
# server also has docker0 (172.17.0.0/16) and agent-2 a VPN route (10.44.0.0/16 on wg0, an ifb
# device): ranges the cluster plan must not hand to Cilium. The rest of each root is the
# k3s-flannel-plan fixture node with the node's own k3s config. The reports are real runs of this
# build on those roots with --host-kernel for Cilium 1.18.4 (what the plan installs): node files from the fixture, kernel probes and canaries
# from this machine's kernel (its /proc/config.gz is copied in). Needs root. Re-run after changing the report or the fixture nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PREFLIGHT_BIN:-target/debug/preflight}
[ -x "$bin" ] || cargo build -q -p preflight
out=fixtures/cluster/k3s-three-node
base=fixtures/nodes/k3s-flannel-plan
lan=pfcfx-lan
nodes=(k3s-server k3s-agent-1 k3s-agent-2)
ns() { echo "pfcfx-$1"; }

cleanup() {
  for n in "${nodes[@]}"; do ip netns del "$(ns "$n")" 2>/dev/null || true; done
  ip netns del "$lan" 2>/dev/null || true
}
trap cleanup EXIT INT TERM
cleanup

ip netns add "$lan"
ip -n "$lan" link add br0 type bridge
ip -n "$lan" link set br0 up
for i in 0 1 2; do
  n=${nodes[$i]}
  ip netns add "$(ns "$n")"
  ip link add "pfcfx$i" netns "$lan" type veth peer name eth0 netns "$(ns "$n")"
  ip -n "$lan" link set "pfcfx$i" master br0 up
  x="ip -n $(ns "$n")"
  $x link set lo up
  $x addr add "192.168.50.1$((i + 1))/24" dev eth0
  $x link set eth0 up
  $x route add default via 192.168.50.1
  $x link add cni0 type bridge
  $x addr add "10.42.$i.1/24" dev cni0
  $x link set cni0 up
  $x link add flannel.1 type vxlan id 1 dstport 8472 local "192.168.50.1$((i + 1))" dev eth0 nolearning
  $x addr add "10.42.$i.0/32" dev flannel.1
  $x link set flannel.1 up
  for j in 0 1 2; do
    [ "$j" = "$i" ] && continue
    $x route add "10.42.$j.0/24" via "10.42.$j.0" dev flannel.1 onlink
  done
done
ip -n "$(ns k3s-server)" link add docker0 type bridge
ip -n "$(ns k3s-server)" addr add 172.17.0.1/16 dev docker0
ip -n "$(ns k3s-server)" link set docker0 up
ip -n "$(ns k3s-agent-2)" link add wg0 type ifb
ip -n "$(ns k3s-agent-2)" link set wg0 up
ip -n "$(ns k3s-agent-2)" route add 10.44.0.0/16 dev wg0

rm -rf "$out"
mkdir -p "$out/roots" "$out/reports"
for i in 0 1 2; do
  n=${nodes[$i]}
  root="$out/roots/$n"
  cp -a "$base" "$root"
  echo "$n" >"$root/etc/hostname"
  uname -r >"$root/proc/sys/kernel/osrelease"
  # This kernel's own config: the kernel-side facts of the report are this machine's.
  cp /proc/config.gz "$root/proc/config.gz"
  mkdir -p "$root/proc/1/net"
  for f in route fib_trie ipv6_route if_inet6 udp udp6; do
    ip netns exec "$(ns "$n")" cat "/proc/self/net/$f" >"$root/proc/1/net/$f"
  done
  # `ip netns exec` mounts a sysfs of the namespace at /sys: its devices, not the host's.
  ip netns exec "$(ns "$n")" sh -c '
    for d in /sys/class/net/*; do
      name=${d##*/}; [ "$name" = lo ] && continue
      mkdir -p "$0/sys/class/net/$name"; cat "$d/uevent" >"$0/sys/class/net/$name/uevent"
    done' "$root"
  if [ "$n" = k3s-server ]; then
    cat >"$root/etc/rancher/k3s/config.yaml" <<EOF
# k3s server of a three-node cluster (fixture: flannel, the k3s defaults)
write-kubeconfig-mode: "0600"
node-name: $n
node-ip: 192.168.50.11
cluster-cidr: 10.42.0.0/16
service-cidr: 10.43.0.0/16
EOF
  else
    rm -f "$root/etc/systemd/system/k3s.service" "$root/etc/rancher/k3s/k3s.yaml"
    cat >"$root/etc/systemd/system/k3s-agent.service" <<'EOF'
[Unit]
Description=Lightweight Kubernetes (agent)
After=network-online.target

[Service]
Type=notify
ExecStart=/usr/local/bin/k3s agent
KillMode=process
Restart=always

[Install]
WantedBy=multi-user.target
EOF
    cat >"$root/etc/rancher/k3s/config.yaml" <<EOF
# k3s agent of a three-node cluster (fixture)
server: https://192.168.50.11:6443
token: fixture-not-a-secret
node-name: $n
node-ip: 192.168.50.1$((i + 1))
EOF
    # Only the server ran a Cilium once: the agents have no stale state.
    rm -rf "$root/var/run/cilium" "$root/sys/fs/bpf/tc"
  fi
  "$bin" run --root "$root" --host-kernel --no-compile --cilium-version 1.18.4 --format json >"$out/reports/$n.json" || true
done
echo "wrote $out"

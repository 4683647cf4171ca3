#!/usr/bin/env python3
# Writes fixtures/nodes/*: node trees modelled on the facts of docs/upstream.md (written by us). Rerun after editing;
# the trees are committed, so tests do not need Python.
import os, gzip, json
B = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "nodes")

def w(node, path, text, mode=None):
    p = os.path.join(B, node, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    data = text if isinstance(text, bytes) else text.encode()
    open(p, "wb").write(data)

def ln(node, path, target):
    p = os.path.join(B, node, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p): os.remove(p)
    os.symlink(target, p)

def mkdir(node, path):
    os.makedirs(os.path.join(B, node, path.lstrip("/")), exist_ok=True)

BUILTIN = ["BPF","BPF_SYSCALL","BPF_JIT","HAVE_EBPF_JIT","NET_CLS_ACT","CRYPTO_SHA1","CGROUPS","CGROUP_BPF",
           "PERF_EVENTS","SCHEDSTATS","BPF_EVENTS","DEBUG_INFO_BTF","FIB_RULES","XFRM","NF_CONNTRACK_MARK","MODULES"]
MODULAR = {  # option -> module file dir
 "NET_CLS_BPF":("net/sched","cls_bpf"), "NET_SCH_INGRESS":("net/sched","sch_ingress"),
 "CRYPTO_USER_API_HASH":("crypto","algif_hash"), "NETFILTER_XT_SET":("net/netfilter","xt_set"),
 "IP_SET":("net/netfilter/ipset","ip_set"), "IP_SET_HASH_IP":("net/netfilter/ipset","ip_set_hash_ip"),
 "NETFILTER_XT_MATCH_COMMENT":("net/netfilter","xt_comment"), "VXLAN":("drivers/net","vxlan"),
 "GENEVE":("drivers/net","geneve"), "NETFILTER_XT_TARGET_TPROXY":("net/netfilter","xt_TPROXY"),
 "NETFILTER_XT_TARGET_CT":("net/netfilter","xt_CT"), "NETFILTER_XT_MATCH_MARK":("net/netfilter","xt_mark"),
 "NETFILTER_XT_MATCH_SOCKET":("net/netfilter","xt_socket"), "NET_SCH_FQ":("net/sched","sch_fq"),
 "WIREGUARD":("drivers/net/wireguard","wireguard"), "XFRM_USER":("net/xfrm","xfrm_user"),
 "INET_ESP":("net/ipv4","esp4"), "BRIDGE_NETFILTER":("net/bridge","br_netfilter"),
 "OVERLAY_FS":("fs/overlayfs","overlay"), "NF_CONNTRACK":("net/netfilter","nf_conntrack"),
}

def kernel(node, release, config_path, ext, not_set=(), builtin_extra=(), absent_files=(), loaded=(), gz=False, extra_lines=""):
    lines = ["#", "# Automatically generated file; DO NOT EDIT.", f"# Linux/x86 {release} Kernel Configuration", "#"]
    for o in BUILTIN:
        if o not in not_set: lines.append(f"CONFIG_{o}=y")
    for o in builtin_extra: lines.append(f"CONFIG_{o}=y")
    for o in MODULAR:
        if o in not_set: lines.append(f"# CONFIG_{o} is not set")
        elif o not in builtin_extra: lines.append(f"CONFIG_{o}=m")
    for o in not_set:
        if o not in MODULAR: lines.append(f"# CONFIG_{o} is not set")
    lines.append('CONFIG_LOCALVERSION=""'); lines.append("CONFIG_HZ=250")
    # Kconfig (5.3+) closes each menu with "# end of <menu>"; Kernel hacking comes last.
    lines += ["# end of General setup", "#", "# Kernel hacking", "#", "CONFIG_DEBUG_KERNEL=y", "# end of Kernel hacking"]
    text = "\n".join(lines) + "\n" + extra_lines
    if gz: w(node, config_path, gzip.compress(text.encode(), mtime=0))
    else: w(node, config_path, text)
    w(node, "/proc/sys/kernel/osrelease", release + "\n")
    mdir = f"/lib/modules/{release}"
    dep, builtin = [], []
    for o,(d,m) in sorted(MODULAR.items()):
        if o in not_set: continue
        rel = f"kernel/{d}/{m}{ext}"
        if o in builtin_extra: builtin.append(f"kernel/{d}/{m}.ko"); continue
        dep.append(f"{rel}:")
        if m not in absent_files: w(node, f"{mdir}/{rel}", b"")
    w(node, f"{mdir}/modules.dep", "\n".join(dep) + "\n")
    w(node, f"{mdir}/modules.builtin", "\n".join(builtin + ["kernel/drivers/block/loop.ko"]) + "\n")
    w(node, "/proc/modules", "".join(f"{m} 16384 0 - Live 0x0000000000000000\n" for m in loaded))

def sysctls(node, **kv):
    base = {"net.core.bpf_jit_enable":"1","kernel.unprivileged_bpf_disabled":"2","net.core.bpf_jit_harden":"0",
            "net.ipv4.conf.all.rp_filter":"0","net.ipv4.ip_forward":"1","net.bridge.bridge-nf-call-iptables":"1"}
    base.update({k.replace("__","."):v for k,v in kv.items()})
    for k,v in base.items():
        if v is None: continue
        w(node, "/proc/sys/" + k.replace(".","/"), v + "\n")

def mountinfo(node, lines):
    root = ["22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
            "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
            "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw"]
    w(node, "/proc/1/mountinfo", "\n".join(root + lines) + "\n")

def osrel(node, text): w(node, "/etc/os-release", text)

# 1. k3s node that ran flannel, Photon-like 6.1
n = "k3s-flannel"
kernel(n, "6.1.83-1.ph5", "/boot/config-6.1.83-1.ph5", ".ko.xz", absent_files=("geneve",),
       loaded=("vxlan","br_netfilter","overlay","nf_conntrack","xt_comment","ip_set"))
osrel(n, 'NAME="VMware Photon OS"\nVERSION="5.0"\nID=photon\nVERSION_ID=5.0\nPRETTY_NAME="VMware Photon OS/Linux"\n')
w(n, "/etc/hostname", "k3s-node-1\n")
sysctls(n)
mountinfo(n, ["25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate",
              "26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:7 - bpf bpf rw,mode=700"])
w(n, "/etc/rancher/k3s/config.yaml", "# k3s server config\nwrite-kubeconfig-mode: \"0644\"\ncluster-cidr: 10.42.0.0/16\nservice-cidr: 10.43.0.0/16\n")
w(n, "/etc/rancher/k3s/config.yaml.d/10-disable.yaml", "disable:\n  - traefik\n")
w(n, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
  '# File generated by k3s. DO NOT EDIT. Use config.toml.tmpl instead.\nversion = 2\n\n[plugins."io.containerd.internal.v1.opt"]\n  path = "/var/lib/rancher/k3s/agent/containerd"\n\n[plugins."io.containerd.grpc.v1.cri"]\n  stream_server_address = "127.0.0.1"\n  enable_selinux = false\n  sandbox_image = "rancher/mirrored-pause:3.6"\n\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/var/lib/rancher/k3s/data/7c2e3a1f9b/bin"\n  conf_dir = "/var/lib/rancher/k3s/agent/etc/cni/net.d"\n')
w(n, "/var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist", json.dumps({"name":"cbr0","cniVersion":"1.0.0","plugins":[{"type":"flannel","delegate":{"hairpinMode":True,"forceAddress":True,"isDefaultGateway":True}},{"type":"portmap","capabilities":{"portMappings":True}},{"type":"bandwidth","capabilities":{"bandwidth":True}}]}, indent=2)+"\n")
for b in ["flannel","bridge","host-local","loopback","portmap","bandwidth"]:
    w(n, f"/var/lib/rancher/k3s/data/7c2e3a1f9b/bin/{b}", b"")
ln(n, "/var/lib/rancher/k3s/data/current", "/var/lib/rancher/k3s/data/7c2e3a1f9b")
w(n, "/usr/sbin/xtables-legacy-multi", b"")
ln(n, "/usr/sbin/iptables", "/usr/sbin/xtables-legacy-multi")
w(n, "/usr/local/bin/k3s", b"")

# 2. Rancher Desktop VM (Alpine, /proc/config.gz)
n = "rancher-desktop"
kernel(n, "6.6.14-0-virt", "/proc/config.gz", ".ko.gz", gz=True, loaded=("vxlan","br_netfilter","overlay"))
osrel(n, 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n')
w(n, "/proc/sys/kernel/hostname", "lima-rancher-desktop\n")
sysctls(n)
mountinfo(n, ["25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 none rw",
              "26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime - bpf bpffs rw"])
w(n, "/etc/rancher/k3s/config.yaml", "flannel-backend: none\ndisable-network-policy: true\n")
w(n, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
  'version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/usr/libexec/cni"\n  conf_dir = "/etc/cni/net.d"\n')
for b in ["bridge","host-local","loopback","portmap","bandwidth","flannel"]:
    w(n, f"/usr/libexec/cni/{b}", b"")
mkdir(n, "/etc/cni/net.d")
w(n, "/etc/cni/net.d/.keep", b"")
w(n, "/usr/local/bin/k3s", b"")

# 3. RHEL 10 with nftables and firewalld
n = "rhel10"
rel = "6.12.0-55.9.1.el10_0.x86_64"
kernel(n, rel, f"/boot/config-{rel}", ".ko.xz", builtin_extra=("BRIDGE_NETFILTER","NETKIT"), loaded=("nf_conntrack","overlay"))
osrel(n, 'NAME="Red Hat Enterprise Linux"\nVERSION="10.0 (Coughlan)"\nID="rhel"\nID_LIKE="centos fedora"\nVERSION_ID="10.0"\nPRETTY_NAME="Red Hat Enterprise Linux 10.0 (Coughlan)"\n')
w(n, "/etc/hostname", "rhel10-worker\n")
sysctls(n, net__ipv4__conf__all__rp_filter="1")
mountinfo(n, ["25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,seclabel,nsdelegate",
              "26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:9 - bpf bpf rw,mode=700"])
w(n, "/usr/sbin/xtables-nft-multi", b"")
ln(n, "/usr/sbin/iptables-nft", "xtables-nft-multi")
ln(n, "/etc/alternatives/iptables", "/usr/sbin/iptables-nft")
ln(n, "/usr/sbin/iptables", "/etc/alternatives/iptables")
w(n, "/usr/lib/systemd/system/firewalld.service", "[Unit]\nDescription=firewalld - dynamic firewall daemon\n")
ln(n, "/etc/systemd/system/multi-user.target.wants/firewalld.service", "/usr/lib/systemd/system/firewalld.service")
w(n, "/usr/sbin/NetworkManager", b"")
w(n, "/etc/NetworkManager/NetworkManager.conf", "[main]\n#plugins=keyfile\n")
w(n, "/etc/rancher/k3s/config.yaml", "flannel-backend: none\ndisable-network-policy: true\ndisable-kube-proxy: true\ncluster-cidr: 10.52.0.0/16\n")
w(n, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
  '# File generated by k3s. DO NOT EDIT.\nversion = 3\nroot = "/var/lib/rancher/k3s/agent/containerd"\n\n[plugins.\'io.containerd.cri.v1.images\']\n  snapshotter = "overlayfs"\n')
w(n, "/usr/local/bin/k3s", b"")

# 4. Debian bookworm: /boot/config, modules as =m (.ko), no bpffs mounted, no br_netfilter loaded
n = "debian-bookworm"
rel = "6.1.0-18-amd64"
kernel(n, rel, f"/boot/config-{rel}", ".ko", not_set=("NETKIT",), loaded=("overlay","nf_conntrack"))
osrel(n, 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n')
w(n, "/etc/hostname", "bookworm-1\n")
sysctls(n, **{"net__bridge__bridge-nf-call-iptables": None})
mountinfo(n, ["25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot"])
w(n, "/usr/sbin/xtables-nft-multi", b"")
ln(n, "/etc/alternatives/iptables", "/usr/sbin/iptables-nft")
ln(n, "/usr/sbin/iptables-nft", "xtables-nft-multi")
ln(n, "/usr/sbin/iptables", "/etc/alternatives/iptables")
w(n, "/etc/containerd/config.toml", 'version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/opt/cni/bin"\n  conf_dir = "/etc/cni/net.d"\n')
mkdir(n, "/opt/cni/bin"); w(n, "/opt/cni/bin/loopback", b"")

# 5. Leftovers of a failed Cilium install on k3s
n = "failed-cilium"
rel = "6.8.0-45-generic"
kernel(n, rel, f"/usr/lib/modules/{rel}/config", ".ko.zst", builtin_extra=("NETKIT",), loaded=("vxlan","overlay","nf_conntrack","br_netfilter","cls_bpf","sch_ingress"))
osrel(n, 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n')
w(n, "/etc/hostname", "k3s-agent-3\n")
sysctls(n)
mountinfo(n, ["25 24 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate",
              "26 24 0:24 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:7 - bpf bpf rw,mode=700",
              "812 26 0:24 / /sys/fs/bpf rw,relatime shared:7 - bpf bpf rw"])
w(n, "/etc/rancher/k3s/config.yaml", "flannel-backend: none\ndisable-network-policy: true\n")
w(n, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml", 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n')
w(n, "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl", '{{ template "base" . }}\n\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n  runtime_type = "io.containerd.runc.v2"\n')
w(n, "/etc/cni/net.d/05-cilium.conflist", json.dumps({"cniVersion":"0.3.1","name":"cilium","plugins":[{"type":"cilium-cni","enable-debug":False,"log-file":"/var/run/cilium/cilium-cni.log"}]}, indent=2)+"\n")
w(n, "/etc/cni/net.d/10-flannel.conflist", json.dumps({"name":"cbr0","cniVersion":"1.0.0","plugins":[{"type":"flannel","delegate":{"isDefaultGateway":True}},{"type":"portmap","capabilities":{"portMappings":True}}]}, indent=2)+"\n")
for b in ["cilium-cni","loopback","host-local"]:
    w(n, f"/opt/cni/bin/{b}", b"")
# node_config.h as a 1.16 agent writes it: our own minimal rendition of its macro set.
w(n, "/var/run/cilium/state/globals/node_config.h", """/*
 * node_config.h left by an earlier agent (fixture written for preflight).
 */
#define NODE_MAC { .addr = { 0x2a, 0x11, 0x3c, 0x00, 0x10, 0x01 } }
#define HOST_IFINDEX 4
#define CILIUM_IFINDEX 5
#define HOST_ID 1
#define WORLD_ID 2
#define TUNNEL_PORT 8472
#define TUNNEL_PROTOCOL 1
#define ENABLE_IPV4 1
#define IPV4_MASK 0xffff
#define CT_MAP_SIZE_TCP 524288
#define SNAT_MAPPING_IPV4_SIZE 524288
#define MONITOR_AGGREGATION 3
""")
w(n, "/var/run/cilium/state/templates/3f6a0c2d9e41b7a5c8e2f1d0b9a87c6e5d4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b/ep_config.h", "#define CALLS_MAP cilium_calls_65535\n#define ENABLE_ARP_RESPONDER 1\n")
for p in ["cilium_calls_65535","cilium_ipcache","cilium_lxc","cilium_ct4_global"]:
    w(n, f"/sys/fs/bpf/tc/globals/{p}", b"")
w(n, "/var/lib/cilium/bpf/.keep", b"")
w(n, "/usr/local/bin/k3s", b"")
print("ok")

//! bpffs at /sys/fs/bpf and cgroup v2 (docs/node-facts.md): the agent mounts /sys/fs/bpf Bidirectional,
//! so the host's must be one shared bpffs; socket LB needs a cgroup v2 hierarchy.
use super::Check;
use crate::{
    facts::Facts,
    host::mounts::{BPF_FS_MAGIC, MountTable},
    model::{Area, Capability::*, Gathered, Outcome},
};

const BPFFS: &str = "/sys/fs/bpf";
const MOUNT_BPFFS: &str = "mount -t bpf bpf /sys/fs/bpf && mount --make-shared /sys/fs/bpf; persist with the fstab line `bpffs /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0` (systemd: a sys-fs-bpf.mount unit)";

fn with_table(facts: &Facts, f: impl FnOnce(&MountTable) -> Outcome) -> Outcome {
    match &facts.mounts {
        Gathered::Got(t) => f(t),
        Gathered::Unknown(why) => {
            Outcome::unknown(format!("mount table unusable: {why}")).evidence(why.clone())
        }
        Gathered::Skipped(why) => Outcome::skip(why.clone()),
    }
}

pub fn checks() -> Vec<Check> {
    vec![
        Check::new("mounts.bpffs", Area::Mounts, "One shared bpffs mounted at /sys/fs/bpf")
            .needed_by(&[BaseDatapath])
            .remedy(MOUNT_BPFFS)
            .evaluate(|facts, _| with_table(facts, |t| {
                let here = t.at(BPFFS);
                let src = t.source.clone();
                match here.as_slice() {
                    [] => Outcome::warn("no bpffs at /sys/fs/bpf: the agent's init container mounts one, but pinned maps then live only as long as that mount and are lost on restarts").evidence(src),
                    [m] if m.fstype != "bpf" => Outcome::fail(format!("/sys/fs/bpf is a {} mount, not bpffs", m.fstype)).evidence(src),
                    [m] => {
                        if let Gathered::Got(magic) = &facts.bpffs_magic
                            && *magic != BPF_FS_MAGIC
                        {
                            return Outcome::fail(format!("mount table says bpf but statfs(/sys/fs/bpf) says 0x{magic:x}, not BPF_FS_MAGIC 0xcafe4a11 (over-mounted?)")).evidence(src).evidence("statfs(2) /sys/fs/bpf");
                        }
                        if m.shared() {
                            Outcome::pass(format!("bpffs, propagation {}", m.propagation.join(" "))).evidence(src)
                        } else {
                            Outcome::fail("bpffs at /sys/fs/bpf is not a shared mount; the agent's Bidirectional mount will not reach the host").evidence(src).remedy("mount --make-shared /sys/fs/bpf (Rancher Desktop: in the provisioning override script)")
                        }
                    }
                    many => Outcome::fail(format!("/sys/fs/bpf is mounted {} times (\"multiple mount points detected at /sys/fs/bpf\", cilium#6966)", many.len())).evidence(src).remedy("umount /sys/fs/bpf until one bpffs is left, then mount --make-shared /sys/fs/bpf"),
                }
            })),
        Check::new("mounts.cgroup2", Area::Mounts, "cgroup v2 mounted (socket LB attaches there)")
            .needed_by(&[SocketLb, KubeProxyReplacement])
            .remedy("mount -t cgroup2 none /sys/fs/cgroup (unified) or keep cgroup.autoMount.enabled=true so Cilium mounts /run/cilium/cgroupv2")
            .evaluate(|facts, _| with_table(facts, |t| {
                let v2: Vec<_> = t.of_type("cgroup2").iter().map(|m| m.mount_point.clone()).collect();
                let v1_net = t.of_type("cgroup").iter().any(|m| m.options.contains("net_cls") || m.options.contains("net_prio") || m.mount_point.contains("net_cls") || m.mount_point.contains("net_prio"));
                let src = t.source.clone();
                if v2.is_empty() {
                    return Outcome::warn("no cgroup2 mount; Cilium mounts one at /run/cilium/cgroupv2 unless cgroup.autoMount.enabled=false").evidence(src);
                }
                let layout = if t.of_type("cgroup").is_empty() { "unified" } else { "hybrid (v1 controllers next to v2)" };
                if v1_net {
                    Outcome::warn(format!("cgroup2 at {}, {layout}: sockets in net_cls/net_prio v1 cgroups lose their v2 cgroup and bypass socket LB", v2.join(", "))).evidence(src)
                } else {
                    Outcome::pass(format!("cgroup2 at {}, {layout}", v2.join(", "))).evidence(src)
                }
            })),
    ]
}

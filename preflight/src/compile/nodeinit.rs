//! Will the agent's datapath init get as far as writing globals/node_config.h? The steps that
//! run before it (FACTS §2): sysctls (net.ipv4.conf.all.rp_filter must be writable), bpffs at
//! /sys/fs/bpf, and the tunnel device, which fails with "address already in use" when another
//! VXLAN device (flannel's `flannel.1`) holds the UDP port. Each blocker found here means the
//! endpoint compile will fall through to the dummy header in the bpf dir.
use serde::Serialize;

use crate::{
    host::{
        HostRoot,
        mounts::{self, MountsFact},
    },
    target::{Capability, Target},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitBlocker {
    /// Stable short name: `tunnel-port`, `bpffs`, `rp-filter`.
    pub step: String,
    pub detail: String,
    pub evidence: String,
    pub remedy: String,
}

/// UDP ports bound on the node, from /proc/net/udp (local_address is `HEXIP:HEXPORT`).
fn bound_udp_ports(root: &HostRoot) -> Vec<u16> {
    let Ok(text) = root.read_text("/proc/net/udp") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

/// The tunnel protocol and UDP port the agent will bind: `tunnelPort` when set, else the
/// protocol's default (VXLAN 8472, Geneve 6081).
pub fn tunnel(target: &Target) -> Option<(&'static str, u16)> {
    let (proto, default) = if target.needs(Capability::TunnelGeneve) {
        ("geneve", 6081u16)
    } else if target.needs(Capability::TunnelVxlan) {
        ("vxlan", 8472u16)
    } else {
        return None;
    };
    let port = target
        .value("tunnelPort")
        .and_then(|v| v.as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(default);
    Some((proto, port))
}

pub fn blockers(root: &HostRoot, target: &Target) -> Vec<InitBlocker> {
    let mut out = Vec::new();
    let tunnel = tunnel(target);
    if let Some((proto, port)) = tunnel {
        let flannel = root.path("/sys/class/net/flannel.1").exists();
        let bound = bound_udp_ports(root).contains(&port);
        if flannel || bound {
            let holder = if flannel {
                "flannel's VXLAN device flannel.1"
            } else {
                "another socket"
            };
            out.push(InitBlocker {
                step: "tunnel-port".into(),
                detail: format!(
                    "UDP {port} is held by {holder}: creating cilium_{proto} fails with \"address \
                     already in use\", so datapath init stops before writing node_config.h"
                ),
                evidence: if flannel {
                    "/sys/class/net/flannel.1".into()
                } else {
                    format!("/proc/net/udp (local port {port:04X})")
                },
                remedy: format!(
                    "remove flannel's leftovers before installing Cilium (ip link delete flannel.1; \
                     ip link delete cni0; rm /etc/cni/net.d/*flannel*), or set tunnelPort to a \
                     free port (e.g. --set tunnelPort={})",
                    port + 1
                ),
            });
        }
    }
    if let MountsFact::Got(table) = mounts::gather(root) {
        let at_bpf = table.at("/sys/fs/bpf");
        let wrong_type = at_bpf.iter().any(|m| m.fstype != "bpf");
        if at_bpf.len() > 1 || wrong_type {
            out.push(InitBlocker {
                step: "bpffs".into(),
                detail: format!(
                    "/sys/fs/bpf has {} mount(s){}: the agent cannot use it as its bpffs \
                     (\"multiple mount points detected at /sys/fs/bpf\")",
                    at_bpf.len(),
                    if wrong_type {
                        ", not all of type bpf"
                    } else {
                        ""
                    }
                ),
                evidence: table.source.clone(),
                remedy: "unmount the extra mounts and mount a single shared bpffs: \
                         mount -t bpf bpf /sys/fs/bpf && mount --make-shared /sys/fs/bpf"
                    .into(),
            });
        }
    }
    // Only root can tell: for anyone else /proc/sys is read-only whatever the agent would see.
    let rp = root.path("/proc/sys/net/ipv4/conf/all/rp_filter");
    if rp.exists() && nix::unistd::geteuid().is_root() && !writable(&rp) {
        out.push(InitBlocker {
            step: "rp-filter".into(),
            detail: "net.ipv4.conf.all.rp_filter is not writable: the agent's sysctl step fails \
                     before node_config.h is written"
                .into(),
            evidence: rp.display().to_string(),
            remedy: "run the agent privileged (the Helm chart does) or make /proc/sys writable"
                .into(),
        });
    }
    out
}

/// Only a read-only mount blocks the agent; EACCES/EPERM just mean we are not root, which says
/// nothing about the privileged agent (unknown is never a failure).
fn writable(path: &std::path::Path) -> bool {
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::EROFS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_device_blocks_vxlan_but_not_native_routing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/net/flannel.1")).unwrap();
        let root = HostRoot::new(dir.path());
        let b = blockers(&root, &Target::default());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].step, "tunnel-port");
        assert!(b[0].detail.contains("flannel.1") && b[0].detail.contains("8472"));
        let mut native = Target::chart_defaults("1.18.4");
        native.capabilities = [Capability::BaseDatapath, Capability::NativeRouting].into();
        assert!(blockers(&root, &native).is_empty());
        // tunnelPort moves the agent off flannel's port: no longer blocked by a bound 8472 alone.
        let mut moved = Target::chart_defaults("1.18.4");
        moved.values = serde_json::json!({"tunnelPort": 8473});
        assert_eq!(tunnel(&moved), Some(("vxlan", 8473)));
    }

    #[test]
    fn bound_port_in_proc_net_udp_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(
            dir.path().join("proc/net/udp"),
            "  sl  local_address rem_address   st\n   0: 00000000:2118 00000000:0000 07\n",
        )
        .unwrap();
        let b = blockers(&HostRoot::new(dir.path()), &Target::default());
        assert_eq!(b.len(), 1);
        assert!(b[0].evidence.contains("2118"));
    }

    #[test]
    fn double_bpffs_mount_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
        std::fs::write(
            dir.path().join("proc/1/mountinfo"),
            "30 23 0:30 / /sys/fs/bpf rw shared:9 - bpf bpf rw\n\
             31 30 0:31 / /sys/fs/bpf rw shared:10 - bpf bpf rw\n",
        )
        .unwrap();
        let b = blockers(&HostRoot::new(dir.path()), &Target::default());
        assert_eq!(b[0].step, "bpffs");
    }
}

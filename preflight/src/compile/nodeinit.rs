//! Will the agent's datapath init get as far as writing globals/node_config.h? The steps that run
//! before it (docs/upstream.md#the-calls_map-incident): sysctls (net.ipv4.conf.all.rp_filter must
//! be writable), bpffs at /sys/fs/bpf, and the tunnel device, which fails with "address already in
//! use" when another VXLAN device (flannel's `flannel.1`) holds the UDP port. Each blocker found
//! here means the endpoint compile will fall through to the dummy header in the bpf dir.
use serde::Serialize;

use crate::{
    cilium::Target,
    host::{HostRoot, mounts},
    model::{Capability, Gathered},
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitBlocker {
    /// Stable short name: `tunnel-port`, `bpffs`, `rp-filter`.
    pub step: String,
    pub detail: String,
    pub evidence: String,
    pub remedy: String,
}

/// The next port after `port` that neither a socket nor flannel holds (the remedy must work).
fn free_port_after(root: &HostRoot, port: u16) -> u16 {
    let bound = bound_udp_ports(root);
    let flannel = flannel_port(root);
    (port.saturating_add(1)..u16::MAX)
        .find(|p| !bound.contains(p) && *p != flannel)
        .unwrap_or(port)
}

/// UDP ports bound on the node (PID 1's network namespace: see [`crate::host::links::bound_udp_ports`]).
fn bound_udp_ports(root: &HostRoot) -> Vec<u16> {
    crate::host::links::bound_udp_ports(root)
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

/// k3s writes its embedded flannel's config here (k3s pkg/agent/flannel: `agent/etc/flannel`
/// under its data dir); kube-flannel keeps its own inside the pod, which we cannot see.
const K3S_FLANNEL_CONF: &str = "/var/lib/rancher/k3s/agent/etc/flannel/net-conf.json";
/// flannel's VXLAN port on Linux when net-conf.json sets no `Backend.Port`.
const FLANNEL_VXLAN_PORT: u16 = 8472;

/// The UDP port flannel's `flannel.1` holds: `Backend.Port` of k3s's net-conf.json when it
/// sets one, else flannel's default. Only that port is taken: a Cilium tunnel on another port
/// (or geneve on 6081) comes up next to it.
fn flannel_port(root: &HostRoot) -> u16 {
    root.read_text(K3S_FLANNEL_CONF)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.pointer("/Backend/Port").and_then(|p| p.as_u64()))
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(FLANNEL_VXLAN_PORT)
}

/// k3s's embedded flannel, judged from its files (docs/upstream.md#k3s-and-rancher-desktop): k3s is
/// installed or configured, and `flannel-backend` (config.yaml, then config.yaml.d/*.yaml; default
/// `vxlan`) is vxlan, so flannel.1 will hold its VXLAN port when Cilium starts, whatever is up
/// right now. Returns the port and the evidence (files read, the backend and where it came from).
fn k3s_flannel_vxlan(root: &HostRoot) -> Option<(u16, String)> {
    let k3s = crate::host::k3s::gather(root);
    // A config file that cannot be read or parsed leaves the backend unknown: no prediction
    // (the k3s checks report the file).
    if !k3s.present || !k3s.problems.is_empty() {
        return None;
    }
    let backend = k3s.flannel_backend.clone();
    if !matches!(backend.as_deref(), None | Some("vxlan")) {
        return None;
    }
    let files = if k3s.files.is_empty() {
        "no k3s config file".to_string()
    } else {
        k3s.files.join(", ")
    };
    let conf = root.exists(K3S_FLANNEL_CONF);
    let port = flannel_port(root);
    Some((
        port,
        format!(
            "k3s flannel-backend {} ({files}); VXLAN port {port} ({})",
            backend.as_deref().unwrap_or("vxlan (k3s default)"),
            if conf {
                root.display(K3S_FLANNEL_CONF)
            } else {
                format!("flannel's default, no {K3S_FLANNEL_CONF}")
            }
        ),
    ))
}

pub fn blockers(root: &HostRoot, target: &Target) -> Vec<InitBlocker> {
    let mut out = Vec::new();
    let tunnel = tunnel(target);
    if let Some((proto, port)) = tunnel {
        let flannel = root.exists("/sys/class/net/flannel.1") && flannel_port(root) == port;
        let bound = bound_udp_ports(root).contains(&port);
        let k3s = if flannel {
            None
        } else {
            k3s_flannel_vxlan(root).filter(|(p, _)| *p == port)
        };
        if let Some((_, evidence)) = &k3s
            && !bound
        {
            out.push(InitBlocker {
                step: "tunnel-port".into(),
                detail: format!(
                    "k3s runs its embedded flannel with the vxlan backend, so flannel.1 will hold \
                     UDP {port} when Cilium starts: creating cilium_{proto} fails with \"address \
                     already in use\", and datapath init stops before writing node_config.h"
                ),
                evidence: evidence.clone(),
                remedy: format!(
                    "turn k3s's flannel off first: flannel-backend: none (and \
                     disable-network-policy: true) in {} or a config.yaml.d drop-in, restart k3s, \
                     delete flannel.1 (preflight plan does these before installing Cilium); or \
                     give Cilium a distinct tunnel port (--set tunnelPort={})",
                    root.display(crate::host::k3s::CONFIG),
                    free_port_after(root, port)
                ),
            });
        }
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
                    free_port_after(root, port)
                ),
            });
        }
    }
    if let Gathered::Got(table) = mounts::gather(root) {
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
    const RP_FILTER: &str = "/proc/sys/net/ipv4/conf/all/rp_filter";
    if root.is_file(RP_FILTER) && nix::unistd::geteuid().is_root() && !writable(root, RP_FILTER) {
        out.push(InitBlocker {
            step: "rp-filter".into(),
            detail: "net.ipv4.conf.all.rp_filter is not writable: the agent's sysctl step fails \
                     before node_config.h is written"
                .into(),
            evidence: root.display(RP_FILTER),
            remedy: "run the agent privileged (the Helm chart does) or make /proc/sys writable"
                .into(),
        });
    }
    out
}

/// Only a read-only mount blocks the agent; EACCES/EPERM just mean we are not root, which says
/// nothing about the privileged agent (unknown is never a failure). Opened for writing through
/// the root-confined API (a symlink out of the root is not followed), nothing written.
fn writable(root: &HostRoot, path: &str) -> bool {
    match root.open_for_write(path) {
        Ok(_) => true,
        Err(e) => !matches!(e, crate::host::ReadError::ReadOnly(_)),
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
        // tunnelPort moves the agent off flannel's port: the remedy works next to flannel.1.
        let mut moved = Target::chart_defaults("1.18.4");
        moved.values = serde_json::json!({"tunnelPort": 8473});
        assert_eq!(tunnel(&moved), Some(("vxlan", 8473)));
        assert!(blockers(&root, &moved).is_empty());
        // Geneve binds 6081: flannel.1 on 8472 does not stand in its way.
        let mut geneve = Target::chart_defaults("1.18.4");
        geneve.capabilities = [Capability::BaseDatapath, Capability::TunnelGeneve].into();
        assert!(blockers(&root, &geneve).is_empty());
    }

    #[test]
    fn flannel_on_a_configured_port_blocks_that_port_and_the_remedy_skips_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/net/flannel.1")).unwrap();
        let conf = dir.path().join(K3S_FLANNEL_CONF.trim_start_matches('/'));
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            &conf,
            r#"{"Network":"10.42.0.0/16","Backend":{"Type":"vxlan","Port":8473}}"#,
        )
        .unwrap();
        let root = HostRoot::new(dir.path());
        // The default 8472 is free; 8473 is flannel's.
        assert!(blockers(&root, &Target::default()).is_empty());
        let mut on = Target::chart_defaults("1.18.4");
        on.values = serde_json::json!({"tunnelPort": 8473});
        let b = blockers(&root, &on);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].remedy.contains("--set tunnelPort=8474"),
            "{}",
            b[0].remedy
        );
    }

    #[test]
    fn k3s_running_flannel_is_predicted_from_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let k3s = dir.path().join("etc/rancher/k3s");
        std::fs::create_dir_all(k3s.join("config.yaml.d")).unwrap();
        std::fs::write(k3s.join("config.yaml"), "cluster-cidr: 10.42.0.0/16\n").unwrap();
        let root = HostRoot::new(dir.path());
        // No flannel-backend anywhere: k3s's default vxlan on flannel's default port.
        let b = blockers(&root, &Target::default());
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].detail.contains("k3s") && b[0].detail.contains("UDP 8472"));
        assert!(
            b[0].evidence.contains("vxlan (k3s default)"),
            "{}",
            b[0].evidence
        );
        assert!(
            b[0].evidence.contains("flannel's default"),
            "{}",
            b[0].evidence
        );
        assert!(b[0].remedy.contains("flannel-backend: none"));
        assert!(b[0].remedy.contains("--set tunnelPort=8473"));
        // net-conf.json moves flannel to another port: Cilium's 8472 stays free.
        let conf = dir.path().join(K3S_FLANNEL_CONF.trim_start_matches('/'));
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(&conf, r#"{"Backend":{"Type":"vxlan","Port":4789}}"#).unwrap();
        assert!(blockers(&root, &Target::default()).is_empty());
        std::fs::remove_file(&conf).unwrap();
        // A drop-in turning flannel off (later files win), or a backend without VXLAN.
        for backend in ["none", "host-gw", "wireguard-native"] {
            std::fs::write(
                k3s.join("config.yaml.d/90-cni.yaml"),
                format!("flannel-backend: {backend}\n"),
            )
            .unwrap();
            assert!(blockers(&root, &Target::default()).is_empty(), "{backend}");
        }
        // A config file that does not parse: the backend cannot be told, nothing predicted.
        std::fs::write(
            k3s.join("config.yaml.d/90-cni.yaml"),
            "flannel-backend: [\n",
        )
        .unwrap();
        assert!(blockers(&root, &Target::default()).is_empty());
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

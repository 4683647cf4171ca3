//! Network devices of the running system: CNI leftovers and any vxlan/geneve device holding the
//! UDP port Cilium's tunnel needs. Read over rtnetlink in our own network namespace when the
//! root is `/`; through a host root (`/host` in a Job, which shares no network namespace with
//! the host) from the host's sysfs and procfs, which show the host's devices and sockets
//! whatever namespace the reader is in ([`gather_from_root`]).
use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoGeneve, InfoKind, InfoVxlan, LinkAttribute, LinkInfo,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    /// `vxlan`, `geneve`, `bridge`, `veth`, … (IFLA_INFO_KIND); empty for physical devices.
    pub kind: String,
    /// The UDP port a vxlan/geneve device listens on (IFLA_INFO_DATA). vxlan without the
    /// attribute uses 8472 in Linux; geneve 6081.
    pub udp_port: Option<u16>,
}

pub const VXLAN_PORT: u16 = 8472;
pub const GENEVE_PORT: u16 = 6081;

/// Every link in our network namespace.
pub fn gather() -> Result<Vec<Link>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        let mut stream = handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| format!("netlink link dump: {e}"))?
        {
            let mut link = Link {
                name: String::new(),
                kind: String::new(),
                udp_port: None,
            };
            for attr in &msg.attributes {
                match attr {
                    LinkAttribute::IfName(n) => link.name = n.clone(),
                    LinkAttribute::LinkInfo(infos) => read_info(infos, &mut link),
                    _ => {}
                }
            }
            links.push(link);
        }
        Ok(links)
    })
}

fn read_info(infos: &[LinkInfo], link: &mut Link) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => {
                link.kind = match kind {
                    InfoKind::Vxlan => "vxlan".into(),
                    InfoKind::Geneve => "geneve".into(),
                    other => other.to_string(),
                };
            }
            LinkInfo::Data(InfoData::Vxlan(attrs)) => {
                link.udp_port = attrs.iter().find_map(|a| match a {
                    InfoVxlan::Port(p) => Some(*p),
                    _ => None,
                });
            }
            LinkInfo::Data(InfoData::Geneve(attrs)) => {
                link.udp_port = attrs.iter().find_map(|a| match a {
                    InfoGeneve::Port(p) => Some(*p),
                    _ => None,
                });
            }
            _ => {}
        }
    }
}

/// The node's devices through a host root: names from `sys/class/net`, the kind from each
/// device's `uevent` (`DEVTYPE=vxlan`, `geneve`, `bridge`). sysfs has no tunnel port: a tunnel
/// device is taken to hold its kind's default port when that port is bound in the node's
/// network namespace (`/proc/1/net/udp`, `udp6`), and some other port when it is not.
pub fn gather_from_root(host: &super::HostRoot) -> Result<Vec<Link>, String> {
    let names = host.read_dir("/sys/class/net").map_err(|e| e.to_string())?;
    let bound = bound_udp_ports(host);
    let mut links = Vec::new();
    for name in names {
        let uevent = host
            .read_text(&format!("/sys/class/net/{name}/uevent"))
            .unwrap_or_default();
        let kind = uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVTYPE="))
            .unwrap_or_default()
            .to_string();
        let default = match kind.as_str() {
            "vxlan" => Some(VXLAN_PORT),
            "geneve" => Some(GENEVE_PORT),
            _ => None,
        };
        // 0: a port we cannot name, which is not the default one.
        let udp_port = default.map(|p| if bound.contains(&p) { p } else { 0 });
        links.push(Link {
            name,
            kind,
            udp_port,
        });
    }
    Ok(links)
}

/// UDP ports bound in the node's network namespace: PID 1's `net/udp` and `net/udp6` (the
/// root's `/proc/net` would be the reader's own namespace), falling back to `/proc/net/*`.
/// `local_address` is `HEXIP:HEXPORT`.
pub fn bound_udp_ports(host: &super::HostRoot) -> Vec<u16> {
    let mut ports = Vec::new();
    for dir in ["/proc/1/net", "/proc/net"] {
        let mut found = false;
        for file in ["udp", "udp6"] {
            let Ok(text) = host.read_text(&format!("{dir}/{file}")) else {
                continue;
            };
            found = true;
            ports.extend(text.lines().skip(1).filter_map(|l| {
                let local = l.split_whitespace().nth(1)?;
                u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
            }));
        }
        if found {
            break;
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

impl Link {
    /// The UDP port this device holds, if it is a tunnel device.
    pub fn tunnel_port(&self) -> Option<u16> {
        match self.kind.as_str() {
            "vxlan" => Some(self.udp_port.unwrap_or(VXLAN_PORT)),
            "geneve" => Some(self.udp_port.unwrap_or(GENEVE_PORT)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_ports_are_read_from_the_hosts_sysfs_and_pid_1s_netns() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        w(
            "sys/class/net/flannel.1/uevent",
            "DEVTYPE=vxlan\nINTERFACE=flannel.1\n",
        );
        w(
            "sys/class/net/cni0/uevent",
            "DEVTYPE=bridge\nINTERFACE=cni0\n",
        );
        w("sys/class/net/eth0/uevent", "INTERFACE=eth0\n");
        w("sys/class/net/gen/uevent", "DEVTYPE=geneve\n");
        w(
            "proc/1/net/udp",
            "  sl  local_address rem_address   st\n   0: 00000000:2118 00000000:0000 07\n",
        );
        // The reader's own namespace must not be taken for the node's.
        w(
            "proc/net/udp",
            "  sl  local_address rem_address   st\n   0: 00000000:17C1 00000000:0000 07\n",
        );
        let host = crate::host::HostRoot::new(d.path());
        let links = gather_from_root(&host).unwrap();
        let by = |n: &str| links.iter().find(|l| l.name == n).unwrap().clone();
        assert_eq!(by("flannel.1").tunnel_port(), Some(VXLAN_PORT));
        assert_eq!(by("cni0").kind, "bridge");
        assert_eq!(by("eth0").tunnel_port(), None);
        // A geneve device whose default port is not bound holds some other port.
        assert_eq!(by("gen").tunnel_port(), Some(0));
        assert_eq!(bound_udp_ports(&host), [VXLAN_PORT]);
    }
}

//! Network devices of the running system, read over rtnetlink (live-only): CNI leftovers and
//! any vxlan/geneve device holding the UDP port Cilium's tunnel needs.
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

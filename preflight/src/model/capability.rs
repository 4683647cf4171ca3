//! What a Cilium setting needs from the node. A target (version + Helm values) maps to a set of
//! these; every check names the capabilities that need it, so a gap only fails what depends on it.
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Capability {
    /// Helm accepts the values and they fit this node (CNI paths, k3s settings): every install
    /// needs it.
    ChartValues,
    /// bpf(), tc/tcx, the endpoint and host programs: every Cilium install needs it.
    BaseDatapath,
    /// routingMode=tunnel, tunnelProtocol=vxlan (the chart's default).
    TunnelVxlan,
    /// routingMode=tunnel, tunnelProtocol=geneve.
    TunnelGeneve,
    /// routingMode=native.
    NativeRouting,
    /// Socket-level load balancing (cgroup sock_addr hooks on cgroup v2).
    SocketLb,
    /// kubeProxyReplacement=true.
    KubeProxyReplacement,
    /// bpf.masquerade=true.
    BpfMasquerade,
    /// BPF host routing (bpf.hostLegacyRouting=false): redirect_neigh/redirect_peer.
    BpfHostRouting,
    /// bandwidthManager.enabled=true.
    BandwidthManager,
    /// encryption.type=wireguard.
    #[serde(rename = "wireguard", alias = "wire-guard")]
    #[value(name = "wireguard")]
    WireGuard,
    /// encryption.type=ipsec.
    Ipsec,
    /// l7Proxy=true (the chart's default): TPROXY, xt_socket.
    L7Proxy,
    /// bpf.datapathMode=netkit.
    Netkit,
    /// XDP acceleration (loadBalancer.acceleration=native).
    XdpAcceleration,
    /// hubble.enabled=true.
    Hubble,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChartValues => "chart-values",
            Self::BaseDatapath => "base-datapath",
            Self::TunnelVxlan => "tunnel-vxlan",
            Self::TunnelGeneve => "tunnel-geneve",
            Self::NativeRouting => "native-routing",
            Self::SocketLb => "socket-lb",
            Self::KubeProxyReplacement => "kube-proxy-replacement",
            Self::BpfMasquerade => "bpf-masquerade",
            Self::BpfHostRouting => "bpf-host-routing",
            Self::BandwidthManager => "bandwidth-manager",
            Self::WireGuard => "wireguard",
            Self::Ipsec => "ipsec",
            Self::L7Proxy => "l7-proxy",
            Self::Netkit => "netkit",
            Self::XdpAcceleration => "xdp-acceleration",
            Self::Hubble => "hubble",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

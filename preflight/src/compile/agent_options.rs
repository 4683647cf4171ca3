//! The agent's options for these Helm values: what cilium-agent's configuration
//! (`option.Config`, the chart's `cilium-config` ConfigMap) would say for the settings that
//! change what it writes into its headers, which programs it compiles and which load-time
//! values it sets. Defaults are the agent's and chart's (pkg/defaults, values.yaml); where
//! the values do not say, the chart default applies.
use serde_json::Value;

use super::features::Features;
use crate::cilium::{Target, releases::BUILTIN};
use crate::model::Capability;

/// The identity the agent's templates and per-program flags use (`identity.ReservedIdentityWorld`).
pub const WORLD_ID: u32 = 2;
/// In dual stack the world is split (`ReservedIdentityWorldIPv4`/`IPv6`).
pub const WORLD_IPV4_ID: u32 = 9;
pub const WORLD_IPV6_ID: u32 = 10;
/// Template endpoint id (`templateLxcID`): map names sized like the longest real one.
pub const TEMPLATE_EP_ID: u16 = 65535;

/// The node's devices as the headers name them. Real values are the node's ifindexes and
/// MACs, which only the live agent knows; these stand in (the code compiled does not depend
/// on them, only constants in it).
pub mod devices {
    pub const NATIVE_IFINDEX: u32 = 2;
    pub const CILIUM_HOST_IFINDEX: u32 = 3;
    pub const CILIUM_NET_IFINDEX: u32 = 4;
    pub const TUNNEL_IFINDEX: u32 = 5;
    pub const WIREGUARD_IFINDEX: u32 = 6;
    pub const MTU: u32 = 1500;
    pub const NATIVE_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    pub const CILIUM_HOST_MAC: [u8; 6] = [0xce, 0x72, 0xa7, 0x03, 0x88, 0x56];
    pub const CILIUM_NET_MAC: [u8; 6] = [0xce, 0x72, 0xa7, 0x03, 0x88, 0x57];
    pub const TUNNEL_MAC: [u8; 6] = [0x5a, 0x1f, 0x2c, 0x3d, 0x4e, 0x5f];
    /// `templateMAC` of the endpoint template.
    pub const TEMPLATE_MAC: [u8; 6] = [0x02, 0x00, 0x60, 0x0d, 0xf0, 0x0d];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunnel {
    Vxlan,
    Geneve,
}

impl Tunnel {
    /// `TUNNEL_PROTOCOL_VXLAN` / `TUNNEL_PROTOCOL_GENEVE` in the datapath.
    pub fn code(self) -> u32 {
        match self {
            Self::Vxlan => 1,
            Self::Geneve => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentOptions {
    pub minor: u32,
    /// Values read at load time from `.rodata.config` instead of `#define`d, and per-program
    /// `-D` flags dropped with them (the release table's HeaderFacts, 1.18+).
    pub load_time_config: bool,
    /// Macros older versions wrote that this one reads at load time (HeaderFacts, 1.20:
    /// `ENABLE_ARP_RESPONDER`).
    pub moved_to_load_time: &'static [&'static str],
    pub ipv4: bool,
    pub ipv6: bool,
    /// Tunnel protocol and UDP port; None with native routing.
    pub tunnel: Option<(Tunnel, u16)>,
    pub nodeport: bool,
    pub host_routing: bool,
    pub bpf_masquerade: bool,
    pub ipv4_masquerade: bool,
    pub socket_lb: bool,
    pub socket_lb_hostns_only: bool,
    pub session_affinity: bool,
    pub ipsec: bool,
    pub wireguard: bool,
    pub l7_proxy: bool,
    /// XDP NodePort acceleration (`loadBalancer.acceleration` native / best-effort).
    pub xdp_acceleration: bool,
    /// The XDP prefilter (`prefilter.enabled`).
    pub xdp_prefilter: bool,
    pub bandwidth_manager: bool,
    pub host_firewall: bool,
    pub endpoint_routes: bool,
    pub l2_announcements: bool,
    pub local_redirect_policy: bool,
    pub ipv4_fragments: bool,
    pub identity_mark: bool,
    pub netkit: bool,
    pub native_routing: bool,
    /// `bpf.monitorAggregation` as the agent's level (0-4).
    pub monitor_aggregation: u32,
}

fn flag(target: &Target, path: &str) -> Option<bool> {
    match target.value(path)? {
        Value::Bool(b) => Some(b),
        Value::String(s) => Some(s == "true"),
        _ => None,
    }
}

fn text(target: &Target, path: &str) -> String {
    match target.value(path) {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// `bpf.monitorAggregation` the way the agent parses it (pkg/option, `ParseMonitorAggregationLevel`):
/// none/disabled 0, lowest 1, low 2, medium 3 (the chart default), max/maximum 4, or a number.
pub fn monitor_aggregation_level(value: &str) -> u32 {
    match value.to_ascii_lowercase().as_str() {
        "" | "none" | "disabled" | "false" => 0,
        "lowest" => 1,
        "low" => 2,
        "medium" => 3,
        "max" | "maximum" | "true" => 4,
        n => n.parse().unwrap_or(3).min(4),
    }
}

impl AgentOptions {
    pub fn new(minor: u32, target: &Target, features: &Features) -> Self {
        let tunnel = super::nodeinit::tunnel(target).map(|(proto, port)| {
            let t = if proto == "geneve" {
                Tunnel::Geneve
            } else {
                Tunnel::Vxlan
            };
            (t, port)
        });
        let acceleration = text(target, "loadBalancer.acceleration");
        let aggregation = match target.value("bpf.monitorAggregation") {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => "medium".into(),
        };
        // The release table's row for this minor (the newest for one past it).
        let headers = BUILTIN
            .find((1, minor))
            .unwrap_or_else(|| BUILTIN.newest())
            .headers;
        Self {
            minor,
            load_time_config: headers.load_time_config,
            moved_to_load_time: headers.moved_to_load_time,
            ipv4: flag(target, "ipv4.enabled").unwrap_or(true),
            ipv6: flag(target, "ipv6.enabled").unwrap_or(false),
            tunnel,
            nodeport: features.nodeport,
            host_routing: features.nodeport && features.host_routing,
            bpf_masquerade: target.needs(Capability::BpfMasquerade),
            ipv4_masquerade: flag(target, "enableIPv4Masquerade").unwrap_or(true),
            socket_lb: target.needs(Capability::SocketLb),
            socket_lb_hostns_only: flag(target, "socketLB.hostNamespaceOnly").unwrap_or(false),
            // The agent turns session affinity on with kube-proxy replacement.
            session_affinity: target.needs(Capability::KubeProxyReplacement)
                || flag(target, "sessionAffinity").unwrap_or(false),
            ipsec: target.needs(Capability::Ipsec),
            wireguard: target.needs(Capability::WireGuard),
            l7_proxy: target.needs(Capability::L7Proxy),
            xdp_acceleration: matches!(acceleration.as_str(), "native" | "best-effort"),
            xdp_prefilter: flag(target, "prefilter.enabled").unwrap_or(false),
            bandwidth_manager: target.needs(Capability::BandwidthManager),
            host_firewall: flag(target, "hostFirewall.enabled").unwrap_or(false),
            endpoint_routes: flag(target, "endpointRoutes.enabled").unwrap_or(false),
            l2_announcements: flag(target, "l2announcements.enabled").unwrap_or(false),
            local_redirect_policy: flag(target, "localRedirectPolicy").unwrap_or(false),
            // enable-ipv4-fragment-tracking defaults to true in the agent.
            ipv4_fragments: flag(target, "enableIPv4FragmentsTracking").unwrap_or(true),
            identity_mark: flag(target, "enableIdentityMark").unwrap_or(true),
            netkit: target.needs(Capability::Netkit),
            native_routing: target.needs(Capability::NativeRouting),
            monitor_aggregation: monitor_aggregation_level(&aggregation),
        }
    }

    /// Whether the agent reads `name` at load time rather than writing it into a header.
    pub fn reads_at_load_time(&self, name: &str) -> bool {
        self.moved_to_load_time.contains(&name)
    }

    pub fn dual_stack(&self) -> bool {
        self.ipv4 && self.ipv6
    }

    /// XDP is used at all: acceleration or the prefilter.
    pub fn xdp(&self) -> bool {
        self.xdp_acceleration || self.xdp_prefilter
    }

    /// The world identities the per-program flags carry (`SECLABEL_IPV4`/`IPV6`).
    pub fn world_ids(&self) -> (u32, u32) {
        if self.dual_stack() {
            (WORLD_IPV4_ID, WORLD_IPV6_ID)
        } else {
            (WORLD_ID, WORLD_ID)
        }
    }
}

/// `{.addr={0x52,0x54,…}}`, the agent's spelling of a MAC in a `-D` flag (mac.CArrayString).
pub fn mac_initializer(mac: [u8; 6]) -> String {
    let bytes: Vec<String> = mac.iter().map(|b| format!("{b:#x}")).collect();
    format!("{{.addr={{{}}}}}", bytes.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{features, profile::for_minor};

    #[test]
    fn chart_defaults_map_to_the_agents_options() {
        let t = Target::chart_defaults("1.16.15");
        let f = features::derive(&for_minor(16), &t, None);
        let o = AgentOptions::new(16, &t, &f);
        assert!(o.ipv4 && !o.ipv6 && !o.nodeport && !o.socket_lb && o.l7_proxy);
        assert_eq!(o.tunnel, Some((Tunnel::Vxlan, 8472)));
        assert_eq!(o.monitor_aggregation, 3);
        assert!(!o.xdp() && !o.ipsec && !o.wireguard);
        assert_eq!(o.world_ids(), (2, 2));
        assert_eq!(monitor_aggregation_level("low"), 2);
        assert_eq!(monitor_aggregation_level("MAXIMUM"), 4);
        assert_eq!(
            mac_initializer(devices::TEMPLATE_MAC),
            "{.addr={0x2,0x0,0x60,0xd,0xf0,0xd}}"
        );
    }
}

//! Effective values → capabilities: which kernel features the chart's settings will use.
use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    Capability,
    values::{as_text, lookup, truthy},
};

/// How the datapath routes pods between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    Vxlan,
    Geneve,
    Native,
}

/// Routing from the effective values: 1.15+ `routingMode` + `tunnelProtocol`, or the 1.14
/// `tunnel` key (`disabled` meaning native routing).
pub fn routing(effective: &Value) -> Routing {
    let mode = as_text(lookup(effective, "routingMode")).unwrap_or_default();
    let legacy = as_text(lookup(effective, "tunnel")).unwrap_or_default();
    if mode == "native" || (mode.is_empty() && legacy == "disabled") {
        return Routing::Native;
    }
    let protocol = as_text(lookup(effective, "tunnelProtocol"))
        .filter(|p| !p.is_empty())
        .unwrap_or(legacy);
    if protocol == "geneve" {
        Routing::Geneve
    } else {
        Routing::Vxlan
    }
}

/// kube-proxy replacement in any spelling: 1.15+ booleans, 1.14 `strict`/`probe` (full or
/// best-effort) and `partial` (socket LB only).
pub fn kube_proxy_replacement(effective: &Value) -> bool {
    match lookup(effective, "kubeProxyReplacement") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "strict" | "probe"),
        _ => false,
    }
}

pub fn capabilities(effective: &Value) -> BTreeSet<Capability> {
    let on = |path: &str| truthy(lookup(effective, path));
    let text = |path: &str| as_text(lookup(effective, path)).unwrap_or_default();
    let mut caps = BTreeSet::from([Capability::BaseDatapath, Capability::ChartValues]);
    caps.insert(match routing(effective) {
        Routing::Vxlan => Capability::TunnelVxlan,
        Routing::Geneve => Capability::TunnelGeneve,
        Routing::Native => Capability::NativeRouting,
    });
    let kpr = kube_proxy_replacement(effective);
    if kpr {
        caps.insert(Capability::KubeProxyReplacement);
    }
    // Socket LB is on with kube-proxy replacement whatever `socketLB.enabled` says: the agent
    // sets EnableSocketLB when kubeProxyReplacement is true (daemon/cmd/
    // kube_proxy_replacement.go, initKubeProxyReplacementOptions), and the 1.16+ charts' own
    // default is `socketLB.enabled: false`. It can also be asked for alone (and 1.14's
    // `partial` mode has it).
    let socket_lb = kpr || on("socketLB.enabled") || text("kubeProxyReplacement") == "partial";
    if socket_lb {
        caps.insert(Capability::SocketLb);
    }
    if on("bpf.masquerade") {
        caps.insert(Capability::BpfMasquerade);
    }
    // BPF host routing only becomes a hard need when asked for explicitly; left unset, the agent
    // picks legacy routing by itself when the kernel lacks redirect_neigh/peer.
    if matches!(
        lookup(effective, "bpf.hostLegacyRouting"),
        Some(Value::Bool(false))
    ) {
        caps.insert(Capability::BpfHostRouting);
    }
    if on("bandwidthManager.enabled") {
        caps.insert(Capability::BandwidthManager);
    }
    // An unknown type (`wg`) is not guessed at: `values.accepted-values` fails it instead.
    if on("encryption.enabled") {
        match text("encryption.type").as_str() {
            "wireguard" => {
                caps.insert(Capability::WireGuard);
            }
            "ipsec" | "" => {
                caps.insert(Capability::Ipsec);
            }
            _ => {}
        }
    }
    if text("bpf.datapathMode").starts_with("netkit") {
        caps.insert(Capability::Netkit);
    }
    if on("l7Proxy") {
        caps.insert(Capability::L7Proxy);
    }
    if on("hubble.enabled") {
        caps.insert(Capability::Hubble);
    }
    if matches!(
        text("loadBalancer.acceleration").as_str(),
        "native" | "best-effort"
    ) {
        caps.insert(Capability::XdpAcceleration);
    }
    caps
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cilium::values::coalesce;

    fn caps(version_defaults: &str, user: Value) -> BTreeSet<Capability> {
        let d: Value = serde_norway::from_str(version_defaults).unwrap();
        capabilities(&coalesce(&d, &user))
    }

    #[test]
    fn values_map_to_capabilities() {
        use Capability::*;
        let d = crate::cilium::releases::BUILTIN.newest().chart.defaults;
        let base = caps(d, json!({}));
        assert_eq!(
            base,
            BTreeSet::from([BaseDatapath, ChartValues, TunnelVxlan, L7Proxy, Hubble])
        );
        let table: &[(Value, &[Capability], &[Capability])] = &[
            (
                json!({"tunnelProtocol": "geneve"}),
                &[TunnelGeneve],
                &[TunnelVxlan],
            ),
            (
                json!({"routingMode": "native"}),
                &[NativeRouting],
                &[TunnelVxlan],
            ),
            (
                json!({"kubeProxyReplacement": true}),
                &[KubeProxyReplacement, SocketLb],
                &[],
            ),
            (
                json!({"kubeProxyReplacement": true, "socketLB": {"enabled": false}}),
                &[KubeProxyReplacement, SocketLb],
                &[],
            ),
            (
                json!({"socketLB": {"enabled": true}}),
                &[SocketLb],
                &[KubeProxyReplacement],
            ),
            (json!({"bpf": {"masquerade": true}}), &[BpfMasquerade], &[]),
            (
                json!({"bpf": {"hostLegacyRouting": false}}),
                &[BpfHostRouting],
                &[],
            ),
            (
                json!({"bpf": {"hostLegacyRouting": true}}),
                &[],
                &[BpfHostRouting],
            ),
            (json!({"bpf": {"datapathMode": "netkit"}}), &[Netkit], &[]),
            (
                json!({"encryption": {"enabled": true, "type": "wireguard"}}),
                &[WireGuard],
                &[Ipsec],
            ),
            (json!({"encryption": {"enabled": true}}), &[Ipsec], &[]),
            (
                json!({"encryption": {"enabled": true, "type": "wg"}}),
                &[],
                &[Ipsec, WireGuard],
            ),
            (
                json!({"bandwidthManager": {"enabled": true}}),
                &[BandwidthManager],
                &[],
            ),
            (
                json!({"l7Proxy": false, "hubble": {"enabled": false}}),
                &[],
                &[L7Proxy, Hubble],
            ),
            (
                json!({"loadBalancer": {"acceleration": "native"}}),
                &[XdpAcceleration],
                &[],
            ),
            (json!({"hubble": null}), &[], &[Hubble]),
        ];
        for (user, has, lacks) in table {
            let got = caps(d, user.clone());
            for c in *has {
                assert!(got.contains(c), "{user} should need {c}: {got:?}");
            }
            for c in *lacks {
                assert!(!got.contains(c), "{user} should not need {c}: {got:?}");
            }
        }
    }

    #[test]
    fn the_114_spellings_are_understood() {
        use Capability::*;
        let d = crate::cilium::releases::RELEASES[0].chart.defaults;
        assert!(caps(d, json!({})).contains(&TunnelVxlan));
        assert!(caps(d, json!({"tunnel": "geneve"})).contains(&TunnelGeneve));
        assert!(caps(d, json!({"tunnel": "disabled"})).contains(&NativeRouting));
        let strict = caps(d, json!({"kubeProxyReplacement": "strict"}));
        assert!(strict.contains(&KubeProxyReplacement) && strict.contains(&SocketLb));
        let partial = caps(d, json!({"kubeProxyReplacement": "partial"}));
        assert!(!partial.contains(&KubeProxyReplacement) && partial.contains(&SocketLb));
    }
}

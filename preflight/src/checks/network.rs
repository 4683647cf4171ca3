//! Live network devices (netlink): a vxlan/geneve device already holding Cilium's tunnel port
//! makes the tunnel setup fail with "address already in use" — the start of the
//! 'CALLS_MAP' macro-redefinition incident (docs/compile.md) — and CNI leftovers.
use super::Check;
use crate::{
    facts::Facts,
    host::links::{GENEVE_PORT, Link, VXLAN_PORT},
    model::{
        Area,
        Capability::{self, *},
        Gathered, Outcome,
    },
};

const EVIDENCE: &str = "netlink RTM_GETLINK dump";

fn with_links(facts: &Facts, f: impl FnOnce(&[Link]) -> Outcome) -> Outcome {
    match &facts.links {
        Gathered::Got(links) => f(links).evidence(EVIDENCE),
        Gathered::Unknown(why) => Outcome::unknown(why.clone()).evidence(EVIDENCE),
        Gathered::Skipped(why) => Outcome::skip(why.clone()),
    }
}

fn port_check(proto: &'static str, port: u16, own: &'static str, cap: Capability) -> Check {
    Check::new(
        format!("network.tunnel-port.{proto}"),
        Area::Network,
        format!("UDP {port} free for Cilium's {proto} tunnel"),
    )
    .needed_by(&[cap])
    .remedy("delete the device holding the port (`ip link delete flannel.1`, after switching k3s to flannel-backend: none), or use another tunnelProtocol/tunnelPort")
    .evaluate(move |facts, _| {
        with_links(facts, |links| {
            let holders: Vec<_> = links
                .iter()
                .filter(|l| l.tunnel_port() == Some(port) && l.name != own)
                .collect();
            match holders.as_slice() {
                [] => Outcome::pass(format!("no other tunnel device on UDP {port}")),
                h => {
                    let names: Vec<_> = h.iter().map(|l| format!("{} ({})", l.name, l.kind)).collect();
                    Outcome::fail(format!(
                        "{} already holds UDP {port}: Cilium's {own} fails with \"address already in use\", datapath init stops before node_config.h is written, and endpoint compiles fail with 'CALLS_MAP' macro redefined",
                        names.join(", ")
                    ))
                    .remedy(h.iter().map(|l| format!("ip link delete {}", l.name)).collect::<Vec<_>>().join(" && "))
                }
            }
        })
    })
}

fn present_check(
    id: &str,
    title: &str,
    names: &'static [&'static str],
    why: &'static str,
    remedy: &str,
) -> Check {
    Check::new(id, Area::Network, title)
        .remedy(remedy)
        .evaluate(move |facts, _| {
            with_links(facts, |links| {
                let found: Vec<_> = links
                    .iter()
                    .filter(|l| names.contains(&l.name.as_str()))
                    .map(|l| l.name.clone())
                    .collect();
                if found.is_empty() {
                    Outcome::pass(format!("none of {} present", names.join(", ")))
                } else {
                    Outcome::warn(format!("{} present: {why}", found.join(", "))).remedy(
                        found
                            .iter()
                            .map(|n| format!("ip link delete {n}"))
                            .collect::<Vec<_>>()
                            .join(" && "),
                    )
                }
            })
        })
}

pub fn checks() -> Vec<Check> {
    vec![
        port_check("vxlan", VXLAN_PORT, "cilium_vxlan", TunnelVxlan),
        port_check("geneve", GENEVE_PORT, "cilium_geneve", TunnelGeneve),
        present_check(
            "network.flannel-leftovers",
            "No flannel devices left (flannel.1, cni0)",
            &["flannel.1", "cni0", "flannel-v6.1", "flannel-wg"],
            "flannel's devices and routes stay after flannel is disabled; users fixed the Cilium migration by deleting them",
            "ip link delete flannel.1 && ip link delete cni0",
        ),
        present_check(
            "network.cilium-leftovers",
            "No stale Cilium devices (cilium_host, cilium_net, cilium_vxlan)",
            &["cilium_host", "cilium_net", "cilium_vxlan", "cilium_geneve"],
            "left by an earlier install; harmless when that install is the one being upgraded, otherwise a stale cilium_vxlan can hold the tunnel port (delete them before uninstalling k3s or the host loses connectivity)",
            "ip link delete cilium_vxlan; ip link delete cilium_host (takes cilium_net with it)",
        ),
    ]
}

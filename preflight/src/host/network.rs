//! The node's network for a whole-cluster migration plan: addresses, routes, bound UDP ports and
//! device kinds, read as files through the root, so the same code serves the node itself (`/`),
//! a Job pod (`/host`, whose `proc/1` is the host's init) and a fixture tree.
//!
//! `proc/1/net/*` is PID 1's network namespace, the node's, whatever namespace the reader is in
//! (`/proc/net` would be the reader's own). Formats (proc(5)): `route` has hex little-endian
//! IPv4 destination, gateway and mask per line; `fib_trie` lists the local addresses as
//! `/32 host LOCAL` leaves; `ipv6_route` has 32-hex-digit addresses and hex prefix lengths;
//! `if_inet6` one address per line with device and prefix; `udp`/`udp6` `HEXIP:HEXPORT`.
use std::net::{Ipv4Addr, Ipv6Addr};

use super::HostRoot;
use crate::model::{Gathered, K3sRole, NetDevice, NodeAddress, NodeNetwork, NodeRoute};

const NET: &str = "/proc/1/net";

/// Every fact, or why not: without PID 1's route table nothing here can be told.
pub fn gather(host: &HostRoot) -> Gathered<NodeNetwork> {
    let route = match host.read_text(&format!("{NET}/route")) {
        Ok(t) => t,
        Err(e) => return Gathered::Unknown(format!("node routes: {e}")),
    };
    let mut net = NodeNetwork {
        routes: parse_route(&route),
        ..Default::default()
    };
    if let Ok(text) = host.read_text(&format!("{NET}/ipv6_route")) {
        net.routes.extend(parse_ipv6_route(&text));
    }
    let local = host
        .read_text(&format!("{NET}/fib_trie"))
        .map(|t| parse_fib_trie_local(&t))
        .unwrap_or_default();
    for addr in local {
        net.addresses.push(place_v4(addr, &net.routes));
    }
    if let Ok(text) = host.read_text(&format!("{NET}/if_inet6")) {
        net.addresses.extend(parse_if_inet6(&text));
    }
    for file in ["udp", "udp6"] {
        if let Ok(text) = host.read_text(&format!("{NET}/{file}")) {
            net.udp_ports.extend(parse_udp_ports(&text));
        }
    }
    net.udp_ports.sort_unstable();
    net.udp_ports.dedup();
    net.devices = devices(host);
    Gathered::Got(net)
}

/// Device names from `sys/class/net`, kinds from each one's `uevent` (`DEVTYPE=`).
fn devices(host: &HostRoot) -> Vec<NetDevice> {
    let Ok(names) = host.read_dir("/sys/class/net") else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|n| n != "lo")
        .map(|name| {
            let kind = host
                .read_text(&format!("/sys/class/net/{name}/uevent"))
                .ok()
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("DEVTYPE=").map(|k| k.trim().to_string()))
                })
                .unwrap_or_default();
            NetDevice { name, kind }
        })
        .collect()
}

fn hex_v4(s: &str) -> Option<Ipv4Addr> {
    // /proc/net/route prints the in-memory (network order) u32 as host-order hex.
    u32::from_str_radix(s, 16)
        .ok()
        .map(|v| Ipv4Addr::from(v.swap_bytes()))
}

/// `Iface Destination Gateway Flags RefCnt Use Metric Mask …`; loopback left out.
pub fn parse_route(text: &str) -> Vec<NodeRoute> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, dst, gw, mask) = (
                f.first()?,
                hex_v4(f.get(1)?)?,
                hex_v4(f.get(2)?)?,
                hex_v4(f.get(7)?)?,
            );
            if *dev == "lo" {
                return None;
            }
            let prefix = u32::from(mask).leading_ones();
            Some(NodeRoute {
                dst: format!("{dst}/{prefix}"),
                via: (!gw.is_unspecified()).then(|| gw.to_string()),
                dev: dev.to_string(),
            })
        })
        .collect()
}

fn hex_v6(s: &str) -> Option<Ipv6Addr> {
    (s.len() == 32)
        .then(|| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from))
        .flatten()
}

/// `dst plen src splen next-hop metric ref use flags dev`; loopback, link-local and multicast
/// left out.
pub fn parse_ipv6_route(text: &str) -> Vec<NodeRoute> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = hex_v6(f.first()?)?;
            let plen = u8::from_str_radix(f.get(1)?, 16).ok()?;
            let via = hex_v6(f.get(4)?)?;
            let dev = *f.get(9)?;
            if dev == "lo" || dst.is_multicast() || (dst.segments()[0] & 0xffc0) == 0xfe80 {
                return None;
            }
            Some(NodeRoute {
                dst: format!("{dst}/{plen}"),
                via: (!via.is_unspecified()).then(|| via.to_string()),
                dev: dev.to_string(),
            })
        })
        .collect()
}

/// The local IPv4 addresses: leaves followed by `/32 host LOCAL`, loopback left out.
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last = rest.split('/').next().and_then(|a| a.trim().parse().ok());
        } else if t.starts_with("/32 host LOCAL")
            && let Some(a) = last
            && !a.is_loopback()
            && !out.contains(&a)
        {
            out.push(a);
        }
    }
    out
}

/// An IPv4 address in CIDR form: the prefix and device of the most specific connected route
/// (no gateway) that holds it; /32 and no device when none does.
fn place_v4(addr: Ipv4Addr, routes: &[NodeRoute]) -> NodeAddress {
    let best = routes
        .iter()
        .filter(|r| r.via.is_none())
        .filter_map(|r| {
            let (net, prefix) = parse_cidr_v4(&r.dst)?;
            (prefix > 0 && contains_v4(net, prefix, addr)).then_some((prefix, r))
        })
        .max_by_key(|(p, _)| *p);
    match best {
        Some((prefix, r)) => NodeAddress {
            cidr: format!("{addr}/{prefix}"),
            dev: Some(r.dev.clone()),
        },
        None => NodeAddress {
            cidr: format!("{addr}/32"),
            dev: None,
        },
    }
}

/// `addr ifindex plen scope flags dev`; loopback (scope 10 is host) and link-local (20) left out.
pub fn parse_if_inet6(text: &str) -> Vec<NodeAddress> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = hex_v6(f.first()?)?;
            let plen = u8::from_str_radix(f.get(2)?, 16).ok()?;
            let scope = u8::from_str_radix(f.get(3)?, 16).ok()?;
            let dev = f.get(5)?;
            (scope == 0).then(|| NodeAddress {
                cidr: format!("{addr}/{plen}"),
                dev: Some(dev.to_string()),
            })
        })
        .collect()
}

/// Local ports of `udp`/`udp6` (`sl local_address rem_address st …`).
pub fn parse_udp_ports(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()
        })
        .collect()
}

pub fn parse_cidr_v4(s: &str) -> Option<(Ipv4Addr, u32)> {
    let (a, p) = s.split_once('/')?;
    let p: u32 = p.parse().ok()?;
    (p <= 32).then_some((a.parse().ok()?, p))
}

fn contains_v4(net: Ipv4Addr, prefix: u32, addr: Ipv4Addr) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(net) & mask == u32::from(addr) & mask
}

/// k3s's role and CIDRs on this node, from the merged config (`k3s`), the service units and
/// containerd's CNI dirs (`cni`); None when k3s is not on this node. The role follows the same
/// rule as the migration plan: a `k3s-agent` unit, or a `server:` URL and no server unit.
pub fn k3s_role(
    host: &HostRoot,
    k3s: &super::k3s::K3sFacts,
    cni: &super::cni::CniFacts,
) -> Option<K3sRole> {
    if !k3s.present {
        return None;
    }
    let agent_unit = host.exists("/etc/systemd/system/k3s-agent.service")
        || host.exists("/etc/init.d/k3s-agent");
    let server_unit =
        host.exists("/etc/systemd/system/k3s.service") || host.exists("/etc/init.d/k3s");
    let agent = agent_unit || (k3s.server.is_some() && !server_unit);
    let list = |v: &Option<String>, default: &str| -> Vec<String> {
        let l: Vec<String> = v
            .as_deref()
            .unwrap_or(default)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if l.is_empty() {
            vec![default.to_string()]
        } else {
            l
        }
    };
    Some(K3sRole {
        role: if agent { "agent" } else { "server" }.into(),
        unit: if agent_unit { "k3s-agent" } else { "k3s" }.into(),
        cluster_cidrs: list(&k3s.cluster_cidr, "10.42.0.0/16"),
        service_cidrs: list(&k3s.service_cidr, "10.43.0.0/16"),
        flannel_backend: k3s.flannel_backend.clone(),
        server: k3s.server.clone(),
        cni_conf_dir: (!cni.conf_dir.is_empty() && cni.dirs_unknown.is_none())
            .then(|| cni.conf_dir.clone()),
        cni_bin_dirs: if cni.dirs_unknown.is_none() {
            cni.bin_dirs.clone()
        } else {
            Vec::new()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a network namespace of this kernel set up like a flannel node (eth0
    // 192.168.50.11/24, cni0 10.42.0.1/24, flannel.1 on UDP 8472, a route to the other node's
    // pod subnet through flannel.1).
    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0132A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0032A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
cni0\t00002A0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
flannel.1\t00012A0A\t00012A0A\t0043\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn routes_and_addresses_from_proc() {
        let routes = parse_route(ROUTE);
        assert_eq!(routes[0].dst, "0.0.0.0/0");
        assert_eq!(routes[0].via.as_deref(), Some("192.168.50.1"));
        assert_eq!(routes[1].dst, "192.168.50.0/24");
        assert_eq!(routes[3].dst, "10.42.1.0/24");
        assert_eq!(routes[3].dev, "flannel.1");
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 192.168.50.11\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 10.42.0.1\n        /32 host LOCAL\nLocal:\n     |-- 192.168.50.11\n        /32 host LOCAL\n";
        let local = parse_fib_trie_local(trie);
        assert_eq!(local.len(), 2, "{local:?}");
        let a = place_v4(local[0], &routes);
        assert_eq!(a.cidr, "192.168.50.11/24");
        assert_eq!(a.dev.as_deref(), Some("eth0"));
        let udp = "  sl  local_address rem_address   st\n 7801: 00000000:2118 00000000:0000 07 0\n";
        assert_eq!(parse_udp_ports(udp), [8472]);
        let v6 = "fd000000000000000000000000000011 02 40 00 80       eth0\nfe800000000000000000000000000001 02 40 20 80 eth0\n";
        let a6 = parse_if_inet6(v6);
        assert_eq!(a6.len(), 1);
        assert_eq!(a6[0].cidr, "fd00::11/64");
    }

    #[test]
    fn parsers_take_garbage_without_panicking() {
        for junk in [
            "",
            "\n\n",
            "x y z",
            "Iface\nlo 0 0",
            "a\tb\tc\td\te\tf\tg\th",
            "|-- \n/32 host LOCAL",
        ] {
            let _ = parse_route(junk);
            let _ = parse_ipv6_route(junk);
            let _ = parse_fib_trie_local(junk);
            let _ = parse_if_inet6(junk);
            let _ = parse_udp_ports(junk);
        }
        assert!(parse_cidr_v4("10.0.0.0/33").is_none());
    }
}

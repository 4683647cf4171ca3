//! Distribution and packet filtering: os-release, iptables backend, NetworkManager, firewalld.
use super::Check;
use crate::{
    host::distro::IptablesBackend,
    model::{Area, Capability::*, Outcome},
};

const NM_CONF: &str = "cat > /etc/NetworkManager/conf.d/99-cilium.conf <<'EOF'\n[keyfile]\nunmanaged-devices=interface-name:cilium_*;interface-name:lxc*;interface-name:flannel*;interface-name:cni*;interface-name:veth*\nEOF\nsystemctl reload NetworkManager";

pub fn checks() -> Vec<Check> {
    vec![
        Check::new("distro.os-release", Area::Distro, "Distribution")
            .evaluate(|facts, _| match &facts.distro.os {
                Ok(o) => Outcome::pass(format!(
                    "{} (ID={}, VERSION_ID={})",
                    o.pretty_name.as_deref().unwrap_or("?"),
                    o.id.as_deref().unwrap_or("?"),
                    o.version_id.as_deref().unwrap_or("?")
                ))
                .evidence(o.file.clone()),
                Err(why) => Outcome::unknown(why.clone()),
            }),
        Check::new("distro.iptables", Area::Distro, "iptables backend (legacy or nft)")
            .evaluate(|facts, _| {
                let d = &facts.distro;
                let ev = d.iptables_evidence.clone();
                match d.iptables {
                    IptablesBackend::Nft => Outcome::pass("nft backend (iptables-nft); Cilium's image detects and follows it").evidence(ev),
                    IptablesBackend::Legacy => Outcome::pass("legacy backend (iptables-legacy)").evidence(ev),
                    IptablesBackend::NotInstalled => Outcome::pass("no iptables on the host; Cilium brings its own and detects the kernel's backend"),
                    IptablesBackend::Unknown => Outcome::unknown("cannot tell the iptables backend from its link").evidence(ev),
                }
            }),
        Check::new("distro.network-manager", Area::Distro, "NetworkManager leaves Cilium's and CNI interfaces alone")
            .needed_by(&[BaseDatapath])
            .remedy(NM_CONF)
            .evaluate(|facts, _| {
                let nm = &facts.distro.network_manager;
                if !nm.installed {
                    return Outcome::skip("NetworkManager not installed");
                }
                let missing: Vec<_> = ["cilium_host", "lxc0", "cni0", "flannel.1"]
                    .into_iter()
                    .filter(|n| !nm.leaves_alone(n))
                    .collect();
                let out = if missing.is_empty() {
                    Outcome::pass("unmanaged-devices covers cilium_*, lxc*, cni*, flannel*")
                } else {
                    Outcome::warn(format!("NetworkManager would manage {}: it can strip their addresses and routes", missing.join(", ")))
                };
                let files: std::collections::BTreeSet<_> = nm.unmanaged.iter().map(|(_, f)| f.clone()).collect();
                files.into_iter().fold(out, |o, f| o.evidence(f))
            }),
        Check::new("distro.firewalld", Area::Distro, "firewalld lets Cilium's ports through")
            .remedy("systemctl disable --now firewalld (k3s docs recommend it), or: firewall-cmd --permanent --add-port=8472/udp --add-port=4240/tcp --add-port=4244/tcp && firewall-cmd --permanent --zone=trusted --add-source=<pod CIDR> && firewall-cmd --reload")
            .evaluate(|facts, _| match &facts.distro.firewalld_enabled {
                None => Outcome::pass("firewalld not enabled"),
                Some(unit) => Outcome::warn("firewalld is enabled: its nftables rules drop VXLAN (UDP 8472), health (TCP 4240) and Hubble (TCP 4244) traffic unless opened").evidence(unit.clone()),
            }),
    ]
}

//! What the agent decides about the node before it compiles anything: which kernel features the
//! datapath may use, and whether BPF NodePort and BPF host routing are on. cilium-agent probes
//! the kernel at startup and writes one `HAVE_*` macro per feature found into
//! `<bpf dir>/include/bpf/features.h` and `features_skb.h` (pkg/datapath/linux/probes/probes.go,
//! `CreateHeaderFiles`, called with `BpfDir/include/bpf`); from its options it writes
//! `ENABLE_NODEPORT` and `ENABLE_HOST_ROUTING` into node_config.h
//! (pkg/datapath/linux/config/config.go: both only when NodePort is on, host routing unless
//! `EnableHostLegacyRouting`). This module makes the same decisions from the target's values
//! and preflight's own probe results, so the templates compile the code the agent would.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use serde_json::Value;

use super::profile::Profile;
use crate::{cilium::Target, model::Capability, probe::ProbeReport};

/// A feature macro the agent writes from one helper probe: (header, macro, program type,
/// helper). `HAVE_FIB_IFINDEX` is probed through bpf_redirect_peer: the agent uses that helper
/// as the marker for the 5.10 kernel that made bpf_fib_lookup always return the egress ifindex.
const FEATURE_MACROS: &[(&str, &str, &str, &str)] = &[
    (
        "features.h",
        "HAVE_FIB_NEIGH",
        "sched_cls",
        "redirect_neigh",
    ),
    (
        "features.h",
        "HAVE_FIB_IFINDEX",
        "sched_cls",
        "redirect_peer",
    ),
    (
        "features_skb.h",
        "HAVE_CSUM_LEVEL",
        "sched_cls",
        "csum_level",
    ),
    // 5.7 for cgroup hooks (f318903c0bf4); the socket LB keys its reverse NAT by netns with it.
    (
        "features.h",
        "HAVE_NETNS_COOKIE",
        "cgroup_sock_addr",
        "get_netns_cookie",
    ),
    // 5.5; conntrack's clock. Without it the templates count seconds from ktime.
    ("features.h", "HAVE_JIFFIES", "sched_cls", "jiffies64"),
];

/// The helpers BPF host routing needs for sched_cls programs.
const HOST_ROUTING_HELPERS: &[&str] = &["redirect_neigh", "redirect_peer"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Features {
    /// Each `HAVE_*` macro and whether it is defined.
    pub have: BTreeMap<String, bool>,
    /// Where the `HAVE_*` answers come from: the live probes, or the assumption made without.
    pub have_from: String,
    /// `ENABLE_NODEPORT`: BPF NodePort, on with kube-proxy replacement.
    pub nodeport: bool,
    /// `ENABLE_HOST_ROUTING`: BPF host routing (bpf_redirect_peer/neigh) instead of the host
    /// stack.
    pub host_routing: bool,
    /// Why host routing is on or off, in the agent's terms.
    pub host_routing_reason: String,
}

/// Whether the probes found `helper` for `program_type`. Without probe results the helpers are
/// assumed present (kernel 5.10+, the newest minimum). A probe that could not tell counts as
/// missing, as in the agent, where any probe error means "not supported".
fn helper_present(probes: Option<&ProbeReport>, program_type: &str, helper: &str) -> bool {
    match probes {
        None => true,
        Some(p) => p
            .helper(program_type, helper)
            .is_some_and(|s| s.is_available()),
    }
}

fn is_true(v: Option<Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// The agent's host-routing decision (daemon/cmd/kube_proxy_replacement.go,
/// `finishKubeProxyReplacementInit` and `disableNodePort`): legacy routing whenever BPF NodePort is
/// off, when the values ask for it, when masquerading goes through iptables (the host stack is
/// needed), with IPsec and when the kernel lacks either helper in the versions whose agent does so
/// (the release table's `host_routing_off_with_ipsec`, `host_routing_kernel_fallback`: up to 1.17;
/// from 1.18 the agent refuses to start on such a kernel instead,
/// docs/upstream.md#node-requirements).
fn host_routing(
    profile: &Profile,
    target: &Target,
    probes: Option<&ProbeReport>,
) -> (bool, String) {
    if !target.needs(Capability::KubeProxyReplacement) {
        return (
            false,
            "kubeProxyReplacement is off, and without BPF NodePort the agent always routes \
             through the host stack"
                .into(),
        );
    }
    if is_true(target.value("bpf.hostLegacyRouting")) {
        return (false, "bpf.hostLegacyRouting=true".into());
    }
    let agent = &target.release().agent;
    if agent.host_routing_off_with_ipsec && target.needs(Capability::Ipsec) {
        return (
            false,
            "the agent falls back: BPF host routing is incompatible with IPsec".into(),
        );
    }
    // The chart enables IPv4 masquerading unless told otherwise; without bpf.masquerade it is
    // done by iptables, which needs the host stack.
    let masquerade = target
        .value("enableIPv4Masquerade")
        .is_none_or(|v| is_true(Some(v)));
    if masquerade && !target.needs(Capability::BpfMasquerade) {
        return (
            false,
            "the agent falls back: BPF host routing requires bpf.masquerade=true when \
             masquerading"
                .into(),
        );
    }
    let missing: Vec<&str> = HOST_ROUTING_HELPERS
        .iter()
        .copied()
        .filter(|h| !helper_present(probes, "sched_cls", h))
        .collect();
    if !missing.is_empty() {
        let names = missing
            .iter()
            .map(|h| format!("bpf_{h}"))
            .collect::<Vec<_>>()
            .join(" and ");
        if agent.host_routing_kernel_fallback {
            return (
                false,
                format!(
                    "the kernel lacks {names} for sched_cls, so the agent falls back (it needs \
                     kernel 5.10)"
                ),
            );
        }
        return (
            true,
            format!(
                "{} does not fall back, although the kernel lacks {names} (its startup check \
                 requires both)",
                profile.label()
            ),
        );
    }
    let basis = if probes.is_some() {
        "bpf_redirect_neigh and bpf_redirect_peer available"
    } else {
        "no live probe results, helpers assumed available"
    };
    (
        true,
        format!("kubeProxyReplacement=true, bpf.masquerade=true, {basis}"),
    )
}

pub fn derive(profile: &Profile, target: &Target, probes: Option<&ProbeReport>) -> Features {
    let have = FEATURE_MACROS
        .iter()
        .map(|(_, name, prog, helper)| (name.to_string(), helper_present(probes, prog, helper)))
        .collect();
    let (host_routing, host_routing_reason) = host_routing(profile, target, probes);
    Features {
        have,
        have_from: match probes {
            Some(_) => "live probes".into(),
            None => "no live probe results: every feature assumed present (kernel 5.10+)".into(),
        },
        nodeport: target.needs(Capability::KubeProxyReplacement),
        host_routing,
        host_routing_reason,
    }
}

impl Features {
    /// The text of one feature header (`features.h`, `features_skb.h`), as the agent would
    /// write it: a guard and one `#define` per feature present.
    pub fn header(&self, file: &str) -> String {
        let guard = format!(
            "BPF_{}",
            file.trim_end_matches(".h")
                .to_ascii_uppercase()
                .replace('.', "_")
        );
        let mut text = format!(
            "/* kernel features (generated from the probes) */\n#ifndef {guard}_H\n#define {guard}_H\n"
        );
        for (f, name, ..) in FEATURE_MACROS {
            if *f == file && self.have.get(*name).copied().unwrap_or(false) {
                let _ = writeln!(text, "#define {name} 1");
            }
        }
        text.push_str("#endif\n");
        text
    }

    /// The feature headers, by file name under `include/bpf/`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut files: Vec<&'static str> = FEATURE_MACROS.iter().map(|(f, ..)| *f).collect();
        files.dedup();
        files.into_iter().map(|f| (f, self.header(f))).collect()
    }

    /// Writes the feature headers into a bpf dir's `include/bpf/`, where the agent writes them.
    pub fn write(&self, bpf_dir: &std::path::Path) -> std::io::Result<()> {
        let dir = bpf_dir.join("include/bpf");
        std::fs::create_dir_all(&dir)?;
        for (file, text) in self.headers() {
            // A new file: in a copy of a user's tree the old one may be a hard link to theirs.
            super::tree_scan::replace_file(&dir.join(file), &text)?;
        }
        Ok(())
    }

    /// One line for reports: modes and the feature macros, `-` before the missing ones.
    pub fn summary(&self) -> String {
        let have: Vec<String> = self
            .have
            .iter()
            .map(|(n, on)| if *on { n.clone() } else { format!("-{n}") })
            .collect();
        format!(
            "NodePort {}, host routing {} ({}); {} ({})",
            if self.nodeport { "BPF" } else { "off" },
            if self.host_routing { "BPF" } else { "legacy" },
            self.host_routing_reason,
            have.join(" "),
            self.have_from
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::{compile::profile::for_minor, host::state::macros, model::Support};

    fn probes(helpers_present: bool) -> ProbeReport {
        let h = helpers_present;
        ProbeReport::stated(
            &[
                ("sched_cls", "redirect_neigh", h),
                ("sched_cls", "redirect_peer", h),
                ("sched_cls", "csum_level", h),
            ],
            &[],
        )
    }

    fn target(version: &str, values: Value) -> Target {
        Target::chart_defaults(version).with_patch(&values)
    }

    fn kpr_bpf_masq() -> Value {
        json!({"kubeProxyReplacement": true, "bpf": {"masquerade": true}})
    }

    #[test]
    fn chart_defaults_route_through_the_host_stack_without_nodeport() {
        let f = derive(
            &for_minor(18),
            &Target::chart_defaults("1.18.4"),
            Some(&probes(true)),
        );
        assert!(!f.nodeport && !f.host_routing);
        assert!(f.host_routing_reason.contains("kubeProxyReplacement"));
        assert!(f.have["HAVE_FIB_NEIGH"] && f.have["HAVE_FIB_IFINDEX"]);
    }

    #[test]
    fn kpr_with_bpf_masquerade_and_the_helpers_uses_bpf_host_routing() {
        let f = derive(
            &for_minor(17),
            &target("1.17.4", kpr_bpf_masq()),
            Some(&probes(true)),
        );
        assert!(f.nodeport && f.host_routing, "{}", f.host_routing_reason);
    }

    #[test]
    fn up_to_1_17_missing_helpers_fall_back_to_legacy_routing() {
        let t = target("1.17.4", kpr_bpf_masq());
        let f = derive(&for_minor(17), &t, Some(&probes(false)));
        assert!(f.nodeport && !f.host_routing);
        assert!(
            f.host_routing_reason
                .contains("bpf_redirect_neigh and bpf_redirect_peer")
        );
        assert!(f.have.values().all(|on| !on));
        // 1.18+ does not fall back: the agent stops instead, and the header says what it asked.
        let f = derive(
            &for_minor(18),
            &target("1.18.4", kpr_bpf_masq()),
            Some(&probes(false)),
        );
        assert!(f.host_routing && f.host_routing_reason.contains("does not fall back"));
    }

    #[test]
    fn values_that_need_the_host_stack_select_legacy_routing() {
        for (patch, why) in [
            (
                json!({"bpf": {"hostLegacyRouting": true}}),
                "hostLegacyRouting",
            ),
            (json!({"bpf": {"masquerade": false}}), "bpf.masquerade"),
            (
                json!({"encryption": {"enabled": true, "type": "ipsec"}}),
                "IPsec",
            ),
        ] {
            let t = target("1.16.5", kpr_bpf_masq()).with_patch(&patch);
            let f = derive(&for_minor(16), &t, Some(&probes(true)));
            assert!(!f.host_routing, "{patch}");
            assert!(
                f.host_routing_reason.contains(why),
                "{}",
                f.host_routing_reason
            );
        }
        // Masquerading off: nothing needs iptables, host routing stays.
        let t = target(
            "1.16.5",
            json!({"kubeProxyReplacement": true, "enableIPv4Masquerade": false}),
        );
        assert!(derive(&for_minor(16), &t, Some(&probes(true))).host_routing);
    }

    #[test]
    fn feature_headers_define_what_the_probes_found() {
        let mut p = probes(true);
        p.helpers.get_mut("sched_cls").unwrap().insert(
            "csum_level".into(),
            Support::Unknown {
                reason: "EPERM".into(),
            },
        );
        let f = derive(&for_minor(16), &Target::chart_defaults("1.16.5"), Some(&p));
        let headers: BTreeMap<_, _> = f.headers().into_iter().collect();
        let common = macros(&headers["features.h"]);
        assert!(common.contains("HAVE_FIB_NEIGH") && common.contains("HAVE_FIB_IFINDEX"));
        // A probe that could not tell is not a feature (the agent treats errors the same way).
        assert!(!macros(&headers["features_skb.h"]).contains("HAVE_CSUM_LEVEL"));
        assert!(headers["features_skb.h"].contains("#ifndef BPF_FEATURES_SKB_H"));
        // Without probes every feature is assumed, and the report says so.
        let f = derive(&for_minor(16), &Target::chart_defaults("1.16.5"), None);
        assert!(f.have.values().all(|on| *on) && f.have_from.contains("assumed"));
    }
}

//! What the target's Cilium version needs from the kernel, from its row of the release table
//! (cilium::releases): the documented minimum kernel per feature, and the helpers the 1.18+
//! agent refuses to start without. (The version's own minimum is `kernel.release` in
//! checks::kernel.)
use super::Check;
use crate::{
    cilium::{
        Target,
        releases::{KernelVersion, Release, kernel_version_str, parse_kernel_release},
    },
    facts::Facts,
    model::{
        Area,
        Capability::{self, *},
        Outcome, Support,
    },
    probe::ProbeReport,
};

/// Features whose documented minimum kernel we check (docs/target-and-values.md).
const FEATURE_MINIMUMS: &[Capability] = &[BandwidthManager, WireGuard, BpfHostRouting, Netkit];

fn kernel_at_least(facts: &Facts, min: KernelVersion, what: &str) -> Outcome {
    let Some(release) = &facts.kernel_release else {
        return Outcome::unknown("could not read the kernel release");
    };
    let Some(have) = parse_kernel_release(release) else {
        return Outcome::unknown(format!("cannot parse kernel release {release:?}"));
    };
    let min_s = kernel_version_str(min);
    let o = if have >= min {
        Outcome::pass(format!("kernel {release} ≥ {min_s} ({what})"))
    } else {
        Outcome::fail(format!(
            "kernel {release} < {min_s}, the minimum for {what}"
        ))
    };
    // Distributions backport: a version floor is a documented minimum, the probes decide.
    o.evidence(facts.host.display("/proc/sys/kernel/osrelease"))
}

/// Judges each helper in exactly the program types the agent probes it in (`AgentHelper`): a
/// helper missing from one of them refuses the start, one that could not be probed there is
/// unknown. No fallback to another program type: what one type allows says nothing about
/// another (bpf_get_netns_cookie: cgroup hooks since 5.7, tc much later).
fn judge_agent_helpers(p: &Release, probes: &ProbeReport) -> Outcome {
    let (mut missing, mut unknown) = (Vec::new(), Vec::new());
    for h in p.agent.helpers {
        for prog in h.program_types {
            let what = format!("{} in {prog}", h.helper);
            match probes.helper(prog, h.helper) {
                Some(Support::Available) => {}
                Some(Support::Unavailable { .. }) => missing.push(what),
                _ => unknown.push(what),
            }
        }
    }
    if !missing.is_empty() {
        Outcome::fail(format!(
            "Cilium {} agent requires {}",
            p.label(),
            missing.join(", ")
        ))
    } else if !unknown.is_empty() {
        Outcome::unknown(format!("could not tell: {}", unknown.join(", ")))
    } else {
        Outcome::pass(format!(
            "all {} helpers available where the agent probes them",
            p.agent.helpers.len()
        ))
    }
    .evidence("bpf(BPF_PROG_LOAD) helper probes")
}

pub fn checks() -> Vec<Check> {
    let mut checks = vec![
        Check::new(
            "bpf.cilium-agent-helpers",
            Area::Bpf,
            "helpers the target's cilium-agent checks at start-up",
        )
        .needed_by(&[BaseDatapath])
        .remedy("a kernel with these helpers (5.10+), or Cilium ≤ 1.17 which does not require them up front")
        .evaluate(|facts, target: &Target| {
            let p = target.release();
            if p.agent.helpers.is_empty() {
                return Outcome::skip(format!("Cilium {} checks no helper list at start-up", p.label()));
            }
            facts.probes.judge(|probes| judge_agent_helpers(p, probes))
        }),
    ];
    for cap in FEATURE_MINIMUMS {
        let cap = *cap;
        checks.push(
            Check::new(
                format!("kernel.feature-minimum.{cap}"),
                Area::Kernel,
                format!("kernel meets the documented minimum for {cap}"),
            )
            .needed_by(&[cap])
            .remedy(format!(
                "upgrade the kernel or turn {cap} off (see the verdict's values patch)"
            ))
            .evaluate(move |facts, target: &Target| {
                if !target.needs(cap) {
                    return Outcome::skip(format!("the target does not use {cap}"));
                }
                match target.release().capability(cap).and_then(|n| n.min_kernel) {
                    Some(min) => kernel_at_least(facts, min, cap.as_str()),
                    None => Outcome::skip("no documented minimum"),
                }
            }),
        );
    }
    checks
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        cilium::releases::{BUILTIN, RELEASES},
        model::Status,
    };

    fn profile(minor: u32) -> &'static Release {
        BUILTIN.find((1, minor)).unwrap()
    }

    /// Every helper of `p` available in every program type, except the `(type, helper)` pairs
    /// in `overrides`.
    fn probes(p: &Release, overrides: &[(&str, &str, Support)]) -> ProbeReport {
        let mut helpers: BTreeMap<String, BTreeMap<String, Support>> = BTreeMap::new();
        for h in p.agent.helpers {
            for prog in ["sched_cls", "xdp", "cgroup_sock", "cgroup_sock_addr"] {
                helpers
                    .entry(prog.into())
                    .or_default()
                    .insert(h.helper.into(), Support::Available);
            }
        }
        for (prog, helper, s) in overrides {
            helpers
                .entry(prog.to_string())
                .or_default()
                .insert(helper.to_string(), s.clone());
        }
        ProbeReport {
            program_types: BTreeMap::new(),
            map_types: BTreeMap::new(),
            helpers,
            helpers_not_probed: BTreeMap::new(),
            misc: BTreeMap::new(),
            elapsed_ms: 0.0,
        }
    }

    fn no() -> Support {
        Support::Unavailable { reason: None }
    }

    #[test]
    fn netns_cookie_is_judged_in_the_cgroup_hooks_not_in_tc() {
        // A 5.7–6.12 kernel: the cgroup hooks have bpf_get_netns_cookie, tc does not.
        for minor in [18, 19] {
            let p = profile(minor);
            let o = judge_agent_helpers(p, &probes(p, &[("sched_cls", "get_netns_cookie", no())]));
            assert_eq!(o.status, Status::Pass, "1.{minor}: {}", o.detail);
        }
        // Missing in either cgroup hook refuses the start, as in the agent.
        for prog in ["cgroup_sock", "cgroup_sock_addr"] {
            let p = profile(19);
            let o = judge_agent_helpers(p, &probes(p, &[(prog, "get_netns_cookie", no())]));
            assert_eq!(o.status, Status::Fail);
            assert!(
                o.detail.contains(&format!("get_netns_cookie in {prog}")),
                "{}",
                o.detail
            );
        }
    }

    #[test]
    fn each_helper_must_be_available_in_every_type_the_agent_probes() {
        let p = profile(18);
        // jiffies64 is probed in four types; xdp alone lacking it fails.
        let o = judge_agent_helpers(p, &probes(p, &[("xdp", "jiffies64", no())]));
        assert_eq!(o.status, Status::Fail);
        assert!(o.detail.contains("jiffies64 in xdp"), "{}", o.detail);
        // get_socket_cookie is probed in cgroup_sock_addr only: sched_cls lacking it is fine,
        // cgroup_sock_addr lacking it is not, even when sched_cls has it.
        let o = judge_agent_helpers(p, &probes(p, &[("sched_cls", "get_socket_cookie", no())]));
        assert_eq!(o.status, Status::Pass, "{}", o.detail);
        let o = judge_agent_helpers(
            p,
            &probes(p, &[("cgroup_sock_addr", "get_socket_cookie", no())]),
        );
        assert_eq!(o.status, Status::Fail, "{}", o.detail);
        // redirect_neigh is a tc helper.
        let o = judge_agent_helpers(p, &probes(p, &[("sched_cls", "redirect_neigh", no())]));
        assert_eq!(o.status, Status::Fail);
    }

    #[test]
    fn a_helper_not_probed_where_the_agent_probes_it_is_unknown_not_borrowed_from_another_type() {
        let p = profile(18);
        let mut report = probes(p, &[]);
        report.helpers.remove("cgroup_sock");
        let o = judge_agent_helpers(p, &report);
        assert_eq!(o.status, Status::Unknown, "{}", o.detail);
        assert!(
            o.detail.contains("get_netns_cookie in cgroup_sock"),
            "{}",
            o.detail
        );
        let o = judge_agent_helpers(
            p,
            &probes(
                p,
                &[(
                    "cgroup_sock_addr",
                    "get_current_cgroup_id",
                    Support::Unknown {
                        reason: "EPERM".into(),
                    },
                )],
            ),
        );
        assert_eq!(o.status, Status::Unknown);
    }

    #[test]
    fn every_agent_helper_is_in_the_cilium_probe_scope() {
        // Otherwise the default `run` would never probe it and the check would stay unknown.
        for p in RELEASES {
            for h in p.agent.helpers {
                for prog in h.program_types {
                    let probed = crate::probe::catalog::CILIUM_HELPERS
                        .iter()
                        .any(|(t, hs)| t == prog && hs.contains(&h.helper));
                    assert!(probed, "{} in {prog} (Cilium {})", h.helper, p.label());
                }
            }
        }
    }
}

//! What the target's Cilium version needs from the kernel, from its profile (target::profiles):
//! the documented minimum kernel per feature, and the helpers the 1.18+ agent refuses to start
//! without. (The version's own minimum is `kernel.release` in checks::kernel.)
use super::{Area, Check, Outcome};
use crate::{
    facts::Facts,
    probe::Support,
    target::{
        Capability::{self, *},
        Target,
        profiles::{self, kernel_version_str, parse_kernel_release},
    },
};

/// Features whose documented minimum kernel we check (FACTS §3).
const FEATURE_MINIMUMS: &[Capability] = &[BandwidthManager, WireGuard, BpfHostRouting, Netkit];

fn kernel_at_least(facts: &Facts, min: profiles::KernelVersion, what: &str) -> Outcome {
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
            let p = target.profile();
            if p.agent_helpers.is_empty() {
                return Outcome::skip(format!("Cilium {} checks no helper list at start-up", p.version()));
            }
            let probes = match facts.probes.get() {
                Ok(p) => p,
                Err(why) => return Outcome::skip(why.to_string()),
            };
            let (mut missing, mut unknown) = (Vec::new(), Vec::new());
            for h in p.agent_helpers {
                // sched_cls is where the datapath calls them; a helper we only probe for another
                // program type (e.g. get_current_cgroup_id for cgroup_sock_addr) is judged there.
                let support = probes.helper("sched_cls", h).or_else(|| {
                    probes.helpers.values().find_map(|by_helper| by_helper.get(*h))
                });
                match support {
                    Some(Support::Available) => {}
                    Some(Support::Unavailable { .. }) => missing.push(*h),
                    _ => unknown.push(*h),
                }
            }
            if !missing.is_empty() {
                Outcome::fail(format!("Cilium {} agent requires {}", p.version(), missing.join(", ")))
            } else if !unknown.is_empty() {
                Outcome::unknown(format!("could not tell: {}", unknown.join(", ")))
            } else {
                Outcome::pass(format!("all {} helpers available", p.agent_helpers.len()))
            }
            .evidence("bpf(BPF_PROG_LOAD) helper probes")
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
                match target.profile().needs(cap).and_then(|n| n.min_kernel) {
                    Some(min) => kernel_at_least(facts, min, cap.as_str()),
                    None => Outcome::skip("no documented minimum"),
                }
            }),
        );
    }
    checks
}

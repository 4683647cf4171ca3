//! From check results to go / no-go, per capability and overall. Pure: tested on plain data.
use serde::{Deserialize, Serialize};

use crate::{
    report::{CheckResult, Status},
    target::{Capability, Target},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapabilityVerdict {
    pub capability: Capability,
    pub go: bool,
    /// Failed checks that block this capability.
    pub blocking: Vec<String>,
    /// Checks that could not tell; the capability is go, but unverified on these points.
    pub unverified: Vec<String>,
    /// Nothing failed, but nothing passed either: every check that bears on it could not tell
    /// (typically: not root). Such a capability is neither go nor no-go.
    pub undecided: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Every capability the target needs is go, and none is undecided.
    pub go: bool,
    /// False when some needed capability could not be judged at all (exit code 2).
    pub decided: bool,
    pub capabilities: Vec<CapabilityVerdict>,
    /// One line, for humans.
    pub summary: String,
}

pub fn decide(target: &Target, checks: &[CheckResult]) -> Verdict {
    let capabilities: Vec<_> = target
        .capabilities
        .iter()
        .map(|&capability| {
            let concerned = checks
                .iter()
                .filter(|c| c.needed_by.contains(&capability) && !c.ignored);
            let (mut blocking, mut unverified, mut passed) = (Vec::new(), Vec::new(), 0);
            for check in concerned {
                match check.status {
                    Status::Fail => blocking.push(check.id.clone()),
                    Status::Unknown => unverified.push(check.id.clone()),
                    Status::Pass | Status::Warn => passed += 1,
                    Status::Skip => {}
                }
            }
            let undecided = blocking.is_empty() && passed == 0 && !unverified.is_empty();
            CapabilityVerdict {
                capability,
                go: blocking.is_empty() && !undecided,
                blocking,
                unverified,
                undecided,
            }
        })
        .collect();
    let go = capabilities.iter().all(|c| c.go);
    let no_go = capabilities.iter().any(|c| !c.blocking.is_empty());
    let decided = no_go || capabilities.iter().all(|c| !c.undecided);
    let blocked: Vec<_> = capabilities
        .iter()
        .filter(|c| !c.go)
        .map(|c| c.capability.as_str())
        .collect();
    let unverified: usize = {
        let mut ids: Vec<_> = capabilities.iter().flat_map(|c| &c.unverified).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let version = &target.cilium_version;
    let summary = if !decided {
        let open: Vec<_> = capabilities
            .iter()
            .filter(|c| c.undecided)
            .map(|c| c.capability.as_str())
            .collect();
        format!(
            "UNDECIDED: could not verify {} for Cilium {version}: every check on it could not \
             tell (run as root with CAP_BPF and CAP_SYS_ADMIN)",
            open.join(", ")
        )
    } else if go {
        let caveat = if unverified > 0 {
            format!(" ({unverified} checks could not tell; see UNKN lines)")
        } else {
            String::new()
        };
        format!("GO: Cilium {version} with these settings should come up on this node{caveat}")
    } else {
        let failing: usize = {
            let mut ids: Vec<_> = capabilities.iter().flat_map(|c| &c.blocking).collect();
            ids.sort();
            ids.dedup();
            ids.len()
        };
        format!(
            "NO-GO: Cilium {version} would not come up: {failing} failed checks block {}",
            blocked.join(", ")
        )
    };
    Verdict {
        go,
        decided,
        capabilities,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Area;

    fn result(id: &str, status: Status, needed_by: &[Capability], ignored: bool) -> CheckResult {
        CheckResult {
            id: id.into(),
            area: Area::Bpf,
            title: id.into(),
            status,
            detail: String::new(),
            remedy: None,
            evidence: vec![],
            needed_by: needed_by.to_vec(),
            relevant: true,
            ignored,
        }
    }

    #[test]
    fn a_failure_blocks_only_the_capabilities_that_need_it() {
        let mut target = Target {
            capabilities: [Capability::BaseDatapath, Capability::TunnelVxlan].into(),
            ..Target::default()
        };
        let checks = [
            result(
                "kernel.geneve",
                Status::Fail,
                &[Capability::TunnelGeneve],
                false,
            ),
            result("bpf.x", Status::Pass, &[Capability::BaseDatapath], false),
        ];
        let v = decide(&target, &checks);
        assert!(v.go, "{v:?}");
        target.capabilities.insert(Capability::TunnelGeneve);
        let v = decide(&target, &checks);
        assert!(!v.go);
        let geneve = v
            .capabilities
            .iter()
            .find(|c| c.capability == Capability::TunnelGeneve)
            .unwrap();
        assert_eq!(geneve.blocking, ["kernel.geneve"]);
        assert!(v.summary.starts_with("NO-GO"), "{}", v.summary);
    }

    #[test]
    fn unknown_is_never_a_failure_and_ignored_failures_do_not_block() {
        let target = Target::default();
        let checks = [
            result("bpf.a", Status::Unknown, &[Capability::BaseDatapath], false),
            result("bpf.b", Status::Fail, &[Capability::BaseDatapath], true),
            result("bpf.c", Status::Pass, &[Capability::BaseDatapath], false),
        ];
        let v = decide(&target, &checks);
        assert!(v.go);
        let base = &v.capabilities[0];
        assert_eq!(base.unverified, ["bpf.a"]);
        assert!(base.blocking.is_empty());
        assert!(
            v.summary.contains("1 checks could not tell"),
            "{}",
            v.summary
        );
    }
}

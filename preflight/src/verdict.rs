//! From check results to go / no-go, per capability and overall. Pure: tested on plain data.
use serde_json::{Value, json};

use crate::model::{CapabilityVerdict, Recommendation, Verdict};
use crate::{
    cilium::{Target, node, values},
    model::{Area, Capability, CheckResult, PlanFix, Readiness, Status},
};

/// Whether anything blocks `capability`, looking at every check (needed by the target or not).
fn blocked(checks: &[CheckResult], capability: Capability) -> bool {
    checks
        .iter()
        .any(|c| c.needed_by.contains(&capability) && c.status == Status::Fail && !c.ignored)
}

/// Fixes for failing value checks (their patches), then cheaper settings for blocked capabilities.
pub fn recommend(target: &Target, checks: &[CheckResult]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    // The values rules' fixes, in report order, as their outcomes proposed them; the node
    // cross-checks' come in `refine`.
    let node_fix = |id: &str| node::PATCHING.iter().any(|(p, _)| *p == id);
    out.extend(
        checks
            .iter()
            .filter(|c| !node_fix(&c.id))
            .filter_map(value_fix),
    );
    // Cheaper settings (the release table's per-capability fallbacks): when a capability is
    // blocked and its alternative is not (or there is none), recommend the switch.
    for facts in target.release().capabilities {
        let (cap, Some(fallback)) = (facts.capability, facts.fallback) else {
            continue;
        };
        if !target.needs(cap) || !blocked(checks, cap) {
            continue;
        }
        if let Some(alt) = fallback.instead
            && blocked(checks, alt)
        {
            continue;
        }
        let mut blockers: Vec<_> = checks
            .iter()
            .filter(|c| c.needed_by.contains(&cap) && c.status == Status::Fail && !c.ignored)
            .map(|c| c.id.as_str())
            .collect();
        blockers.dedup();
        out.push(Recommendation {
            fixes: cap.to_string(),
            why: format!("{} (blocked by {})", fallback.why, blockers.join(", ")),
            patch: serde_json::from_str(fallback.patch).unwrap_or_else(|_| json!({})),
        });
    }
    out
}

/// Checks every other answer about a capability rests on: when bpf() itself could not be used
/// (not root), file-based passes cannot make the datapath go.
const FOUNDATION: &[&str] = &["bpf.syscall"];

/// Areas whose checks are evidence about the kernel. A capability that has such checks but where
/// none of them passed is undecided, whatever file-based checks (CNI dirs, node state) say: an
/// empty --root must not make the datapath go.
const KERNEL_AREAS: &[Area] = &[Area::Bpf, Area::Attach, Area::Kernel, Area::Compile];

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn status_of(checks: &[CheckResult], id: &str) -> Option<Status> {
    checks.iter().find(|c| c.id == id).map(|c| c.status)
}

/// Whether the live probes were skipped (a --root that is not this kernel's): what passed was
/// read from files only.
fn live_probes_skipped(checks: &[CheckResult]) -> bool {
    status_of(checks, "bpf.syscall") == Some(Status::Skip)
}

/// A kernel config was found but refused (corrupt, truncated): not the same as none at all.
fn config_unusable(checks: &[CheckResult]) -> bool {
    checks
        .iter()
        .any(|c| c.id == "kernel.config" && c.detail.starts_with("no usable kernel config"))
}

/// Why a capability could not be judged, from what the checks said.
fn undecided_cause(checks: &[CheckResult]) -> String {
    let decisive: Vec<&str> = checks
        .iter()
        .filter(|c| c.decisive && c.relevant && !c.ignored)
        .map(|c| c.id.as_str())
        .collect();
    if !decisive.is_empty() {
        return format!(
            "a hard requirement could not be checked ({}; see the UNKN lines)",
            decisive.join(", ")
        );
    }
    let config_unknown = status_of(checks, "kernel.config.bpf") == Some(Status::Unknown);
    match status_of(checks, "bpf.syscall") {
        Some(Status::Unknown) => {
            "bpf() could not be used (run as root with CAP_BPF and CAP_SYS_ADMIN)".into()
        }
        Some(Status::Skip) if config_unusable(checks) => "the kernel config under --root is \
            unusable (see kernel.config for the file and line) and live probes do not run with \
            --root"
            .into(),
        Some(Status::Skip) if config_unknown => "no kernel config under --root and live probes \
            do not run with --root (add the node's /boot/config-* or /proc/config.gz, or \
            --host-kernel when --root is this kernel's node)"
            .into(),
        Some(Status::Skip) => "live probes \
            do not run with --root and no file-based check could tell"
            .into(),
        _ => "every check on it could not tell or was skipped (see the UNKN and SKIP lines)".into(),
    }
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
            let (mut kernel_checks, mut kernel_passed, mut decisive) = (0, 0, false);
            let mut judged = 0;
            for check in concerned {
                judged += 1;
                let kernel = KERNEL_AREAS.contains(&check.area);
                kernel_checks += usize::from(kernel);
                match check.status {
                    Status::Fail => blocking.push(check.id.clone()),
                    Status::Unknown => {
                        decisive |= check.decisive;
                        unverified.push(check.id.clone());
                    }
                    Status::Pass | Status::Warn => {
                        passed += 1;
                        kernel_passed += usize::from(kernel);
                    }
                    Status::Skip => {}
                }
            }
            // Undecided: nothing failed and either nothing passed of the checks that bear on it
            // (everything could not tell, or every one was skipped), or something could not
            // tell and bpf() itself could not, or no kernel evidence passed where the capability
            // has kernel checks (the passes that exist then say nothing about the datapath), or
            // it was a hard requirement (decisive).
            let foundation_unknown = unverified
                .iter()
                .any(|id| FOUNDATION.contains(&id.as_str()));
            let no_kernel_evidence = kernel_checks > 0 && kernel_passed == 0;
            let undecided = blocking.is_empty()
                && ((judged > 0 && passed == 0)
                    || (!unverified.is_empty()
                        && (foundation_unknown || no_kernel_evidence || decisive)));
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
    let names = |f: &dyn Fn(&CapabilityVerdict) -> bool| {
        capabilities
            .iter()
            .filter(|c| f(c))
            .map(|c| c.capability.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let distinct = |ids: Vec<&String>| {
        let mut ids = ids;
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let unverified = distinct(capabilities.iter().flat_map(|c| &c.unverified).collect());
    let ignored_failures = checks
        .iter()
        .filter(|c| c.ignored && c.relevant && c.status == Status::Fail)
        .count();
    let version = &target.cilium_version;
    let summary = if !decided {
        format!(
            "UNDECIDED: could not verify {} for Cilium {version}: {}",
            names(&|c| c.undecided),
            undecided_cause(checks)
        )
    } else if go {
        let mut caveats = Vec::new();
        if unverified > 0 {
            caveats.push(format!(
                "{} could not tell; see UNKN lines",
                plural(unverified, "check", "checks")
            ));
        }
        if ignored_failures > 0 {
            caveats.push(format!(
                "{} ignored",
                plural(ignored_failures, "failure", "failures")
            ));
        }
        let caveat = if caveats.is_empty() {
            String::new()
        } else {
            format!(" ({})", caveats.join("; "))
        };
        let files_only = if live_probes_skipped(checks) {
            "; from files only: live bpf()/canary/compile checks were skipped (--root is not \
             this kernel's root)"
        } else {
            ""
        };
        format!(
            "GO: Cilium {version} with these settings should come up on this node{caveat}{files_only}"
        )
    } else {
        let failing = distinct(capabilities.iter().flat_map(|c| &c.blocking).collect());
        let undecided = names(&|c| c.undecided);
        let undecided = if undecided.is_empty() {
            String::new()
        } else {
            format!("; undecided: {undecided}")
        };
        format!(
            "NO-GO: Cilium {version} would not come up: {} {}{undecided}",
            if failing == 1 {
                "1 failed check blocks".to_string()
            } else {
                format!("{failing} failed checks block")
            },
            names(&|c| !c.blocking.is_empty()),
        )
    };
    let recommendations = if go {
        Vec::new()
    } else {
        recommend(target, checks)
    };
    let values_patch = merged_patch(&recommendations);
    let summary = match &values_patch {
        Some(_) if !go => format!("{summary}; fix: {}", patch_as_sets(values_patch.as_ref())),
        _ => summary,
    };
    Verdict {
        go,
        decided,
        capabilities,
        summary,
        recommendations,
        values_patch,
        patch_is_go: None,
        readiness: Some(if go {
            Readiness::Go
        } else if decided {
            Readiness::NoGo
        } else {
            Readiness::Undecided
        }),
        plan_steps: Vec::new(),
        blocking_after_values: None,
    }
}

/// GO after plan: a NO-GO whose every blocking finding is fixed by a step of `steps` (the
/// steps `preflight plan` would carry out on this node, with the check ids each fixes). A
/// finding the verdict fixes with a value counts as fixed by the plan's values step (`plan`
/// writes the verdict's value fixes into the values file), and what still blocks once those
/// values are applied must be fixed by a step too. Cheaper settings for a capability are not
/// applied by the plan (they change what the user asked for): such a node stays NO-GO. When the
/// plan fixes every failure but a capability could not be judged (e.g. XDP from files only),
/// nothing is left that a person must change, and nothing says the node will work either: the
/// verdict is UNDECIDED, with the plan's steps listed.
pub fn after_plan(verdict: &mut Verdict, checks: &[CheckResult], steps: &[PlanFix]) {
    if verdict.readiness() != Readiness::NoGo
        || verdict
            .recommendations
            .iter()
            .any(|r| !r.fixes.contains('.'))
    {
        return;
    }
    let values_step = steps.iter().find(|s| s.step == VALUES_STEP);
    // A failure that only follows from another check is fixed by the step that fixes that one.
    let mut wanted: Vec<(&str, &str, bool)> = checks
        .iter()
        .filter(|c| c.blocks())
        .map(|c| {
            let by = c.follows.as_deref().unwrap_or(&c.id);
            (c.id.as_str(), by, c.fix.is_some())
        })
        .collect();
    for id in verdict.blocking_after_values.iter().flatten() {
        wanted.push((id.as_str(), id.as_str(), false));
    }
    let mut fixes: Vec<PlanFix> = Vec::new();
    for (id, by, by_value) in wanted {
        let step = steps
            .iter()
            .find(|s| s.fixes.iter().any(|f| f == by))
            .or(values_step.filter(|_| by_value));
        let Some(step) = step else {
            return;
        };
        match fixes.iter_mut().find(|f| f.step == step.step) {
            Some(f) if !f.fixes.iter().any(|x| x == id) => f.fixes.push(id.to_string()),
            Some(_) => {}
            None => fixes.push(PlanFix {
                fixes: vec![id.to_string()],
                ..step.clone()
            }),
        }
    }
    if fixes.is_empty() {
        return;
    }
    // In plan order, as `preflight plan` prints them.
    fixes.sort_by_key(|f| steps.iter().position(|s| s.step == f.step));
    let version = &verdict_version(&verdict.summary);
    let now = verdict
        .summary
        .strip_prefix("NO-GO: ")
        .and_then(|s| s.strip_prefix(&format!("Cilium {version} would not come up: ")))
        .unwrap_or(&verdict.summary)
        .to_string();
    let named = fixes
        .iter()
        .map(|f| format!("{} (fixes {})", f.step, f.fixes.join(", ")))
        .collect::<Vec<_>>()
        .join(", ");
    let undecided: Vec<&str> = verdict
        .capabilities
        .iter()
        .filter(|c| c.undecided)
        .map(|c| c.capability.as_str())
        .collect();
    if undecided.is_empty() {
        verdict.summary = format!(
            "GO after plan: Cilium {version} comes up once the steps of `preflight plan` run: \
             {named}; as the node stands: {now}"
        );
        verdict.readiness = Some(Readiness::GoAfterPlan);
    } else {
        verdict.summary = format!(
            "UNDECIDED: could not verify {} for Cilium {version}: {}; every failure is fixed \
             by the steps of `preflight plan`: {named}",
            undecided.join(", "),
            undecided_cause(checks)
        );
        verdict.decided = false;
        verdict.readiness = Some(Readiness::Undecided);
    }
    verdict.plan_steps = fixes;
}

/// The Cilium version a NO-GO summary names (`NO-GO: Cilium 1.20.2 would not come up: …`).
fn verdict_version(summary: &str) -> String {
    summary
        .strip_prefix("NO-GO: Cilium ")
        .and_then(|s| s.split_once(' '))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// The plan step that writes the Helm values file (with the verdict's value fixes).
pub const VALUES_STEP: &str = "helm.values";

/// What only the node can tell: fixes from the node cross-checks (e.g. `cni.binPath` on Rancher
/// Desktop), then whether the target with the whole patch is go on the same facts (checks are
/// pure, so this re-judges without probing again).
pub fn refine(
    verdict: &mut Verdict,
    facts: &crate::facts::Facts,
    target: &Target,
    checks: &[CheckResult],
    ignore: &[String],
) {
    if verdict.go {
        return;
    }
    // Node cross-checks whose fix is a value (the others are fixed on the node itself).
    for (id, _) in node::PATCHING {
        let fix = checks.iter().find(|c| c.id == *id).and_then(value_fix);
        verdict.recommendations.extend(fix);
    }
    verdict.values_patch = merged_patch(&verdict.recommendations);
    let Some(patch) = &verdict.values_patch else {
        return;
    };
    // The summary names the fix; node fixes join the value fixes decide() put there.
    let head = verdict
        .summary
        .split_once("; fix: ")
        .map_or(verdict.summary.as_str(), |(h, _)| h)
        .to_string();
    // A patch is judged again: a fix may need another (native routing needs its CIDR). Failures
    // the patch itself brings in are fixed by their own patches, a few rounds at most; what is
    // left is named below, never hidden.
    let before: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail && !c.ignored)
        .map(|c| c.id.as_str())
        .collect();
    let mut patch = patch.clone();
    let (mut patched, mut checks, mut after);
    let mut round = 0;
    loop {
        patched = target.with_patch(&patch);
        checks = crate::checks::run_all(facts, &patched, ignore);
        after = decide(&patched, &checks);
        round += 1;
        let new_failures: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Fail && !c.ignored && !before.contains(&c.id.as_str()))
            .map(|c| c.id.as_str())
            .collect();
        if new_failures.is_empty() || round > 3 {
            break;
        }
        // The new failures' own fixes, read from the patched run's results.
        let more: Vec<Recommendation> = checks
            .iter()
            .filter(|c| new_failures.contains(&c.id.as_str()))
            .filter_map(value_fix)
            .collect();
        if more.is_empty() {
            break;
        }
        for r in more {
            values::merge(&mut patch, r.patch.clone());
            verdict.recommendations.push(Recommendation {
                why: format!("{} (needed once the values above are applied)", r.why),
                ..r
            });
        }
    }
    verdict.values_patch = Some(patch.clone());
    verdict.summary = format!("{head}; fix: {}", patch_as_sets(Some(&patch)));
    verdict.patch_is_go = Some(after.go);
    // The values are not the whole fix: name what still blocks, so the one-line summary never
    // reads as if the `--set` flags alone were enough.
    let mut still: Vec<&str> = after
        .capabilities
        .iter()
        .flat_map(|c| c.blocking.iter().map(String::as_str))
        .collect();
    still.sort_unstable();
    still.dedup();
    verdict.blocking_after_values = Some(still.iter().map(|s| s.to_string()).collect());
    // Values checks the patch cannot settle (a value only the user knows, e.g. the API server
    // address) are not node fixes: name them apart.
    let (by_hand, on_node): (Vec<&str>, Vec<&str>) =
        still.into_iter().partition(|id| id.starts_with("values."));
    for (label, ids) in [("also set", by_hand), ("also fix on the node", on_node)] {
        if !ids.is_empty() {
            verdict.summary = format!("{}; {label}: {}", verdict.summary, ids.join(", "));
        }
    }
}

/// A failing check's values fix, as its outcome proposed it.
fn value_fix(check: &CheckResult) -> Option<Recommendation> {
    (check.status == Status::Fail && !check.ignored)
        .then(|| check.fix.clone())
        .flatten()
}

fn merged_patch(recommendations: &[Recommendation]) -> Option<Value> {
    (!recommendations.is_empty()).then(|| {
        let mut patch = json!({});
        for r in recommendations {
            values::merge(&mut patch, r.patch.clone());
        }
        patch
    })
}

/// A values patch as `--set` flags (`--set tunnel=null --set routingMode=native`).
pub fn patch_as_sets(patch: Option<&Value>) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let key = k.replace('.', "\\.");
                    let p = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&p, v, out);
                }
            }
            Value::String(s) => out.push(format!("--set {prefix}={s}")),
            other => out.push(format!("--set {prefix}={other}")),
        }
    }
    let mut out = Vec::new();
    if let Some(p) = patch {
        walk("", p, &mut out);
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
            decisive: false,
            follows: None,
            fix: None,
        }
    }

    #[test]
    fn a_failure_blocks_only_the_capabilities_that_need_it() {
        let mut target = Target {
            capabilities: [Capability::BaseDatapath, Capability::TunnelVxlan].into(),
            ..Default::default()
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
        // A capability every check of which was skipped is not go: nothing judged it.
        let skipped = [
            checks[0].clone(),
            checks[1].clone(),
            result(
                "kernel.vxlan",
                Status::Skip,
                &[Capability::TunnelVxlan],
                false,
            ),
        ];
        let v = decide(&target, &skipped);
        assert!(!v.go && !v.decided, "{v:?}");
        assert!(v.summary.contains("tunnel-vxlan"), "{}", v.summary);
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

    /// A hard requirement that could not be checked (decisive) leaves the capability
    /// undecided, even when other checks on it passed; an ordinary unknown does not.
    #[test]
    fn a_decisive_unknown_is_undecided_and_named() {
        let target = Target {
            capabilities: [Capability::BaseDatapath].into(),
            ..Default::default()
        };
        let mut unknown = result(
            "kernel.config.net-cls-bpf",
            Status::Unknown,
            &[Capability::BaseDatapath],
            false,
        );
        let passed = result(
            "kernel.config.bpf",
            Status::Pass,
            &[Capability::BaseDatapath],
            false,
        );
        let v = decide(&target, &[unknown.clone(), passed.clone()]);
        assert!(v.go, "{}", v.summary);
        unknown.decisive = true;
        let v = decide(&target, &[unknown, passed]);
        assert!(!v.go && !v.decided, "{}", v.summary);
        assert!(
            v.summary
                .contains("a hard requirement could not be checked (kernel.config.net-cls-bpf"),
            "{}",
            v.summary
        );
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
        let base = v
            .capabilities
            .iter()
            .find(|c| c.capability == Capability::BaseDatapath)
            .unwrap();
        assert_eq!(base.unverified, ["bpf.a"]);
        assert!(base.blocking.is_empty());
        assert!(
            v.summary
                .contains("(1 check could not tell; see UNKN lines; 1 failure ignored)"),
            "{}",
            v.summary
        );
    }

    fn arb_status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Pass),
            Just(Status::Fail),
            Just(Status::Warn),
            Just(Status::Unknown),
            Just(Status::Skip),
        ]
    }

    fn arb_capability() -> impl Strategy<Value = Capability> {
        use clap::ValueEnum;
        let all = Capability::value_variants().to_vec();
        proptest::sample::select(all)
    }

    proptest! {
        // Needing more can only make things worse: a no-go target stays no-go when a
        // capability is added, whatever the checks say.
        #[test]
        fn adding_a_capability_never_turns_no_go_into_go(
            checks in proptest::collection::vec(
                (arb_status(), proptest::collection::vec(arb_capability(), 0..3), any::<bool>()),
                0..12,
            ),
            needs in proptest::collection::btree_set(arb_capability(), 1..5),
            extra in arb_capability(),
        ) {
            let results: Vec<_> = checks
                .iter()
                .enumerate()
                .map(|(i, (status, caps, ignored))| result(&format!("bpf.c{i}"), *status, caps, *ignored))
                .collect();
            let mut target = Target { capabilities: needs, ..Default::default() };
            let before = decide(&target, &results);
            target.capabilities.insert(extra);
            let after = decide(&target, &results);
            if !before.go {
                prop_assert!(!after.go, "adding {extra} turned no-go into go");
            }
            if before.decided && !before.go {
                prop_assert!(after.decided);
            }
        }
    }

    #[test]
    fn blocked_geneve_recommends_vxlan_and_host_routing_falls_back_to_legacy() {
        let target = Target {
            capabilities: [
                Capability::BaseDatapath,
                Capability::TunnelGeneve,
                Capability::BpfHostRouting,
            ]
            .into(),
            ..Default::default()
        };
        let checks = [
            result(
                "kernel.config.geneve",
                Status::Fail,
                &[Capability::TunnelGeneve],
                false,
            ),
            result(
                "kernel.config.vxlan",
                Status::Pass,
                &[Capability::TunnelVxlan],
                false,
            ),
            result(
                "bpf.helper.sched_cls.redirect_neigh",
                Status::Fail,
                &[Capability::BpfHostRouting],
                false,
            ),
            result("bpf.x", Status::Pass, &[Capability::BaseDatapath], false),
        ];
        let v = decide(&target, &checks);
        assert!(!v.go);
        assert_eq!(
            v.values_patch,
            Some(json!({"tunnelProtocol": "vxlan", "bpf": {"hostLegacyRouting": true}}))
        );
        assert!(
            v.summary.contains("--set tunnelProtocol=vxlan"),
            "{}",
            v.summary
        );
        // VXLAN broken as well: no tunnel recommendation, since it would not help.
        let mut checks = checks.to_vec();
        checks[1].status = Status::Fail;
        let v = decide(&target, &checks);
        assert!(
            v.recommendations.iter().all(|r| r.fixes != "tunnel-geneve"),
            "{:?}",
            v.recommendations
        );
    }

    #[test]
    fn a_failing_checks_values_fix_is_recommended_from_the_result_unless_ignored() {
        let target = Target::default();
        let mut removed = result(
            "values.removed.tunnel",
            Status::Fail,
            &[Capability::ChartValues],
            false,
        );
        removed.fix = Some(Recommendation {
            fixes: removed.id.clone(),
            why: "use routingMode".into(),
            patch: json!({"tunnel": null, "routingMode": "native"}),
        });
        let checks = [
            removed.clone(),
            result("bpf.x", Status::Pass, &[Capability::BaseDatapath], false),
        ];
        let v = decide(&target, &checks);
        assert_eq!(v.recommendations, [removed.fix.clone().unwrap()]);
        assert!(
            v.summary
                .ends_with("fix: --set routingMode=native --set tunnel=null"),
            "{}",
            v.summary
        );
        // Ignored, or not failing: the fix stays unsaid.
        for (status, ignored) in [(Status::Fail, true), (Status::Warn, false)] {
            let mut c = removed.clone();
            (c.status, c.ignored) = (status, ignored);
            let v = decide(&target, &[c, checks[1].clone()]);
            assert!(v.recommendations.is_empty(), "{:?}", v.recommendations);
        }
    }

    #[test]
    fn bpf_itself_unknown_leaves_the_capability_undecided_despite_file_passes() {
        let target = Target::default();
        let checks = [
            result(
                "bpf.syscall",
                Status::Unknown,
                &[Capability::BaseDatapath],
                false,
            ),
            result(
                "kernel.config.bpf",
                Status::Pass,
                &[Capability::BaseDatapath],
                false,
            ),
        ];
        let v = decide(&target, &checks);
        assert!(!v.go && !v.decided, "{}", v.summary);
        // A real failure still decides: no-go.
        let mut checks = checks.to_vec();
        checks.push(result(
            "kernel.release",
            Status::Fail,
            &[Capability::BaseDatapath],
            false,
        ));
        let v = decide(&target, &checks);
        assert!(!v.go && v.decided);
    }

    fn step(id: &str, fixes: &[&str]) -> PlanFix {
        PlanFix {
            step: id.into(),
            title: format!("do {id}"),
            fixes: fixes.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// GO after plan only when every blocking check has a plan step (or a value fix and the
    /// plan writes values); one gap no step fixes keeps it NO-GO.
    #[test]
    fn go_after_plan_needs_a_step_for_every_blocking_check() {
        let target = Target::default();
        let mut valued = result("values.x", Status::Fail, &[Capability::BaseDatapath], false);
        valued.fix = Some(Recommendation {
            fixes: "values.x".into(),
            why: "set x".into(),
            patch: json!({"x": 1}),
        });
        let checks = [
            result(
                "k3s.flannel-backend",
                Status::Fail,
                &[Capability::BaseDatapath],
                false,
            ),
            valued,
            result("bpf.x", Status::Pass, &[Capability::BaseDatapath], false),
        ];
        let steps = [
            step("bpffs.mount", &["mounts.bpffs"]),
            step("k3s.drop-in", &["k3s.flannel-backend"]),
            step(VALUES_STEP, &[]),
        ];
        let mut v = decide(&target, &checks);
        assert_eq!(v.readiness(), Readiness::NoGo);
        after_plan(&mut v, &checks, &steps);
        assert_eq!(v.readiness(), Readiness::GoAfterPlan, "{}", v.summary);
        let named: Vec<_> = v.plan_steps.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(named, ["k3s.drop-in", VALUES_STEP]);
        assert!(v.summary.starts_with("GO after plan: "), "{}", v.summary);
        // Without the values step, the value fix is the user's to make: NO-GO.
        let mut v = decide(&target, &checks);
        after_plan(&mut v, &checks, &steps[..2]);
        assert_eq!(v.readiness(), Readiness::NoGo);
        assert!(v.plan_steps.is_empty());
        // A blocker left once the values are applied needs its own step.
        let mut v = decide(&target, &checks);
        v.blocking_after_values = Some(vec!["kernel.config.bpf".into()]);
        after_plan(&mut v, &checks, &steps);
        assert_eq!(v.readiness(), Readiness::NoGo);
        // Every failure fixed by a step, but a capability could not be judged: undecided,
        // with the steps named, never NO-GO (nothing is left for a person to change).
        let mut unknown = checks.to_vec();
        unknown.push(result(
            "hubble.x",
            Status::Unknown,
            &[Capability::Hubble],
            false,
        ));
        let mut v = decide(&target, &unknown);
        assert_eq!(v.readiness(), Readiness::NoGo, "{}", v.summary);
        after_plan(&mut v, &unknown, &steps);
        assert_eq!(v.readiness(), Readiness::Undecided, "{}", v.summary);
        assert!(!v.decided);
        assert!(v.summary.starts_with("UNDECIDED: could not verify hubble"));
        assert!(
            v.summary
                .contains("k3s.drop-in (fixes k3s.flannel-backend)")
        );
        assert_eq!(v.plan_steps.len(), 2);
        // A go verdict stays go.
        let mut v = decide(&target, &checks[2..]);
        after_plan(&mut v, &checks[2..], &steps);
        assert_eq!(v.readiness(), Readiness::Go);
    }

    /// A program that fails only because datapath init never writes its header is fixed by
    /// the step that fixes compile.init; one that fails on its own is not.
    #[test]
    fn a_failure_that_follows_another_is_fixed_by_that_ones_step() {
        let target = Target::default();
        let base = &[Capability::BaseDatapath];
        let mut lxc = result("compile.bpf_lxc", Status::Fail, base, false);
        lxc.follows = Some("compile.init".into());
        let checks = [result("compile.init", Status::Fail, base, false), lxc];
        let steps = [step("k3s.drop-in", &["compile.init"])];
        let mut v = decide(&target, &checks);
        after_plan(&mut v, &checks, &steps);
        assert_eq!(v.readiness(), Readiness::GoAfterPlan, "{}", v.summary);
        assert_eq!(
            v.plan_steps[0].fixes,
            ["compile.init", "compile.bpf_lxc"],
            "the step lists both"
        );
        let mut alone = checks.clone();
        alone[1].follows = None;
        let mut v = decide(&target, &alone);
        after_plan(&mut v, &alone, &steps);
        assert_eq!(v.readiness(), Readiness::NoGo);
    }
}

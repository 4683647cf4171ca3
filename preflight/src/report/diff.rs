//! What changed between two runs (e.g. before and after a kernel upgrade). The gate fails when
//! the verdict got worse (go before, no-go or undecided after), or when a check the new run's
//! target needs passed before and now fails, cannot tell, was skipped or is gone.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::Report;
use crate::model::{CheckResult, Status};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub id: String,
    /// None: the check did not exist in that run.
    pub before: Option<Status>,
    pub after: Option<Status>,
    /// The new run's target needs this check (judged by the new target's capabilities, also for
    /// a check the new run no longer has).
    pub needed: bool,
    /// Passed before, and now fails, cannot tell, was skipped or is absent, and is needed: the
    /// gate stops on it.
    pub regression: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_verdict: String,
    pub new_verdict: String,
    pub kernel_before: String,
    pub kernel_after: String,
    /// Go before, no-go or undecided after.
    pub verdict_regression: bool,
    /// The two reports judge different targets (Cilium version, capabilities): the changes are
    /// judged by the new target's needs, but some may come from the target, not the node.
    pub warnings: Vec<String>,
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.regression)
    }

    /// Whether the kernel-upgrade gate stops (exit 1).
    pub fn gate_fails(&self) -> bool {
        self.verdict_regression || self.regressions().next().is_some()
    }
}

/// Whether the new target needs `check`: the new run says so itself; for a check it no longer
/// has, its old `needed_by` is compared with the new target's capabilities.
fn needed_after(new: &Report, after: Option<&CheckResult>, before: Option<&CheckResult>) -> bool {
    match (after, before) {
        (Some(a), _) => a.relevant && !a.ignored,
        (None, Some(b)) => b
            .needed_by
            .iter()
            .any(|c| new.target.capabilities.contains(c)),
        (None, None) => false,
    }
}

fn target_warnings(old: &Report, new: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let (ov, nv) = (&old.target.cilium_version, &new.target.cilium_version);
    if ov != nv {
        out.push(format!(
            "targets differ: Cilium {ov} before, {nv} after; changes may come from the version, \
             not the node"
        ));
    }
    let (oc, nc) = (&old.target.capabilities, &new.target.capabilities);
    if oc != nc {
        let list = |v: Vec<_>| {
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.iter()
                    .map(|c: &&crate::model::Capability| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        out.push(format!(
            "targets differ: capabilities added {}, dropped {}; changes are judged by the new \
             target's needs",
            list(nc.difference(oc).collect()),
            list(oc.difference(nc).collect())
        ));
    }
    out
}

pub fn diff(old: &Report, new: &Report) -> Diff {
    let before: BTreeMap<_, _> = old.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let after: BTreeMap<_, _> = new.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut ids: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    ids.sort();
    ids.dedup();
    let mut changes = Vec::new();
    for id in ids {
        let (b, a) = (before.get(id).copied(), after.get(id).copied());
        let (bs, as_) = (b.map(|c| c.status), a.map(|c| c.status));
        if bs == as_ {
            continue;
        }
        let needed = needed_after(new, a, b);
        let regression = needed
            && bs == Some(Status::Pass)
            && matches!(
                as_,
                None | Some(Status::Fail | Status::Unknown | Status::Skip)
            );
        let detail = a.or(b).map(|c| c.detail.clone()).unwrap_or_default();
        changes.push(Change {
            id: id.to_string(),
            before: bs,
            after: as_,
            needed,
            regression,
            detail,
        });
    }
    // Regressions first, then by id.
    changes.sort_by_key(|c| !c.regression);
    Diff {
        old_verdict: old.verdict.summary.clone(),
        new_verdict: new.verdict.summary.clone(),
        kernel_before: old.node.kernel_release.clone(),
        kernel_after: new.node.kernel_release.clone(),
        verdict_regression: old.verdict.go && !new.verdict.go,
        warnings: target_warnings(old, new),
        changes,
    }
}

pub fn render_diff_text(d: &Diff) -> String {
    let label = |s: Option<Status>| s.map(|s| s.as_str()).unwrap_or("absent");
    let mut out = String::new();
    for w in &d.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if d.kernel_before != d.kernel_after {
        let _ = writeln!(out, "kernel: {} → {}", d.kernel_before, d.kernel_after);
    }
    if d.changes.is_empty() {
        let _ = writeln!(out, "no check changed");
    }
    for c in &d.changes {
        let tag = if c.regression {
            "REGRESSION"
        } else if c.needed {
            "changed"
        } else {
            "changed (not needed)"
        };
        let _ = writeln!(
            out,
            "{tag:<20} {:<44} {} → {}  {}",
            c.id,
            label(c.before),
            label(c.after),
            c.detail
        );
    }
    let _ = writeln!(out, "before: {}\nafter:  {}", d.old_verdict, d.new_verdict);
    let mut reasons = Vec::new();
    if d.verdict_regression {
        reasons.push("the verdict went from GO to NO-GO/UNDECIDED".to_string());
    }
    let n = d.regressions().count();
    if n > 0 {
        reasons.push(format!(
            "{n} check{} the target needs went from pass to fail/unknown/skip/absent",
            if n == 1 { "" } else { "s" }
        ));
    }
    let _ = writeln!(
        out,
        "{}",
        if reasons.is_empty() {
            "GATE PASS: nothing the target needs got worse".to_string()
        } else {
            format!("GATE FAIL: {}", reasons.join("; "))
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real report from an earlier build (fixtures/reports), read the way `diff` reads it.
    fn fixture() -> Report {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/reports/vm-debian12-6.12.json");
        super::super::read_json(&path).expect("fixture report reads")
    }

    fn needed_pass(r: &Report) -> String {
        r.checks
            .iter()
            .find(|c| c.status == Status::Pass && c.relevant && !c.ignored)
            .expect("a needed check passes")
            .id
            .clone()
    }

    #[test]
    fn a_needed_check_that_is_skipped_or_gone_afterwards_is_a_regression() {
        let old = fixture();
        let id = needed_pass(&old);
        let mut skipped = old.clone();
        for c in skipped.checks.iter_mut().filter(|c| c.id == id) {
            c.status = Status::Skip;
        }
        let d = diff(&old, &skipped);
        assert!(d.gate_fails());
        assert_eq!(d.regressions().next().map(|c| c.id.as_str()), Some(&*id));

        let mut gone = old.clone();
        gone.checks.retain(|c| c.id != id);
        let d = diff(&old, &gone);
        let change = d.regressions().next().expect("absent is a regression");
        assert_eq!((change.id.as_str(), change.after), (&*id, None));
        assert!(render_diff_text(&d).contains("pass → absent"));

        // Gone, but the new target does not need it any more: reported, not a regression.
        let mut unneeded = gone.clone();
        let caps = &old.checks.iter().find(|c| c.id == id).unwrap().needed_by;
        unneeded.target.capabilities.retain(|c| !caps.contains(c));
        let d = diff(&old, &unneeded);
        assert!(d.regressions().next().is_none(), "{d:?}");
        assert!(!d.warnings.is_empty(), "capabilities differ: {d:?}");
    }

    #[test]
    fn an_unchanged_report_passes_and_a_lost_go_fails() {
        let old = fixture();
        assert!(!diff(&old, &old).gate_fails());
        // The same report once go, once no-go (whatever the fixture's own verdict is).
        let (mut go, mut no_go) = (old.clone(), old.clone());
        go.verdict.go = true;
        no_go.verdict.go = false;
        let d = diff(&go, &no_go);
        assert!(d.verdict_regression && d.gate_fails());
        assert!(render_diff_text(&d).contains("GATE FAIL: the verdict went from GO"));
    }
}

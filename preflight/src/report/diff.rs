//! What changed between two runs (e.g. before and after a kernel upgrade). The gate: a check the
//! new run's target needs that passed before and now fails or cannot tell.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;

use super::{Report, Status};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub id: String,
    /// None: the check did not exist in that run.
    pub before: Option<Status>,
    pub after: Option<Status>,
    /// The new run's target needs this check.
    pub needed: bool,
    /// Passed before, fails or cannot tell now, and is needed: this is what the gate stops on.
    pub regression: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_verdict: String,
    pub new_verdict: String,
    pub kernel_before: String,
    pub kernel_after: String,
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.regression)
    }
}

pub fn diff(old: &Report, new: &Report) -> Diff {
    let before: BTreeMap<_, _> = old.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let after: BTreeMap<_, _> = new.checks.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut ids: Vec<&str> = before.keys().chain(after.keys()).copied().collect();
    ids.sort();
    ids.dedup();
    let mut changes = Vec::new();
    for id in ids {
        let (b, a) = (before.get(id), after.get(id));
        let (bs, as_) = (b.map(|c| c.status), a.map(|c| c.status));
        if bs == as_ {
            continue;
        }
        let needed = a.is_some_and(|c| c.relevant && !c.ignored);
        let regression = needed
            && bs == Some(Status::Pass)
            && matches!(as_, Some(Status::Fail | Status::Unknown));
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
        changes,
    }
}

pub fn render_diff_text(d: &Diff) -> String {
    let label = |s: Option<Status>| s.map(|s| s.as_str()).unwrap_or("absent");
    let mut out = String::new();
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
    let n = d.regressions().count();
    let _ = writeln!(
        out,
        "{}",
        if n == 0 {
            "GATE PASS: nothing the target needs got worse".to_string()
        } else {
            format!("GATE FAIL: {n} check(s) the target needs went from pass to fail/unknown")
        }
    );
    out
}

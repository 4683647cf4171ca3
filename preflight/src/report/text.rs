//! Plain-text rendering: checks grouped by area, problems first within a group, the verdict last
//! in one line (the line a tired operator reads first).
use std::fmt::Write as _;

use super::Report;
use crate::model::{Readiness, Status};

struct Paint(bool);

impl Paint {
    fn status(&self, status: Status) -> String {
        let (label, code) = match status {
            Status::Pass => ("PASS", "32"),
            Status::Fail => ("FAIL", "1;31"),
            Status::Warn => ("WARN", "33"),
            Status::Unknown => ("UNKN", "35"),
            Status::Skip => ("SKIP", "2"),
        };
        self.code(label, code)
    }
    fn code(&self, s: &str, code: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

pub fn render_text(report: &Report, colour: bool) -> String {
    let paint = Paint(colour);
    let mut out = String::new();
    let node = &report.node;
    let _ = writeln!(
        out,
        "preflight {} — node {} (kernel {}{}), target Cilium {}",
        report.tool_version,
        node.hostname,
        node.kernel_release,
        node.distro
            .as_deref()
            .map(|d| format!(", {d}"))
            .unwrap_or_default(),
        report.target.cilium_version,
    );
    let caps: Vec<_> = report
        .target
        .capabilities
        .iter()
        .map(|c| c.as_str())
        .collect();
    let _ = writeln!(out, "needs: {}", caps.join(", "));

    let mut areas: Vec<_> = report.checks.iter().map(|c| c.area).collect();
    areas.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for area in areas.into_iter().filter(|a| seen.insert(*a)) {
        let _ = writeln!(out, "\n{}", paint.code(area.title(), "1"));
        let mut checks: Vec<_> = report.checks.iter().filter(|c| c.area == area).collect();
        // Problems first: fail, warn, unknown, then pass and skip, keeping registry order within.
        checks.sort_by_key(|c| match c.status {
            Status::Fail => 0,
            Status::Warn => 1,
            Status::Unknown => 2,
            Status::Pass => 3,
            Status::Skip => 4,
        });
        // Many checks that do not apply (values not set, canaries off) drown the problems:
        // past a few, count them instead of listing them (json lists every one).
        let skips = checks.iter().filter(|c| c.status == Status::Skip).count();
        if skips > 3 {
            checks.retain(|c| c.status != Status::Skip);
        }
        for check in checks {
            let mut tags = String::new();
            if check.ignored {
                tags.push_str(" [ignored]");
            }
            // A gap the target does not need is not a failure of this run: not a red FAIL.
            let unneeded = check.status == Status::Fail && !check.relevant;
            if unneeded {
                tags.push_str(" [not needed by target]");
            }
            let _ = writeln!(
                out,
                "  {} {:<44} {}{}",
                if unneeded {
                    paint.code("NOTE", "2")
                } else {
                    paint.status(check.status)
                },
                check.id,
                check.detail,
                tags
            );
            if let Some(remedy) = &check.remedy
                && matches!(check.status, Status::Fail | Status::Warn)
            {
                let _ = writeln!(out, "       {} {remedy}", paint.code("fix:", "36"));
            }
        }
        if skips > 3 {
            let _ = writeln!(
                out,
                "  {} {skips} checks do not apply here (--format json lists them)",
                paint.status(Status::Skip)
            );
        }
    }

    let _ = writeln!(out);
    for cap in &report.verdict.capabilities {
        if cap.undecided {
            let _ = writeln!(
                out,
                "{} {}: could not tell ({} checks unknown)",
                paint.code("undecided", "35"),
                cap.capability,
                cap.unverified.len()
            );
        } else if !cap.go {
            let _ = writeln!(
                out,
                "{} {}: blocked by {}",
                paint.code("no-go", "1;31"),
                cap.capability,
                cap.blocking.join(", ")
            );
        }
    }
    if !report.verdict.plan_steps.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint.code(
                "`preflight plan` fixes what blocks, with these steps (`preflight install` runs them):",
                "1"
            )
        );
        for step in &report.verdict.plan_steps {
            let _ = writeln!(
                out,
                "  {:<20} {} (fixes {})",
                step.step,
                step.title,
                step.fixes.join(", ")
            );
        }
    }
    if let Some(patch) = &report.verdict.values_patch {
        let _ = writeln!(
            out,
            "\n{}",
            paint.code("Recommended values (save and pass with -f):", "1")
        );
        for r in &report.verdict.recommendations {
            let _ = writeln!(out, "  # {}: {}", r.fixes, r.why);
        }
        for l in serde_norway::to_string(patch).unwrap_or_default().lines() {
            let _ = writeln!(out, "  {l}");
        }
        if let Some(go) = report.verdict.patch_is_go {
            let _ = writeln!(
                out,
                "  (with these values on this node: {})",
                if go {
                    "GO"
                } else {
                    "still NO-GO, see the other failures"
                }
            );
        }
        let _ = writeln!(out);
    }
    let line = &report.verdict.summary;
    let colour = match report.verdict.readiness() {
        Readiness::Go => "1;32",
        Readiness::GoAfterPlan => "1;33",
        Readiness::NoGo | Readiness::Undecided => "1;31",
    };
    let _ = writeln!(out, "{}", paint.code(line, colour));
    out
}

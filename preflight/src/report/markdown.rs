//! Markdown for a CI job summary: the verdict first (a summary is read top-down, unlike a
//! terminal), then problems, then a collapsed list of everything that passed.
use std::fmt::Write as _;

use super::Report;
use crate::model::{Readiness, Status};

/// Text as Markdown shows it literally: `<hash>` stays text, not an HTML tag (HTML-escaped by
/// pulldown-cmark's escaper), and a table cell stays on one line with its pipes literal.
fn cell(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    // Writing into a String cannot fail.
    let _ = pulldown_cmark_escape::escape_html(&mut escaped, text);
    escaped.replace('|', "\\|").replace('\n', " ")
}

pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    let v = &report.verdict;
    let icon = match v.readiness() {
        Readiness::Go => "✅",
        Readiness::GoAfterPlan => "🛠️",
        Readiness::NoGo => "❌",
        Readiness::Undecided => "❔",
    };
    let _ = writeln!(
        out,
        "## preflight: Cilium {} on {} (kernel {})\n\n**{icon} {}**\n",
        report.target.cilium_version,
        cell(&report.node.hostname),
        cell(&report.node.kernel_release),
        cell(&v.summary)
    );
    let caps: Vec<_> = report
        .target
        .capabilities
        .iter()
        .map(|c| format!("`{c}`"))
        .collect();
    let _ = writeln!(out, "Needs: {}\n", caps.join(", "));
    let blocked: Vec<_> = v.capabilities.iter().filter(|c| !c.go).collect();
    if !blocked.is_empty() {
        let _ = writeln!(out, "| capability | status | blocked by |\n|---|---|---|");
        for c in blocked {
            let status = if c.undecided { "undecided" } else { "no-go" };
            let by = if c.undecided {
                c.unverified.join(", ")
            } else {
                c.blocking.join(", ")
            };
            let _ = writeln!(out, "| `{}` | {status} | {} |", c.capability, cell(&by));
        }
        out.push('\n');
    }
    let problems: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Warn | Status::Unknown))
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "| check | status | detail | fix |\n|---|---|---|---|");
        for c in problems {
            let mut status = c.status.as_str().to_uppercase();
            if c.ignored {
                status.push_str(" (ignored)");
            } else if c.status == Status::Fail && !c.relevant {
                // A gap the target does not need: not a failure of this run.
                status = "NOTE (not needed)".into();
            }
            let _ = writeln!(
                out,
                "| `{}` | {status} | {} | {} |",
                c.id,
                cell(&c.detail),
                cell(c.remedy.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    if !v.plan_steps.is_empty() {
        let _ = writeln!(
            out,
            "`preflight plan` fixes what blocks (`preflight install` runs it):\n\n| step | what | fixes |\n|---|---|---|"
        );
        for s in &v.plan_steps {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                s.step,
                cell(&s.title),
                cell(&s.fixes.join(", "))
            );
        }
        out.push('\n');
    }
    if let Some(patch) = &v.values_patch {
        let yaml = serde_norway::to_string(patch).unwrap_or_default();
        let _ = writeln!(
            out,
            "Recommended values (pass with `-f`):\n\n```yaml\n{}```\n",
            yaml
        );
        if let Some(go) = v.patch_is_go {
            let _ = writeln!(
                out,
                "With these values the verdict would be **{}**.\n",
                if go { "GO" } else { "still NO-GO" }
            );
        }
    }
    let passed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Pass | Status::Skip))
        .collect();
    let _ = writeln!(
        out,
        "<details><summary>{} passed or not applicable</summary>\n",
        passed.len()
    );
    for c in passed {
        let _ = writeln!(
            out,
            "- {} `{}` {}",
            c.status.as_str(),
            c.id,
            cell(&c.detail)
        );
    }
    out.push_str("\n</details>\n");
    out
}

//! Markdown for a CI job summary: the verdict first (a summary is read top-down, unlike a
//! terminal), then problems, then a collapsed list of everything that passed.
use std::fmt::Write as _;

use super::Report;
use crate::model::Status;

/// Keeps a table cell on one line and its pipes literal.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    let v = &report.verdict;
    let icon = if v.go {
        "✅"
    } else if v.decided {
        "❌"
    } else {
        "❔"
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
                status.push_str(" (not needed)");
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

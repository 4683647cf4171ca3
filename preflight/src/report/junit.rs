//! JUnit XML, the format CI systems show natively (kube-bench's mapping): a failed check is a
//! failure, warn/unknown/skip and ignored or unneeded failures are skipped; every message carries
//! the check's detail and remedy.
use std::fmt::Write as _;

use quick_xml::escape::escape;

use super::Report;
use crate::model::{Area, CheckResult, Status};

/// XML 1.0 cannot carry most control characters even escaped; drop them.
fn xml(text: &str) -> String {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    escape(clean.as_str()).into_owned()
}

fn message(check: &CheckResult) -> String {
    let mut m = format!("{}: {}", check.status.as_str().to_uppercase(), check.detail);
    if let Some(r) = &check.remedy {
        let _ = write!(m, " — fix: {r}");
    }
    if check.ignored {
        m.push_str(" [ignored]");
    } else if check.status == Status::Fail && !check.relevant {
        m.push_str(" [not needed by target]");
    }
    m
}

/// The stage that gathered an area's facts (report `timings.stages_ms`): its time is the area's.
fn stage_of(area: Area) -> &'static str {
    match area {
        Area::Bpf => "gather.probes",
        Area::Attach => "gather.canaries",
        Area::Compile => "gather.compile",
        _ => "gather.node",
    }
}

pub fn render_junit(report: &Report) -> String {
    let mut areas: Vec<_> = report.checks.iter().map(|c| c.area).collect();
    areas.sort();
    areas.dedup();
    let failures = report.checks.iter().filter(|c| c.blocks()).count();
    let skipped = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass && !c.blocks())
        .count();
    // Per-node files are merged by CI: the node's name goes into every suite and class name,
    // and `hostname` is set, so two nodes' results never collide.
    let host = xml(&report.node.hostname);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"preflight {host}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        report.checks.len(),
        report.timings.total_ms / 1e3
    );
    for area in areas {
        let checks: Vec<_> = report.checks.iter().filter(|c| c.area == area).collect();
        let area_name = serde_json::to_value(area)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        // Checks themselves take microseconds; the time is the gathering of their facts, shared
        // evenly by the checks of the areas that stage served.
        let stage = stage_of(area);
        let stage_s = report.timings.stages_ms.get(stage).copied().unwrap_or(0.0) / 1e3;
        let served = report
            .checks
            .iter()
            .filter(|c| stage_of(c.area) == stage)
            .count()
            .max(1);
        let case_s = stage_s / served as f64;
        let _ = writeln!(
            out,
            "  <testsuite name=\"{host}.{}\" hostname=\"{host}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(&area_name),
            checks.len(),
            checks.iter().filter(|c| c.blocks()).count(),
            checks
                .iter()
                .filter(|c| c.status != Status::Pass && !c.blocks())
                .count(),
            case_s * checks.len() as f64
        );
        for c in checks {
            let _ = write!(
                out,
                "    <testcase classname=\"preflight.{host}.{}\" name=\"{}\" time=\"{case_s:.3}\"",
                xml(&area_name),
                xml(&c.id)
            );
            let msg = xml(&message(c));
            if c.blocks() {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{msg}\" type=\"fail\">{}</failure>\n    </testcase>",
                    xml(&format!("{}\n{}", c.title, message(c)))
                );
            } else if c.status != Status::Pass {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{msg}\"/>\n    </testcase>"
                );
            } else {
                let _ = writeln!(out, "/>");
            }
        }
        out.push_str("  </testsuite>\n");
    }
    let _ = writeln!(
        out,
        "  <!-- {} -->\n</testsuites>",
        xml(&report.verdict.summary).replace("--", "- -")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_escaped_and_control_characters_dropped() {
        let out = xml("a <b> & \"c\" 'd'\u{1}\u{7}\n");
        assert_eq!(out, "a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos;\n");
    }
}

//! The report: one serde model, several renderers. The JSON form is a public contract
//! (`schema_version`); add fields freely, but renaming or removing one needs a new version.
pub mod diff;
mod junit;
mod markdown;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use junit::render_junit;
pub use markdown::render_markdown;
pub use text::render_text;

use crate::{
    cilium::Target,
    model::{CheckResult, ClusterFacts, Node, Verdict},
};

/// Bump on any change that could break a consumer of the JSON (renamed/removed field, new status).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timings {
    /// Milliseconds per stage (gather.probes, gather.canaries, checks, ...).
    pub stages_ms: BTreeMap<String, f64>,
    pub total_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    pub tool_version: String,
    pub node: Node,
    pub target: Target,
    pub checks: Vec<CheckResult>,
    pub verdict: Verdict,
    pub timings: Timings,
    /// The node's network and k3s role, for `plan --cluster`. Added to schema_version 1 after
    /// it was published: reports of earlier builds lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_facts: Option<ClusterFacts>,
}

/// How to print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table grouped by area; colour on a terminal unless NO_COLOR is set.
    Text,
    /// The versioned JSON report (schema_version); `preflight schema` prints its JSON Schema.
    Json,
    /// JUnit XML for CI: fail → failure, warn/unknown → skipped, detail and remedy in the message.
    Junit,
    /// Markdown for a CI job summary.
    Markdown,
    /// The same JSON on one line: what pods print, so `kubectl logs` gives a report per line.
    JsonLine,
}

pub fn render(report: &Report, format: Format, colour: bool) -> String {
    match format {
        Format::Text => render_text(report, colour),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).expect("report serialises");
            s.push('\n');
            s
        }
        Format::Junit => render_junit(report),
        Format::Markdown => render_markdown(report),
        Format::JsonLine => {
            let mut s = serde_json::to_string(report).expect("report serialises");
            s.push('\n');
            s
        }
    }
}

/// The JSON Schema of [`Report`] (what `preflight schema` prints).
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Report);
    serde_json::to_value(&schema).expect("schema serialises")
}

/// Reads a JSON report written by `preflight run --format json`; errors name the file and line.
/// The schema_version is read first, so a report of another version is refused for what it is
/// rather than for the first field that differs. Fields added to version 1 after it was published
/// are `#[serde(default)]`, so reports from earlier builds still read.
pub fn read_json(path: &std::path::Path) -> anyhow::Result<Report> {
    #[derive(Deserialize)]
    struct VersionOnly {
        schema_version: Option<u32>,
    }
    // A regular file within the input cap (a FIFO would block, /dev/zero never end).
    let text = crate::host::input::read_text(path, "reports")?;
    let not_a_report = |e: serde_json::Error| {
        anyhow::anyhow!(
            "{}:{}:{}: not a preflight JSON report: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    };
    let version: VersionOnly = serde_json::from_str(&text).map_err(not_a_report)?;
    match version.schema_version {
        Some(SCHEMA_VERSION) => {}
        Some(other) => anyhow::bail!(
            "{}: schema_version {other} not supported (this preflight reads {SCHEMA_VERSION})",
            path.display()
        ),
        None => anyhow::bail!(
            "{}: not a preflight JSON report: no schema_version",
            path.display()
        ),
    }
    serde_json::from_str(&text).map_err(not_a_report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every property name in a JSON Schema, at any depth.
    fn properties(schema: &serde_json::Value, out: &mut BTreeSet<String>) {
        match schema {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                    out.extend(props.keys().cloned());
                }
                map.values().for_each(|v| properties(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| properties(v, out)),
            _ => {}
        }
    }

    /// docs/report.md documents the JSON contract: every field the report can carry is named
    /// there (in backticks, alone or in a path such as `verdict.readiness`), so a field added to
    /// the model without a word in the docs fails here.
    #[test]
    fn docs_name_every_field_of_the_report() {
        let docs = include_str!("../../../docs/report.md");
        let named: BTreeSet<&str> = docs
            .split('`')
            .skip(1)
            .step_by(2)
            .flat_map(|span| span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .collect();
        // The JSON example names fields as "keys" too.
        let quoted: BTreeSet<&str> = docs.split('"').skip(1).step_by(2).collect();
        let mut fields = BTreeSet::new();
        properties(&super::json_schema(), &mut fields);
        assert!(fields.contains("schema_version") && fields.contains("needed_by"));
        let missing: Vec<&String> = fields
            .iter()
            .filter(|f| !named.contains(f.as_str()) && !quoted.contains(f.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "docs/report.md does not name {missing:?}"
        );
    }
}

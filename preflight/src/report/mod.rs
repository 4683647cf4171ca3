//! The report: one serde model, several renderers. The JSON form is a public contract
//! (`schema_version`); add fields freely, but renaming or removing one needs a new version.
pub mod cmd;
pub mod diff;
mod junit;
mod markdown;
mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use cmd::emit;
pub use junit::render_junit;
pub use markdown::render_markdown;
pub use text::render_text;

use crate::{checks::Area, cilium::Capability, cilium::Target, verdict::Verdict};

/// Bump on any change that could break a consumer of the JSON (renamed/removed field, new status).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Warn,
    /// Could not tell (no permission, file not visible, unexpected errno). Never a failure.
    Unknown,
    /// Does not apply here (e.g. a live-only fact when reading another root).
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Warn => "warn",
            Self::Unknown => "unknown",
            Self::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckResult {
    /// Stable dotted id, e.g. `bpf.helper.sched_cls.redirect_neigh`; safe to `--ignore` and diff.
    pub id: String,
    pub area: Area,
    pub title: String,
    pub status: Status,
    pub detail: String,
    /// What to do: a string on problems (fail/warn/unknown), `null` on pass and skip. Always
    /// written, so every check object has the same fields.
    #[serde(default)]
    pub remedy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// Capabilities that fail when this check fails.
    pub needed_by: Vec<Capability>,
    /// Whether the target needs any of `needed_by` (a failure elsewhere is only informative).
    pub relevant: bool,
    /// Listed in `--ignore`: shown, but not counted against the verdict.
    pub ignored: bool,
    /// An `unknown` on a point the capability cannot do without (a hard requirement that could
    /// not be checked): the capability is undecided, not go. Added after schema_version 1 was
    /// published: absent (false) in older reports and whenever it does not apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
}

impl CheckResult {
    /// A failure that blocks the target.
    pub fn blocks(&self) -> bool {
        self.status == Status::Fail && self.relevant && !self.ignored
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Node {
    pub hostname: String,
    pub kernel_release: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    pub arch: String,
    /// The root facts were read from (`/` on the node itself, `/host` in a Job).
    pub root: String,
    /// Whether live probes (bpf(), netlink, mounts) ran against this root's kernel.
    pub live: bool,
}

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
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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

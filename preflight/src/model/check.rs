use super::{Area, Capability, Recommendation, Status};
use serde::{Deserialize, Serialize};

// One check's result in a report. The JSON form is a public contract (docs/report.md). (A `//` comment: doc comments
// become descriptions in the published JSON Schema.)
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
    /// A failure that only follows from another check's (e.g. a program that fails to compile
    /// because datapath init, `compile.init`, never writes its header): what fixes that check
    /// fixes this one. Added after schema_version 1: absent when it does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<String>,
    /// The values fix the outcome proposed (its [`super::Outcome::patch`], with its remedy or
    /// else its detail as the reason): what the verdict recommends when this check fails. Not
    /// written: the verdict's `recommendations` carry it.
    #[serde(skip)]
    #[schemars(skip)]
    pub fix: Option<Recommendation>,
}

impl CheckResult {
    /// A failure that blocks the target.
    pub fn blocks(&self) -> bool {
        self.status == Status::Fail && self.relevant && !self.ignored
    }
}

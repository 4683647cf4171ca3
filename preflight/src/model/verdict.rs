use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Capability;

// One capability the target needs: go, blocked (by which checks), or undecided. (A `//` comment: doc comments
// become descriptions in the published JSON Schema.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapabilityVerdict {
    pub capability: Capability,
    pub go: bool,
    /// Failed checks that block this capability.
    pub blocking: Vec<String>,
    /// Checks that could not tell; the capability is go, but unverified on these points.
    pub unverified: Vec<String>,
    /// Nothing failed, but nothing passed either: every check that bears on it could not tell
    /// (typically: not root). Such a capability is neither go nor no-go. Added after
    /// schema_version 1 was published: older reports lack it (read as false).
    #[serde(default)]
    pub undecided: bool,
}

/// A change to the values that avoids a blocked capability or fixes a rejected value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recommendation {
    /// What it fixes: a capability (`tunnel-geneve`) or a check id (`values.removed.tunnel`).
    pub fixes: String,
    pub why: String,
    /// Values to merge over the user's (`null` deletes a key).
    pub patch: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Verdict {
    /// Every capability the target needs is go, and none is undecided.
    pub go: bool,
    /// False when some needed capability could not be judged at all (exit code 2). Added after
    /// schema_version 1 was published: older reports, which had no undecided state, read as true.
    #[serde(default = "decided_by_default")]
    pub decided: bool,
    pub capabilities: Vec<CapabilityVerdict>,
    /// One line, for humans.
    pub summary: String,
    /// Cheaper settings and value fixes, each with its patch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// All recommendations merged into one values file the user can pass with -f.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_patch: Option<Value>,
    /// Whether the target with `values_patch` applied is go on the same node (set by `run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_is_go: Option<bool>,
    /// The readiness a fleet scan acts on: go, go-after-plan (every blocking finding is fixed
    /// by a step `preflight plan` would carry out), no-go (something only a person can change)
    /// or undecided. Added after schema_version 1 was published: older reports lack it (null;
    /// read it from `go` and `decided`, as [`Verdict::readiness`] does).
    #[serde(default)]
    pub readiness: Option<Readiness>,
    /// With readiness go-after-plan: the plan's steps that fix the blocking findings, in plan
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan_steps: Vec<PlanFix>,
    /// The checks that still block once `values_patch` is applied (set by `refine`), which the
    /// plan must fix as well. Not written.
    #[serde(skip)]
    #[schemars(skip)]
    pub blocking_after_values: Option<Vec<String>>,
}

impl Verdict {
    /// The readiness, also for a report written before the field existed.
    pub fn readiness(&self) -> Readiness {
        self.readiness.unwrap_or(if self.go {
            Readiness::Go
        } else if self.decided {
            Readiness::NoGo
        } else {
            Readiness::Undecided
        })
    }
}

// Three outcomes a fleet scan can act on, and "could not tell". (A `//` comment: doc comments
// become descriptions in the published JSON Schema.)
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
#[serde(rename_all = "kebab-case")]
pub enum Readiness {
    Go,
    GoAfterPlan,
    NoGo,
    Undecided,
}

impl Readiness {
    /// As the verdict line and `aggregate` print it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Go => "GO",
            Self::GoAfterPlan => "GO after plan",
            Self::NoGo => "NO-GO",
            Self::Undecided => "UNDECIDED",
        }
    }
}

// A step of `preflight plan` and the blocking checks it fixes. (A `//` comment: doc comments
// become descriptions in the published JSON Schema.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PlanFix {
    /// The step's stable id in `preflight plan`'s output, e.g. `k3s.drop-in`.
    pub step: String,
    pub title: String,
    /// The blocking check ids it fixes.
    pub fixes: Vec<String>,
}

fn decided_by_default() -> bool {
    true
}

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
}

fn decided_by_default() -> bool {
    true
}

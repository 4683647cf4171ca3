use serde::{Deserialize, Serialize};

// A check's answer. Three-way at heart (pass / fail / unknown), plus `warn` (works, with a
// caveat) and `skip` (does not apply here). (A `//` comment: doc comments
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

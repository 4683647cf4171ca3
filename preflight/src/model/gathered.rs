use serde::{Deserialize, Serialize};

use super::Outcome;

/// A fact about the node: what was found, that it could not be told (and why), or that it does
/// not apply here (and why). The one way preflight says "could not tell" about what it gathers:
/// checks turn `Unknown` into an `unknown` outcome (never `fail`) and `Skipped` into `skip`.
/// "Could not tell" carries its reason: a sentence by default, or a structured one (`Why`) where
/// checks word it differently (the kernel config's searched locations and unusable files).
///
/// Reports carry it too (`node.cluster.network`): `{"got": …}`, `{"unknown": "why"}` or
/// `{"skipped": "why"}`, named `Observed` in the published JSON Schema (docs/report.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(
    rename = "Observed",
    description = "A fact as the report carries it: found, could not tell (why), or does not apply (why)."
)]
pub enum Gathered<T, Why = String> {
    Got(T),
    // Could not tell, and why: a file that does not parse, EPERM, no usable clang. (`//`
    // comments here: doc comments become descriptions in the published JSON Schema.)
    Unknown(Why),
    // Does not apply here, and why: a live-only fact when reading another root, a stage that
    // was turned off.
    Skipped(String),
}

impl<T, Why> Gathered<T, Why> {
    /// The fact, when there is one.
    pub fn got(&self) -> Option<&T> {
        match self {
            Self::Got(t) => Some(t),
            Self::Unknown(_) | Self::Skipped(_) => None,
        }
    }
}

impl<T> Gathered<T> {
    /// A check's outcome from this fact: `f` judges what was found; could not tell is `unknown`
    /// and does not apply is `skip`, each with its reason.
    pub fn judge(&self, f: impl FnOnce(&T) -> Outcome) -> Outcome {
        match self {
            Self::Got(t) => f(t),
            Self::Unknown(why) => Outcome::unknown(why.clone()),
            Self::Skipped(why) => Outcome::skip(why.clone()),
        }
    }

    /// A gathering step that ran: its error is why it could not tell.
    pub fn from_result(result: Result<T, String>) -> Self {
        match result {
            Ok(t) => Self::Got(t),
            Err(why) => Self::Unknown(why),
        }
    }
}

use serde_json::Value;

use super::Status;

/// What a check (or a values rule) found. `Unknown` means "could not tell" (EPERM, file not
/// visible) and is never turned into `Fail`; `Skip` means the check does not apply (e.g. a
/// live-only fact with --root).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    /// Where the fact came from: a file, a syscall, a command line.
    pub evidence: Vec<String>,
    /// Replaces the check's generic remedy when the finding calls for a specific one.
    pub remedy: Option<String>,
    /// Helm values to merge over the user's to fix it (`null` deletes a key): what the verdict
    /// recommends for a failing values check.
    pub patch: Option<Value>,
    /// An unknown the capabilities that need the check cannot do without (a hard requirement
    /// that could not be checked): they are undecided, not go (`CheckResult::decisive`).
    pub decisive: bool,
    /// The id of another check this failure only follows from (`CheckResult::follows`).
    pub follows: Option<String>,
}

impl Outcome {
    pub fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            evidence: Vec::new(),
            remedy: None,
            patch: None,
            decisive: false,
            follows: None,
        }
    }
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Status::Pass, detail)
    }
    pub fn fail(detail: impl Into<String>) -> Self {
        Self::new(Status::Fail, detail)
    }
    pub fn warn(detail: impl Into<String>) -> Self {
        Self::new(Status::Warn, detail)
    }
    pub fn unknown(detail: impl Into<String>) -> Self {
        Self::new(Status::Unknown, detail)
    }
    pub fn skip(detail: impl Into<String>) -> Self {
        Self::new(Status::Skip, detail)
    }
    pub fn evidence(mut self, evidence: impl Into<String>) -> Self {
        self.evidence.push(evidence.into());
        self
    }
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
    pub fn patch(mut self, patch: Value) -> Self {
        self.patch = Some(patch);
        self
    }
    /// This failure is only a consequence of check `id` failing: what fixes that fixes this.
    pub fn follows(mut self, id: impl Into<String>) -> Self {
        self.follows = Some(id.into());
        self
    }
    /// This unknown leaves the capabilities that need the check undecided.
    pub fn decisive(mut self) -> Self {
        self.decisive = true;
        self
    }
}

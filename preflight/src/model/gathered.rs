/// A fact about the node: what was found, that it could not be told (and why), or that it does
/// not apply here (and why). The one way preflight says "could not tell" about what it gathers:
/// checks turn `Unknown` into an `unknown` outcome (never `fail`) and `Skipped` into `skip`.
#[derive(Debug, Clone, PartialEq)]
pub enum Gathered<T> {
    Got(T),
    /// Could not tell, and why: a file that does not parse, EPERM, no usable clang.
    Unknown(String),
    /// Does not apply here, and why: a live-only fact when reading another root, a stage that
    /// was turned off.
    Skipped(String),
}

impl<T> Gathered<T> {
    /// The fact, when there is one.
    pub fn got(&self) -> Option<&T> {
        match self {
            Self::Got(t) => Some(t),
            Self::Unknown(_) | Self::Skipped(_) => None,
        }
    }

    /// The fact, or why there is none (could not tell, or does not apply). Kept while other
    /// branches that call it merge; new code matches the three cases, which a check must tell
    /// apart (`unknown` vs `skip`).
    pub fn get(&self) -> Result<&T, &str> {
        match self {
            Self::Got(t) => Ok(t),
            Self::Unknown(why) | Self::Skipped(why) => Err(why),
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

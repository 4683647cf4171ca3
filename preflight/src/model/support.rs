use serde::{Deserialize, Serialize};

use super::Status;

/// Whether the kernel has a feature (a program type, map type, helper, canary hook): available,
/// not (and, when known, why), or could not tell (and why). The probes answer in it; the checks
/// read it as [`Status::Pass`], [`Status::Fail`] or [`Status::Unknown`] ([`Support::status`]),
/// never collapsing "could not tell" into "not there". Its JSON form is part of
/// `preflight probe --format json` (docs/probe.md): `{"status": "available"}`,
/// `{"status": "unavailable", "reason": …}`, `{"status": "unknown", "reason": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Support {
    Available,
    Unavailable {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Could not tell (EPERM, an unexpected errno), and why.
    Unknown {
        reason: String,
    },
}

impl Support {
    /// A yes/no question that was asked: its error is why it could not tell.
    pub fn from_result(r: Result<bool, String>) -> Self {
        match r {
            Ok(true) => Self::Available,
            Ok(false) => Self::Unavailable { reason: None },
            Err(reason) => Self::Unknown { reason },
        }
    }
    pub fn is_available(&self) -> bool {
        matches!(self, Self::Available)
    }
    /// As `preflight probe` prints it (and its JSON `status`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Unavailable { .. } => "unavailable",
            Self::Unknown { .. } => "unknown",
        }
    }
    /// The check status this answer is when the feature is required: an unknown stays unknown.
    pub fn status(&self) -> Status {
        match self {
            Self::Available => Status::Pass,
            Self::Unavailable { .. } => Status::Fail,
            Self::Unknown { .. } => Status::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_the_probe_json_documents() {
        let cases = [
            (Support::Available, r#"{"status":"available"}"#),
            (
                Support::Unavailable { reason: None },
                r#"{"status":"unavailable"}"#,
            ),
            (
                Support::Unavailable {
                    reason: Some("E2BIG".into()),
                },
                r#"{"status":"unavailable","reason":"E2BIG"}"#,
            ),
            (
                Support::Unknown {
                    reason: "EPERM".into(),
                },
                r#"{"status":"unknown","reason":"EPERM"}"#,
            ),
        ];
        for (support, json) in cases {
            assert_eq!(serde_json::to_string(&support).unwrap(), json);
            assert_eq!(serde_json::from_str::<Support>(json).unwrap(), support);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(json).unwrap()["status"],
                support.label()
            );
        }
    }

    #[test]
    fn could_not_tell_is_never_a_failure() {
        assert_eq!(Support::from_result(Ok(true)).status(), Status::Pass);
        assert_eq!(Support::from_result(Ok(false)).status(), Status::Fail);
        assert_eq!(
            Support::from_result(Err("EPERM".into())).status(),
            Status::Unknown
        );
    }
}

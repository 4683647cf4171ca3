//! A Cilium version as written on the command line, in a chart's `Chart.yaml` or in a report:
//! `1.16`, `1.16.4`, `v1.16.4`, `1.20.0-dev`, `1.17.0-rc.1`. Parsed once, at the edge; everything
//! behind the edge holds this type. Whether preflight *knows* the version is a separate question,
//! answered by [`super::releases::Catalog::resolve`].
use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CiliumVersion {
    pub major: u32,
    pub minor: u32,
    /// None: any patch of the minor (`1.16`).
    pub patch: Option<u32>,
    /// A pre-release suffix as written (`dev`, `rc.1`): judged like the release it leads to,
    /// shown as written.
    pub pre: Option<String>,
}

impl CiliumVersion {
    pub const fn new(major: u32, minor: u32, patch: Option<u32>) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: None,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a Cilium version (expected e.g. 1.16 or 1.16.4)");
        let t = text.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        // Build metadata (`+sha`) says nothing about the release; a pre-release suffix does.
        let t = t.split('+').next().unwrap_or(t);
        let (core, pre) = match t.split_once('-') {
            Some((core, pre)) if !pre.is_empty() && pre.chars().all(pre_char) => {
                (core, Some(pre.to_string()))
            }
            Some(_) => return Err(bad()),
            None => (t, None),
        };
        let mut parts = core.split('.');
        let num = |p: Option<&str>| -> Option<u32> {
            let p = p?;
            // No signs, no spaces, no leading zeros beyond a lone 0 (semver).
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.len() > 9 {
                return None;
            }
            if p.len() > 1 && p.starts_with('0') {
                return None;
            }
            p.parse().ok()
        };
        let major = num(parts.next()).ok_or_else(bad)?;
        let minor = num(parts.next()).ok_or_else(bad)?;
        let patch = match parts.next() {
            None => None,
            Some(p) => Some(num(Some(p)).ok_or_else(bad)?),
        };
        if parts.next().is_some() || (pre.is_some() && patch.is_none()) {
            return Err(bad());
        }
        Ok(Self {
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn minor_key(&self) -> (u32, u32) {
        (self.major, self.minor)
    }

    /// `major.minor`, e.g. `1.20`.
    pub fn minor_label(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// Whether this is at least `major.minor.patch`, a version without a patch counting as
    /// `unknown_patch` (the newest patch of its minor preflight knows: "1.19" is whatever 1.19
    /// Helm installs today). A pre-release counts as the release it leads to.
    pub fn at_least(&self, (major, minor, patch): (u32, u32, u32), unknown_patch: u32) -> bool {
        (self.major, self.minor, self.patch.unwrap_or(unknown_patch)) >= (major, minor, patch)
    }
}

fn pre_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

impl FromStr for CiliumVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for CiliumVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(p) = self.patch {
            write!(f, ".{p}")?;
        }
        if let Some(pre) = &self.pre {
            write!(f, "-{pre}")?;
        }
        Ok(())
    }
}

/// Written as the string it displays as: reports keep `"cilium_version": "1.20.2"`.
impl Serialize for CiliumVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CiliumVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for CiliumVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CiliumVersion".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A Cilium version: major.minor[.patch][-pre-release], e.g. 1.20.2",
            "pattern": r"^v?\d+\.\d+(\.\d+(-[0-9A-Za-z.-]+)?)?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_written_and_display_as_parsed() {
        for (text, shown) in [
            ("1.16", "1.16"),
            ("v1.16.4", "1.16.4"),
            ("1.20.0-dev", "1.20.0-dev"),
            ("1.17.0-rc.1", "1.17.0-rc.1"),
            (" 1.19.3+abc ", "1.19.3"),
        ] {
            assert_eq!(CiliumVersion::parse(text).unwrap().to_string(), shown);
        }
        for bad in [
            "",
            "1",
            "x.y",
            "1.16.4.5",
            "1.16.x",
            "1.16-dev",
            "1.16.4-",
            "01.16",
            "1.-1",
            "1.16.4-a b",
        ] {
            assert!(CiliumVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_version_without_a_patch_is_the_newest_patch_known() {
        let v = CiliumVersion::parse("1.19").unwrap();
        assert!(v.at_least((1, 19, 3), 7));
        assert!(!v.at_least((1, 19, 3), 2));
        let v = CiliumVersion::parse("1.19.2").unwrap();
        assert!(!v.at_least((1, 19, 3), 7));
        assert!(
            CiliumVersion::parse("1.20.0-dev")
                .unwrap()
                .at_least((1, 20, 0), 0)
        );
    }

    #[test]
    fn serde_keeps_the_string_form() {
        let v: CiliumVersion = serde_json::from_str("\"1.18.4\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"1.18.4\"");
        assert!(serde_json::from_str::<CiliumVersion>("\"latest\"").is_err());
    }
}

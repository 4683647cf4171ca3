//! The target of a preflight: which Cilium version, with which Helm values, and therefore which
//! capabilities the node must have.
pub mod chart;
pub mod derive;
#[cfg(test)]
mod fuzz;
pub mod keys;
pub mod node;
pub mod profiles;
pub mod set;
pub mod validate;
pub mod values;
pub mod yamlpos;

use std::{collections::BTreeSet, path::PathBuf};

/// Re-export while other branches still name it here; the type lives in `model`.
pub use crate::model::Capability;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::{
    chart::{Chart, ChartInfo},
    profiles::{CiliumVersion, Profile},
    values::ValuesError,
};

/// The newest Cilium minor we ship a profile for; the default target.
pub const DEFAULT_CILIUM_VERSION: &str = "1.19";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Target {
    pub cilium_version: String,
    /// Capabilities the target needs, derived from its values.
    pub capabilities: BTreeSet<Capability>,
    /// Where the values came from, in the order applied: files, then `--set` expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_sources: Vec<String>,
    /// The user's values, merged (not yet coalesced with the chart's defaults). Not written to
    /// the report: values files carry keys and certificates, and reports end up in CI artifacts.
    #[serde(skip, default = "empty_object")]
    #[schemars(skip)]
    pub values: Value,
    /// The text of each values file, by name (for `file:line` in messages). Not written.
    #[serde(skip)]
    #[schemars(skip)]
    pub value_texts: Vec<(String, String)>,
    /// The chart given with --chart and what its values.schema.json said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartInfo>,
    /// The chart's own values.yaml (with --chart): used instead of the profile's defaults.
    #[serde(skip)]
    #[schemars(skip)]
    pub chart_values: Option<Value>,
    /// The chart's values.schema.json (with --chart): a patched target is validated again.
    #[serde(skip)]
    #[schemars(skip)]
    pub chart_schema: Option<Value>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// What the command line says about the target.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    pub cilium_version: Option<String>,
    pub value_files: Vec<PathBuf>,
    pub sets: Vec<String>,
    pub chart: Option<PathBuf>,
    /// Extra capabilities asked for with --need.
    pub need: Vec<Capability>,
}

impl Target {
    /// The chart's defaults for a version: VXLAN tunnel, kube-proxy kept, L7 proxy and Hubble on.
    pub fn chart_defaults(cilium_version: &str) -> Self {
        let mut t = Self {
            cilium_version: cilium_version.to_string(),
            capabilities: BTreeSet::new(),
            value_sources: Vec::new(),
            value_texts: Vec::new(),
            values: empty_object(),
            chart: None,
            chart_values: None,
            chart_schema: None,
        };
        t.capabilities = derive::capabilities(&t.effective_values());
        t
    }

    /// Reads the values files, applies --set, loads the chart, and derives the capabilities.
    /// Errors name the file and line (exit 2).
    pub fn build(spec: &TargetSpec) -> Result<Self, ValuesError> {
        let chart = spec.chart.as_deref().map(Chart::load).transpose()?;
        if let (Some(flag), Some(chart)) = (&spec.cilium_version, &chart) {
            check_chart_version(flag, chart)?;
        }
        // Version: the flag, else the chart's own, else the newest profile.
        let version = spec
            .cilium_version
            .clone()
            .or_else(|| chart.as_ref().and_then(|c| c.version.clone()))
            .unwrap_or_else(|| DEFAULT_CILIUM_VERSION.to_string());
        let parsed = CiliumVersion::parse(&version).map_err(|message| ValuesError::File {
            file: "--cilium-version".into(),
            message,
        })?;
        profiles::for_version(parsed).map_err(|message| ValuesError::File {
            file: "--cilium-version".into(),
            message,
        })?;
        let mut values = empty_object();
        let mut sources = Vec::new();
        let mut texts = Vec::new();
        for file in &spec.value_files {
            let (text, value) = values::load_file(file)?;
            values::merge(&mut values, value);
            sources.push(file.display().to_string());
            texts.push((file.display().to_string(), text));
        }
        for expr in &spec.sets {
            set::apply(&mut values, expr)?;
            sources.push(format!("--set {expr}"));
        }
        // Bounded work: every key is judged (typo checks), so their number is capped.
        values::check_key_count(&values, "-f/--set")?;
        let mut target = Self {
            cilium_version: version,
            capabilities: BTreeSet::new(),
            value_sources: sources,
            value_texts: texts,
            values,
            chart: None,
            chart_values: None,
            chart_schema: None,
        };
        if let Some(chart) = chart {
            let rendered = values::coalesce(&chart.default_values, &target.values);
            target.chart = Some(chart.check(&rendered)?);
            target.chart_values = Some(chart.default_values);
            target.chart_schema = chart.schema;
        }
        target.capabilities = derive::capabilities(&target.effective_values());
        target.capabilities.extend(spec.need.iter().copied());
        Ok(target)
    }

    pub fn version(&self) -> Option<CiliumVersion> {
        CiliumVersion::parse(&self.cilium_version).ok()
    }

    /// The version's profile; the newest when the version is unparsable or unknown (a report
    /// read back from JSON may name a version this build does not know).
    pub fn profile(&self) -> &'static Profile {
        self.version()
            .and_then(|v| profiles::for_version(v).ok())
            .unwrap_or_else(profiles::newest)
    }

    /// Whether the target's version is at least `major.minor`.
    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        let p = self.profile();
        (p.major, p.minor) >= (major, minor)
    }

    /// The values the chart renders with: the profile's defaults coalesced with the user's.
    pub fn effective_values(&self) -> Value {
        let defaults: Value = serde_norway::from_str(self.profile().chart_defaults)
            .unwrap_or_else(|_| empty_object());
        values::coalesce(&defaults, &self.values)
    }

    /// A user value at a dotted path (not the chart default).
    pub fn user_value(&self, path: &str) -> Option<&Value> {
        values::lookup(&self.values, path)
    }

    /// Where the user's value at a dotted path was last set: `file:line` (or the file when the
    /// line cannot be told), or `--set expr`. None when it is a chart default.
    pub fn origin(&self, path: &str) -> Option<String> {
        self.user_value(path)?;
        for source in self.value_sources.iter().rev() {
            if let Some(expr) = source.strip_prefix("--set ") {
                let mut v = empty_object();
                if set::apply(&mut v, expr).is_ok() && values::lookup(&v, path).is_some() {
                    return Some(source.clone());
                }
                continue;
            }
            let Some((_, text)) = self.value_texts.iter().find(|(f, _)| f == source) else {
                continue;
            };
            let sets_it = values::parse_yaml(source, text)
                .ok()
                .is_some_and(|v| values::lookup(&v, path).is_some());
            if sets_it {
                return Some(match yamlpos::locate(text, path) {
                    Some(line) => format!("{source}:{line}"),
                    None => source.clone(),
                });
            }
        }
        None
    }

    /// The rendered value at a dotted path (user's, else the chart default).
    pub fn value(&self, path: &str) -> Option<Value> {
        values::lookup(&self.effective_values(), path).cloned()
    }

    pub fn needs(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }

    /// A copy with `patch` merged over the user's values and capabilities derived again.
    pub fn with_patch(&self, patch: &Value) -> Self {
        let mut t = self.clone();
        values::merge(&mut t.values, patch.clone());
        let extra: Vec<_> = self
            .capabilities
            .difference(&derive::capabilities(&self.effective_values()))
            .copied()
            .collect();
        t.capabilities = derive::capabilities(&t.effective_values());
        t.capabilities.extend(extra);
        // The schema verdict was about the unpatched values: judge the patched ones again.
        if let Some(schema) = &self.chart_schema
            && let Ok(errors) = chart::violations(schema, &t.effective_values())
            && let Some(info) = t.chart.as_mut()
        {
            info.schema_errors = errors;
        }
        t
    }
}

/// `--cilium-version` and `--chart` must name the same release, or the target's rules (one
/// version) would be judged against another version's chart. A version without a patch matches
/// any patch of its minor (1.16 matches a 1.16.4 chart).
fn check_chart_version(flag: &str, chart: &Chart) -> Result<(), ValuesError> {
    let chart_version = chart.version.as_deref().or(chart.app_version.as_deref());
    let Some(chart_text) = chart_version else {
        return Ok(());
    };
    let to_err = |message: String| ValuesError::File {
        file: "--cilium-version".into(),
        message,
    };
    let wanted = CiliumVersion::parse(flag).map_err(to_err)?;
    let Ok(found) = CiliumVersion::parse(chart_text) else {
        // Not a Cilium-shaped version (a fork's own numbering): nothing to compare.
        return Ok(());
    };
    let same = wanted.minor_key() == found.minor_key()
        && (wanted.patch.is_none() || found.patch.is_none() || wanted.patch == found.patch);
    if same {
        return Ok(());
    }
    Err(to_err(format!(
        "{flag} disagrees with the chart {} (version {chart_text}): give the chart of Cilium \
         {flag}, or drop --cilium-version to judge the chart's own version",
        chart.source
    )))
}

impl Default for Target {
    fn default() -> Self {
        Self::chart_defaults(DEFAULT_CILIUM_VERSION)
    }
}

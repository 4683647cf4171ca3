//! The target of a preflight: which Cilium version, with which Helm values, and therefore which
//! capabilities the node must have.
pub mod chart;
pub mod chartdata;
pub mod derive;
#[cfg(test)]
mod fuzz;
pub mod gotmpl;
pub mod judged;
pub mod keys;
pub mod node;
pub mod releases;
pub mod set;
pub mod umbrella;
pub mod validate;
pub mod values;
pub mod version;
pub mod yamlpos;

use std::{collections::BTreeSet, path::PathBuf};

/// Re-export while other branches still name it here; the type lives in `model`.
pub use crate::model::Capability;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::version::CiliumVersion;
use self::{
    chart::{Chart, ChartInfo},
    chartdata::{ChartRule, Extract},
    releases::{BUILTIN, Catalog, Release},
    values::ValuesError,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Target {
    pub cilium_version: CiliumVersion,
    /// The release row the version resolved to (not written: a report read back resolves it
    /// again by its version).
    #[serde(skip)]
    #[schemars(skip)]
    pub release: Option<&'static Release>,
    /// Why the version is judged with caveats: a patch newer than preflight knows, a
    /// pre-release. Not written; `values.cilium-version` reports it.
    #[serde(skip)]
    #[schemars(skip)]
    pub version_note: Option<String>,
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
    /// What preflight extracted from the --chart chart (key set, validate.yaml rules).
    #[serde(skip)]
    #[schemars(skip)]
    pub chart_extract: Option<Extract>,
    /// Where in the values files the Cilium chart's values are: `cilium` for an umbrella
    /// chart's values (`--values-path cilium`, or found by preflight). Added after
    /// schema_version 1 was published; absent when the values are the chart's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_path: Option<String>,
    /// The values path was found by preflight, not given (`values.umbrella` says so).
    #[serde(skip)]
    #[schemars(skip)]
    pub values_path_found: bool,
    /// Top-level keys of the values outside the values path (an umbrella's other parts).
    #[serde(skip)]
    #[schemars(skip)]
    pub values_path_others: Vec<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// What the command line says about the target.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// Parsed at the command line; None: the chart's own version, else the newest release.
    pub cilium_version: Option<CiliumVersion>,
    pub value_files: Vec<PathBuf>,
    pub sets: Vec<String>,
    pub chart: Option<PathBuf>,
    /// Extra capabilities asked for with --need.
    pub need: Vec<Capability>,
    /// `--values-path cilium`: the Cilium chart's values are under this dotted key (an
    /// umbrella chart's values file).
    pub values_path: Option<String>,
}

impl Target {
    /// The chart's defaults for a version of the built-in catalog (tests and defaults): VXLAN
    /// tunnel, kube-proxy kept, L7 proxy and Hubble on. An unknown or unparsable version is the
    /// newest release.
    pub fn chart_defaults(cilium_version: &str) -> Self {
        let version =
            CiliumVersion::parse(cilium_version).unwrap_or_else(|_| BUILTIN.default_version());
        let resolved = BUILTIN.resolve(&version).ok();
        let mut t = Self {
            cilium_version: version,
            release: resolved.as_ref().map(|r| r.release),
            version_note: resolved.and_then(|r| r.note),
            capabilities: BTreeSet::new(),
            value_sources: Vec::new(),
            value_texts: Vec::new(),
            values: empty_object(),
            chart: None,
            chart_values: None,
            chart_schema: None,
            chart_extract: None,
            values_path: None,
            values_path_found: false,
            values_path_others: Vec::new(),
        };
        t.capabilities = derive::capabilities(&t.effective_values());
        t
    }

    /// Reads the values files, applies --set, loads the chart, and derives the capabilities,
    /// against the built-in release table. Errors name the file and line (exit 2).
    pub fn build(spec: &TargetSpec) -> Result<Self, ValuesError> {
        Self::build_in(spec, &BUILTIN)
    }

    /// [`Target::build`] against another catalog (a test adding a version as data).
    pub fn build_in(spec: &TargetSpec, catalog: &Catalog) -> Result<Self, ValuesError> {
        let chart = spec.chart.as_deref().map(Chart::load).transpose()?;
        let version_err = |message: String| ValuesError::File {
            file: "--cilium-version".into(),
            message,
        };
        if let (Some(flag), Some(chart)) = (&spec.cilium_version, &chart) {
            check_chart_version(flag, chart)?;
        }
        // Version: the flag, else the chart's own, else the newest release.
        let version = match (&spec.cilium_version, &chart) {
            (Some(v), _) => v.clone(),
            (None, Some(c)) => match c.version.as_deref().or(c.app_version.as_deref()) {
                Some(text) => CiliumVersion::parse(text).map_err(|e| ValuesError::File {
                    file: format!("{}/Chart.yaml", c.source),
                    message: format!("{e}; give --cilium-version"),
                })?,
                None => catalog.default_version(),
            },
            (None, None) => catalog.default_version(),
        };
        let resolved = catalog.resolve(&version).map_err(version_err)?;
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
        let extract = chart.as_ref().map(Chart::extract).transpose()?;
        let (values_path, values_path_found) = match &spec.values_path {
            Some(p) => (Some(p.clone()), false),
            None => {
                let keys = extract
                    .as_ref()
                    .map(|e| &e.keys)
                    .or_else(|| resolved.release.chart.data.map(|d| &d.get().keys));
                let found = umbrella::detect(&values, keys, resolved.release);
                let is_found = found.is_some();
                (found, is_found)
            }
        };
        let mut values_path_others = Vec::new();
        if let Some(path) = &values_path {
            values_path_others = umbrella::others(&values, path);
            values = umbrella::select(&values, path).map_err(|message| ValuesError::File {
                file: "--values-path".into(),
                message,
            })?;
        }
        let mut target = Self {
            cilium_version: version,
            release: Some(resolved.release),
            version_note: resolved.note,
            capabilities: BTreeSet::new(),
            value_sources: sources,
            value_texts: texts,
            values,
            chart: None,
            chart_values: None,
            chart_schema: None,
            chart_extract: extract,
            values_path,
            values_path_found,
            values_path_others,
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

    /// The version's release row; for a target read back from a report, the built-in row of
    /// its minor, or the newest when this build does not know it.
    pub fn release(&self) -> &'static Release {
        self.release.unwrap_or_else(|| {
            BUILTIN
                .find(self.cilium_version.minor_key())
                .unwrap_or_else(|| BUILTIN.newest())
        })
    }

    /// The exact release Helm installs for the target: the version as given, or for a minor
    /// without a patch (`1.19`) the newest release of it preflight knows.
    pub fn install_version(&self) -> CiliumVersion {
        match self.cilium_version.patch {
            Some(_) => self.cilium_version.clone(),
            None => self.release().latest(),
        }
    }

    /// Whether the target's minor is at least `major.minor`.
    pub fn at_least(&self, minor: (u32, u32)) -> bool {
        self.release().minor_key() >= minor
    }

    /// The chart's defaults: the --chart chart's values.yaml, else the defaults kept from the
    /// version's real chart, else the release table's defaults for the keys preflight reads.
    pub fn chart_defaults_value(&self) -> Value {
        if let Some(v) = &self.chart_values {
            return v.clone();
        }
        if let Some(data) = self.release().chart.data {
            return data.get().defaults.clone();
        }
        serde_norway::from_str(self.release().chart.defaults).unwrap_or_else(|_| empty_object())
    }

    /// The chart's key set when preflight has it (the --chart chart, or the version's real
    /// chart): values.yaml's keys and every key its templates read. None: only the defaults of
    /// the keys preflight reads are known.
    pub fn chart_keys(&self) -> Option<&Value> {
        match &self.chart_extract {
            Some(e) => Some(&e.keys),
            None => self.release().chart.data.map(|d| &d.get().keys),
        }
    }

    /// The chart's `fail` rules (templates/validate.yaml) when preflight has them.
    pub fn chart_rules(&self) -> Option<&[ChartRule]> {
        match &self.chart_extract {
            Some(e) => Some(&e.rules),
            None => self.release().chart.data.map(|d| d.get().rules.as_slice()),
        }
    }

    /// How messages name the chart whose rules judge the values.
    pub fn chart_label(&self) -> String {
        match (&self.chart, self.release().chart.data) {
            (Some(c), _) => c.source.clone(),
            (None, Some(_)) => format!("the Cilium {} chart", self.release().label()),
            (None, None) => format!("the Cilium {} chart", self.cilium_version),
        }
    }

    /// The values the chart renders with: the chart's defaults coalesced with the user's.
    pub fn effective_values(&self) -> Value {
        values::coalesce(&self.chart_defaults_value(), &self.values)
    }

    /// A user value at a dotted path (not the chart default).
    pub fn user_value(&self, path: &str) -> Option<&Value> {
        values::lookup(&self.values, path)
    }

    /// Where the user's value at a dotted path was last set: `file:line` (or the file when the
    /// line cannot be told), or `--set expr`. None when it is a chart default.
    pub fn origin(&self, path: &str) -> Option<String> {
        self.user_value(path)?;
        // In the files the path is below the umbrella's `cilium:`.
        let full = match &self.values_path {
            Some(prefix) => format!("{prefix}.{path}"),
            None => path.to_string(),
        };
        let path = full.as_str();
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
fn check_chart_version(wanted: &CiliumVersion, chart: &Chart) -> Result<(), ValuesError> {
    let chart_version = chart.version.as_deref().or(chart.app_version.as_deref());
    let Some(chart_text) = chart_version else {
        return Ok(());
    };
    let Ok(found) = CiliumVersion::parse(chart_text) else {
        // Not a Cilium-shaped version (a fork's own numbering): nothing to compare.
        return Ok(());
    };
    // A release and a pre-release of the same number are different charts: 1.19.0 does not
    // match a 1.19.0-dev chart.
    let same = wanted.minor_key() == found.minor_key()
        && (wanted.patch.is_none()
            || found.patch.is_none()
            || (wanted.patch == found.patch && wanted.pre == found.pre));
    if same {
        return Ok(());
    }
    let flag = wanted;
    Err(ValuesError::File {
        file: "--cilium-version".into(),
        message: format!(
            "{flag} disagrees with the chart {} (version {chart_text}): give the chart of \
             Cilium {flag}, or drop --cilium-version to judge the chart's own version",
            chart.source
        ),
    })
}

impl Default for Target {
    /// The chart's defaults for the newest known release.
    fn default() -> Self {
        Self::chart_defaults(&BUILTIN.default_version().to_string())
    }
}

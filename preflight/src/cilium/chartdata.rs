//! What preflight keeps of a real Cilium chart, so it judges values as that chart judges them
//! without `--chart`: the keys the chart has (its values.yaml, plus every `.Values.…` its
//! templates read, so keys that are only comments in values.yaml — `kubeProxyReplacement`,
//! `loadBalancer.mode`, `devices` — are known), the `fail` rules of templates/validate.yaml,
//! and the defaults of the paths those rules and preflight's own rules read. Not the chart:
//! no template is copied, and of values.yaml only those defaults and the key names.
//!
//! The data is generated from the real charts by `cargo xtask chart-data` into
//! `cilium/charts/<version>.json` with its provenance; a test regenerates it from the real charts
//! (test data outside the repository, `PREFLIGHT_SHARED`) and compares. With `--chart` the same extraction runs on the given chart.
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    chart::Chart,
    gotmpl::{self, FailRule, TemplateError},
    releases::RELEASES,
};

/// The template whose `fail` rules are the chart's values rules.
pub const VALIDATE: &str = "templates/validate.yaml";

/// Values paths preflight's own rules read beside the capability keys of every release (the
/// node cross-checks, the agent start rules, the compile stage): their chart defaults are kept.
const ALSO_KEPT: &[&str] = &[
    "tunnel",
    "socketLB.enabled",
    "nodePort.enabled",
    "enableXTSocketFallback",
    "bpf.monitorAggregation",
    "bpf.tproxy",
    "ipMasqAgent.enabled",
    "ipam.mode",
    "ipv4.enabled",
    "k8sServicePort",
    "tunnelPort",
    "trustCRDsExist",
];

/// Generated data of one chart, embedded in the binary and parsed on first use.
pub struct ChartData {
    /// The chart version it was generated from.
    pub version: &'static str,
    json: &'static str,
    parsed: OnceLock<Extract>,
}

impl std::fmt::Debug for ChartData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChartData({})", self.version)
    }
}

impl ChartData {
    pub const fn new(version: &'static str, json: &'static str) -> Self {
        Self {
            version,
            json,
            parsed: OnceLock::new(),
        }
    }

    /// The data (the embedded JSON is generated and tested: it parses).
    pub fn get(&self) -> &Extract {
        self.parsed.get_or_init(|| {
            serde_json::from_str(self.json).unwrap_or_else(|e| {
                // Generated data that does not parse is a build defect, caught by the tests.
                tracing::error!("embedded chart data {} unreadable: {e}", self.version);
                Extract::default()
            })
        })
    }

    /// The embedded text (for the regeneration test).
    pub fn json(&self) -> &'static str {
        self.json
    }
}

pub static CHART_1_16: ChartData = ChartData::new("1.16.15", include_str!("charts/1.16.15.json"));
pub static CHART_1_18: ChartData = ChartData::new("1.18.3", include_str!("charts/1.18.3.json"));
pub static CHART_1_20: ChartData =
    ChartData::new("1.20.0-dev", include_str!("charts/1.20.0-dev.json"));

/// Where the data came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub chart: String,
    pub version: String,
    /// Where the chart lives upstream.
    pub upstream: String,
    /// The commit the chart was taken from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub generator: String,
}

/// A `fail` rule and the template it is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChartRule {
    pub file: String,
    #[serde(flatten)]
    pub rule: FailRule,
}

/// What preflight keeps of a chart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extract {
    pub provenance: Provenance,
    /// Whether the chart ships values.schema.json.
    pub has_schema: bool,
    /// The key set: a mapping per values.yaml mapping (`{}` where any key is accepted below),
    /// null for a leaf.
    pub keys: Value,
    /// Defaults of the paths the rules and preflight read.
    pub defaults: Value,
    pub rules: Vec<ChartRule>,
}

/// `.Values.a.b` and `$.Values.a.b` references in template text.
fn values_refs(text: &str) -> Vec<Vec<String>> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)").expect("a valid pattern")
    });
    re.captures_iter(text)
        .map(|c| {
            c[1].split('.')
                .filter(|p| !p.is_empty() && *p != "AsMap")
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// The key structure of values: mappings kept (an empty one stays open), leaves null.
fn key_tree(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), key_tree(v))).collect())
        }
        _ => Value::Null,
    }
}

/// Adds a path the templates read: a missing key is added with mappings down to it; a leaf,
/// list or open (empty) mapping already there takes anything below it.
fn add_key(tree: &mut Value, path: &[String]) {
    let (Some((first, rest)), Value::Object(map)) = (path.split_first(), tree) else {
        return;
    };
    match map.get_mut(first) {
        Some(child) => {
            if !rest.is_empty() && child.as_object().is_some_and(|m| !m.is_empty()) {
                add_key(child, rest);
            }
        }
        None => {
            let chain = rest.iter().rev().fold(Value::Null, |below, k| {
                let mut m = Map::new();
                m.insert(k.clone(), below);
                Value::Object(m)
            });
            map.insert(first.clone(), chain);
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object()?.get(k))
}

/// Puts `value` at `path` in `out`, creating mappings on the way.
fn insert(out: &mut Value, path: &[String], value: Value) {
    let mut cur = out;
    for (i, k) in path.iter().enumerate() {
        let Value::Object(m) = cur else { return };
        if i + 1 == path.len() {
            match (m.get_mut(k), value) {
                // A mapping kept already (its key names) gains the value's own defaults.
                (Some(Value::Object(existing)), Value::Object(new)) => {
                    for (nk, nv) in new {
                        existing.entry(nk).or_insert(nv);
                    }
                }
                (Some(Value::Object(_)), _) => {}
                (_, value) => {
                    m.insert(k.clone(), value);
                }
            }
            return;
        }
        cur = m
            .entry(k.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !cur.is_object() {
            return;
        }
    }
}

/// A default as kept: scalars and lists as they are; a non-empty mapping as its key names
/// (null values), which keeps its truth and `hasKey` without copying its contents.
fn kept(v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => {
            Value::Object(m.keys().map(|k| (k.clone(), Value::Null)).collect())
        }
        other => other.clone(),
    }
}

/// Every values path preflight's own rules read, for any known version.
fn preflight_paths() -> Vec<String> {
    let mut out: Vec<String> = RELEASES
        .iter()
        .flat_map(|r| r.capability_keys())
        .chain(ALSO_KEPT.iter().copied())
        .map(str::to_string)
        .collect();
    for m in super::validate::SERVICE_MONITORS {
        out.push(format!("{m}.enabled"));
        out.push(format!("{m}.trustCRDsExist"));
    }
    out.sort();
    out.dedup();
    out
}

/// Extracts the key set, the validate.yaml rules and the kept defaults from a chart. A template
/// that does not parse is an error naming the file and line.
pub fn extract(chart: &Chart) -> Result<Extract, (String, TemplateError)> {
    let mut keys = key_tree(&chart.default_values);
    let mut rules = Vec::new();
    for (file, text) in &chart.templates {
        if file == VALIDATE {
            for rule in gotmpl::fail_rules(text).map_err(|e| (file.clone(), e))? {
                rules.push(ChartRule {
                    file: file.clone(),
                    rule,
                });
            }
            // validate.yaml reads keys to reject them: that is not the chart reading them.
            continue;
        }
        for path in values_refs(text) {
            add_key(&mut keys, &path);
        }
    }
    let mut paths: Vec<Vec<String>> = preflight_paths()
        .iter()
        .map(|p| p.split('.').map(str::to_string).collect())
        .collect();
    for r in &rules {
        for p in r.rule.values_paths() {
            paths.push(p.split('.').map(str::to_string).collect());
        }
    }
    paths.sort();
    paths.dedup();
    let mut defaults = Value::Object(Map::new());
    for path in &paths {
        if let Some(v) = lookup(&chart.default_values, path) {
            insert(&mut defaults, path, kept(v));
        }
    }
    Ok(Extract {
        provenance: Provenance {
            chart: "cilium".into(),
            version: chart
                .version
                .clone()
                .or_else(|| chart.app_version.clone())
                .unwrap_or_default(),
            upstream: "github.com/cilium/cilium install/kubernetes/cilium".into(),
            commit: None,
            generator: "cargo xtask chart-data".into(),
        },
        has_schema: chart.schema.is_some(),
        keys,
        defaults,
        rules,
    })
}

/// The folder with the real Cilium sources (`shared/cilium`, beside the repository or above a
/// worktree), looked for from `start` upwards. Tests and `cargo xtask chart-data` use it; the
/// product never does.
pub fn find_shared(start: &std::path::Path) -> Option<std::path::PathBuf> {
    start
        .ancestors()
        .map(|a| a.join("shared/cilium"))
        .find(|p| p.join("README.md").is_file())
}

/// The versions of the charts under `shared/cilium`, each with its chart.tar.gz.
pub fn shared_charts(shared: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(shared)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let tgz = e.path().join("chart.tar.gz");
            tgz.is_file()
                .then(|| (e.file_name().to_string_lossy().into_owned(), tgz))
        })
        .collect();
    out.sort();
    out
}

/// The generated data of one chart archive, as committed: pretty JSON with its provenance (the
/// commit from the sources' README table when it names the version).
pub fn generate(
    tgz: &std::path::Path,
    readme: Option<&str>,
) -> Result<String, super::values::ValuesError> {
    let chart = Chart::load(tgz)?;
    let mut data = chart.extract()?;
    let version = data.provenance.version.clone();
    data.provenance.commit = readme.and_then(|text| {
        text.lines().find_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells.get(1) == Some(&version.as_str()))
                .then(|| cells.get(3).map(|c| c.to_string()))
                .flatten()
                .filter(|c| c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        })
    });
    let mut text =
        serde_json::to_string_pretty(&data).map_err(|e| super::values::ValuesError::File {
            file: tgz.display().to_string(),
            message: e.to_string(),
        })?;
    text.push('\n');
    Ok(text)
}

/// What a chart's rules say about some values.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFinding {
    pub file: String,
    pub line: usize,
    pub verdict: gotmpl::Verdict,
    /// Keys whose `true` keeps the rule from applying (read from its `not` conditions).
    pub escape_keys: Vec<String>,
}

/// Judges the values Helm renders with (the chart's defaults coalesced with the user's)
/// against every rule; rules that pass are left out.
pub fn judge(rules: &[ChartRule], effective: &Value) -> Vec<RuleFinding> {
    rules
        .iter()
        .filter_map(|r| {
            let verdict = r.rule.judge(effective);
            (verdict != gotmpl::Verdict::Passes).then(|| RuleFinding {
                file: r.file.clone(),
                line: r.rule.line,
                verdict,
                escape_keys: r.rule.escape_keys(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The committed data is what the generator makes of the real charts.
    #[test]
    #[cfg_attr(
        not(cilium_sources),
        ignore = "needs the real charts in shared/cilium above the repository (not found at build time)"
    )]
    fn regenerating_from_the_real_charts_gives_the_committed_data() {
        let shared =
            find_shared(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).expect("shared/cilium");
        let readme = std::fs::read_to_string(shared.join("README.md")).ok();
        let charts = shared_charts(&shared);
        assert!(!charts.is_empty());
        for (version, tgz) in charts {
            let committed = [&CHART_1_16, &CHART_1_18, &CHART_1_20]
                .into_iter()
                .find(|c| c.version == version)
                .unwrap_or_else(|| panic!("no committed data for the {version} chart"));
            let fresh = generate(&tgz, readme.as_deref()).unwrap();
            assert!(
                fresh == committed.json(),
                "{version}: the committed chart data is stale; run `cargo xtask chart-data`"
            );
        }
    }

    #[test]
    fn the_committed_data_parses_and_says_where_it_came_from() {
        for c in [&CHART_1_16, &CHART_1_18, &CHART_1_20] {
            let data: Extract = serde_json::from_str(c.json()).unwrap();
            assert_eq!(data.provenance.version, c.version);
            assert!(
                data.provenance
                    .upstream
                    .contains("install/kubernetes/cilium")
            );
            assert!(!data.rules.is_empty(), "{}", c.version);
            assert!(
                data.keys.as_object().is_some_and(|m| m.len() > 100),
                "{}",
                c.version
            );
        }
    }

    #[test]
    fn template_references_add_keys_values_yaml_only_comments() {
        let mut tree = key_tree(&json!({
            "loadBalancer": {"acceleration": "disabled"},
            "extraConfig": {},
            "image": "x",
            "hubble": {"enabled": true},
        }));
        for path in values_refs(
            "{{ .Values.kubeProxyReplacement }} {{ $.Values.loadBalancer.mode }} \
             {{ .Values.extraConfig.anything }} {{ .Values.image.tag }} {{ .Values.AsMap }} \
             {{ .Values.l2announcements.leaseDuration }}",
        ) {
            add_key(&mut tree, &path);
        }
        assert_eq!(
            tree,
            json!({
                "loadBalancer": {"acceleration": null, "mode": null},
                "extraConfig": {},
                "image": null,
                "hubble": {"enabled": null},
                "kubeProxyReplacement": null,
                "l2announcements": {"leaseDuration": null},
            })
        );
    }

    #[test]
    fn kept_defaults_keep_truth_and_keys_not_contents() {
        let values = json!({"bpf": {"tproxy": null, "masquerade": false, "datapathMode": "veth"}, "extraEnv": []});
        let mut out = json!({});
        for (path, v) in [
            (vec!["bpf".to_string()], &values["bpf"]),
            (
                vec!["bpf".into(), "datapathMode".into()],
                &values["bpf"]["datapathMode"],
            ),
            (vec!["extraEnv".into()], &values["extraEnv"]),
        ] {
            insert(&mut out, &path, kept(v));
        }
        assert_eq!(
            out,
            json!({"bpf": {"tproxy": null, "masquerade": null, "datapathMode": "veth"}, "extraEnv": []})
        );
    }
}

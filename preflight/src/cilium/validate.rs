//! Values validation before Helm: what the target version's chart rejects or ignores, and
//! combinations that render but cannot work. Pure functions of the target; each rule has a
//! stable id (a check in `checks::values`) and, where a fix is mechanical, a values patch.
use serde_json::{Value, json};

use super::{
    Target, derive,
    releases::{Accepts, RELEASES, RemovedValue},
    values::{as_text, lookup, truthy},
};

/// The chart's text (1.15+ cilium-configmap.yaml) for a kubeProxyReplacement that is neither
/// true nor false.
pub const KPR_CHART_ERROR: &str =
    "kubeProxyReplacement must be explicitly set to a valid value (true or false) to continue.";
use crate::model::Outcome;

/// k3s's default pod CIDR (docs/upstream.md#k3s-and-rancher-desktop): the native-routing CIDR when
/// the node does not say.
pub const K3S_DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

type Judge = Box<dyn Fn(&Target) -> Outcome + Send + Sync>;

pub struct Rule {
    pub id: String,
    pub title: String,
    /// Generic remedy (a finding may give a more specific one).
    pub remedy: String,
    pub judge: Judge,
}

fn rule(
    id: impl Into<String>,
    title: impl Into<String>,
    remedy: impl Into<String>,
    judge: impl Fn(&Target) -> Outcome + Send + Sync + 'static,
) -> Rule {
    Rule {
        id: id.into(),
        title: title.into(),
        remedy: remedy.into(),
        judge: Box::new(judge),
    }
}

/// Every values rule, in report order. The ids are the same for every version; a rule a
/// version does not have skips and says so.
pub fn rules() -> Vec<Rule> {
    let mut rules = vec![
        rule(
            "values.cilium-version",
            "the Cilium version is one preflight knows",
            "give a version preflight knows (see --help), or use a newer preflight",
            super::judged::cilium_version,
        ),
        rule(
            "values.umbrella",
            "the values are the Cilium chart's own (not an umbrella chart's)",
            "pass --values-path cilium for an umbrella chart's values",
            super::judged::umbrella,
        ),
        rule(
            "values.chart-rules",
            "the chart's templates/validate.yaml accepts the values",
            "change the values the chart's messages name",
            super::judged::chart_rules,
        ),
        rule(
            "values.kube-proxy-replacement",
            "kubeProxyReplacement is a value this chart accepts",
            "set `kubeProxyReplacement: false` (keep kube-proxy) or `true`",
            kube_proxy_replacement,
        ),
        rule(
            "values.routing-mode",
            "routingMode and tunnelProtocol are valid",
            "use `routingMode: tunnel|native` and `tunnelProtocol: vxlan|geneve`",
            routing_mode,
        ),
        rule(
            "values.accepted-values",
            "settings that decide capabilities have values the chart accepts",
            "use one of the accepted values named in the finding",
            accepted_values,
        ),
        rule(
            "values.hubble-ui-relay",
            "Hubble UI has Hubble Relay, Relay has Hubble",
            "set `hubble.relay.enabled: true` for the UI and `hubble.enabled: true` for Relay",
            hubble_ui_relay,
        ),
        rule(
            "values.service-monitor-crds",
            "ServiceMonitors have the monitoring.coreos.com/v1 CRDs",
            "install the Prometheus Operator CRDs first, or set \
             `prometheus.serviceMonitor.trustCRDsExist: true` when they will exist at install time",
            service_monitor_crds,
        ),
    ];
    // One rule per agent start-up check any known version has; each judges the target's own.
    let mut seen = Vec::new();
    for start in RELEASES.iter().flat_map(|r| r.start_rules) {
        if seen.contains(&start.id) {
            continue;
        }
        seen.push(start.id);
        let id = start.id;
        rules.push(rule(
            format!("values.agent.{id}"),
            format!("cilium-agent accepts the settings at start ({id})"),
            start.remedy,
            move |t| super::judged::agent_rule(id, t),
        ));
    }
    rules.push(rule(
        "values.duplicate-keys",
        "no key is set twice in one mapping of a values file",
        "delete the earlier setting; Helm keeps the last one silently",
        duplicate_keys,
    ));
    rules.push(rule(
        "values.unknown-keys",
        "every key is one the chart has",
        "fix the key's spelling (the chart ignores keys it does not know, so the default stays)",
        unknown_keys,
    ));
    rules.push(rule(
        "values.multi-document",
        "each values file is one YAML document (Helm 3 reads only the first)",
        "put the later documents in their own files and pass them with -f, in order",
        multi_document,
    ));
    // One rule per removed value any known version has; each judges the target's own list.
    let mut seen = Vec::new();
    for removed in RELEASES.iter().flat_map(|r| r.chart.removed) {
        if seen.contains(&removed.id) {
            continue;
        }
        seen.push(removed.id);
        let id = removed.id;
        rules.push(rule(
            format!("values.removed.{id}"),
            format!("`{}` is not a removed value", removed.path),
            removed.replacement,
            move |t| removed_value(id, t),
        ));
    }
    rules
}

/// Rules preflight keeps for versions whose chart it has not read; with the chart's own rules
/// (values.chart-rules) they would say the same thing twice.
fn judged_by_chart(t: &Target) -> Option<Outcome> {
    t.chart_rules().map(|_| {
        Outcome::skip(format!(
            "judged by {}'s own rules (values.chart-rules)",
            t.chart_label()
        ))
    })
}

/// The findings of every rule, by id: what recommendations are built from.
pub fn judge_all(target: &Target) -> Vec<(String, Outcome)> {
    rules()
        .into_iter()
        .map(|r| (r.id.clone(), (r.judge)(target)))
        .collect()
}

fn version_label(t: &Target) -> String {
    format!("Cilium {}", t.cilium_version)
}

fn removed_value(id: &str, t: &Target) -> Outcome {
    if let Some(skip) = judged_by_chart(t) {
        return skip;
    }
    let Some(removed) = t.release().chart.removed.iter().find(|r| r.id == id) else {
        return Outcome::skip(format!(
            "Cilium {} still reads it, or its chart rules judge it",
            t.cilium_version
        ));
    };
    removed_in_target(removed, t)
}

fn removed_in_target(removed: &RemovedValue, t: &Target) -> Outcome {
    let Some(value) = t.user_value(removed.path) else {
        return Outcome::skip("not set");
    };
    if !t.at_least(removed.removed_in) {
        return Outcome::pass(format!(
            "set, and still read by {} (removed in {}.{})",
            version_label(t),
            removed.removed_in.0,
            removed.removed_in.1
        ));
    }
    let shown = as_text(Some(value)).unwrap_or_else(|| "{…}".into());
    let mut finding = match removed.chart_error {
        Some(error) => Outcome::fail(format!(
            "`{}: {shown}` is rejected by the {} chart: \"{error}\"",
            removed.path,
            version_label(t),
        )),
        None => Outcome::warn(format!(
            "`{}` was removed in {}.{}: the {} chart ignores it",
            removed.path,
            removed.removed_in.0,
            removed.removed_in.1,
            version_label(t)
        )),
    };
    finding = finding.remedy(removed.replacement);
    if removed.id == "tunnel" {
        finding = finding.patch(tunnel_patch(t));
    } else {
        finding = finding.patch(super::values::patch_of(removed.path, Value::Null));
    }
    finding
}

/// The 1.15+ spelling of the user's 1.14 `tunnel:` value; keys the user already set are left
/// alone.
pub fn tunnel_patch(t: &Target) -> Value {
    let old = as_text(t.user_value("tunnel")).unwrap_or_default();
    let mut patch = match old.as_str() {
        "disabled" => json!({
            "tunnel": null,
            "routingMode": "native",
            "autoDirectNodeRoutes": true,
            // k3s's default pod CIDR (docs/upstream.md#k3s-and-rancher-desktop);
            // `values.native-routing-cidr` replaces it with the node's own k3s cluster-cidr when
            // the node says.
            "ipv4NativeRoutingCIDR": K3S_DEFAULT_CLUSTER_CIDR,
        }),
        "geneve" => json!({"tunnel": null, "routingMode": "tunnel", "tunnelProtocol": "geneve"}),
        _ => json!({"tunnel": null, "routingMode": "tunnel", "tunnelProtocol": "vxlan"}),
    };
    // A routingMode the user already chose wins; `tunnel: disabled` then only goes away, and the
    // native-routing settings would contradict a tunnel (the agent refuses both together).
    let chosen = t.user_value("routingMode").and_then(|v| as_text(Some(v)));
    if let Some(m) = patch.as_object_mut() {
        if chosen.is_some_and(|c| c != "native") {
            m.retain(|k, _| k == "tunnel");
        }
        m.retain(|k, _| k == "tunnel" || t.user_value(k).is_none());
    }
    patch
}

fn kube_proxy_replacement(t: &Target) -> Outcome {
    let Some(value) = t.user_value("kubeProxyReplacement") else {
        return Outcome::pass("not set (chart default: kube-proxy kept)");
    };
    let text = as_text(Some(value)).unwrap_or_default();
    if !t.release().chart.kpr_boolean {
        return if matches!(
            text.as_str(),
            "strict" | "partial" | "probe" | "disabled" | "true" | "false"
        ) {
            Outcome::pass(format!("`{text}` is a {} mode", version_label(t)))
        } else {
            Outcome::fail(format!("`kubeProxyReplacement: {text}` is not a 1.14 mode"))
                .remedy("use strict, partial, probe or disabled")
        };
    }
    if matches!(value, Value::Bool(_)) || text == "true" || text == "false" {
        return Outcome::pass(format!("`kubeProxyReplacement: {text}`"));
    }
    let (fix, why) = match text.as_str() {
        "strict" => (true, "strict meant full replacement"),
        "partial" => (
            false,
            "partial only replaced some services; socket LB alone is `socketLB.enabled: true`",
        ),
        "probe" => (
            false,
            "probe enabled what the kernel offered; choose `true` once preflight says go with it",
        ),
        _ => (false, "disabled keeps kube-proxy"),
    };
    Outcome::fail(format!(
        "`kubeProxyReplacement: {text}` is rejected by the {} chart: \"{KPR_CHART_ERROR}\"",
        version_label(t)
    ))
    .remedy(format!("set `kubeProxyReplacement: {fix}` ({why})"))
    .patch(json!({"kubeProxyReplacement": fix}))
}

/// What the chart accepts for the routing settings.
const ROUTING: [(&str, [&str; 2]); 2] = [
    ("routingMode", ["tunnel", "native"]),
    ("tunnelProtocol", ["vxlan", "geneve"]),
];

/// Whether the user's routing settings are ones the chart accepts (an empty string is the
/// chart's default).
pub fn routing_valid(t: &Target) -> bool {
    ROUTING
        .iter()
        .all(|(path, accepted)| match t.user_value(path) {
            None => true,
            Some(Value::String(s)) => s.is_empty() || accepted.contains(&s.as_str()),
            Some(_) => false,
        })
}

fn routing_mode(t: &Target) -> Outcome {
    // Native-routing settings say what a misspelt mode meant: with them, `tunnel` would make
    // the agent refuse `autoDirectNodeRoutes` (values.agent.auto-direct-node-routes).
    let native_intent = truthy(t.value("autoDirectNodeRoutes").as_ref())
        || t.user_value("ipv4NativeRoutingCIDR").is_some();
    let mode_fallback = if native_intent { "native" } else { "tunnel" };
    for (path, accepted, fallback) in [
        ("routingMode", &["tunnel", "native"], mode_fallback),
        ("tunnelProtocol", &["vxlan", "geneve"], "vxlan"),
    ] {
        let Some(value) = t.user_value(path) else {
            continue;
        };
        let text = as_text(Some(value)).unwrap_or_else(|| "{…}".into());
        if matches!(value, Value::String(_)) && (text.is_empty() || accepted.contains(&&*text)) {
            continue;
        }
        let guess = suggestion(&text, accepted);
        let fix = guess.unwrap_or(fallback);
        let mut f = Outcome::fail(format!(
            "`{path}: {text}`{} is neither {} nor {}{}",
            at(t, path),
            accepted[0],
            accepted[1],
            guess
                .map(|g| format!("; did you mean {g}?"))
                .unwrap_or_default()
        ))
        .patch(super::values::patch_of(path, Value::String(fix.into())));
        if guess.is_none() && path == "routingMode" && native_intent {
            f = f.remedy(
                "set `routingMode: native`: autoDirectNodeRoutes/ipv4NativeRoutingCIDR say \
                 native routing was meant",
            );
        }
        return f;
    }
    let routing = derive::routing(&t.effective_values());
    Outcome::pass(format!("{routing:?} routing").to_lowercase())
}

/// A key set twice in one mapping: Helm keeps the last without a word (helm/helm#4107; newer
/// `helm lint` reports it), so the first setting silently does nothing.
fn duplicate_keys(t: &Target) -> Outcome {
    if t.value_texts.is_empty() {
        return Outcome::skip("no values files");
    }
    let found: Vec<String> = t
        .value_texts
        .iter()
        .flat_map(|(file, text)| {
            super::yamlpos::duplicate_keys(text).into_iter().map(move |d| {
                format!(
                    "{file}:{}: `{}` set again (first at line {}); the earlier value is ignored",
                    d.again, d.path, d.first
                )
            })
        })
        .collect();
    if found.is_empty() {
        return Outcome::pass("no key set twice");
    }
    Outcome::warn(found.join("; "))
}

/// Keys the chart does not have: Helm passes them to the templates, which never read them, so
/// the setting silently does nothing. A typo of a key that decides a capability fails (the
/// chart default stays in force, and the verdict would be about another install than the one
/// written); any other unknown key warns. The chart's keys are its values.yaml with --chart;
/// otherwise only the profile's defaults are known, and only capability-key typos are judged.
fn unknown_keys(t: &Target) -> Outcome {
    if t.values.as_object().is_none_or(|m| m.is_empty()) {
        return Outcome::skip("no user values");
    }
    // The chart's key set (values.yaml and every key its templates read) when preflight has
    // the chart; otherwise only the defaults of the keys preflight reads.
    let (chart, complete) = match t.chart_keys() {
        Some(keys) => (keys.clone(), true),
        None => (t.chart_defaults_value(), false),
    };
    // Removed values have their own rules, with the replacement spelled out.
    let removed: Vec<&str> = t
        .release()
        .chart
        .removed
        .iter()
        .filter(|r| t.at_least(r.removed_in))
        .map(|r| r.path)
        .collect();
    let capability_keys = t.release().capability_keys();
    let found = super::keys::unknown_keys(&t.values, &chart, complete, &removed, &capability_keys);
    let chart_name = t.chart_label();
    if found.is_empty() {
        return Outcome::pass(if complete {
            format!("every key is one {chart_name} has (values.yaml or read by its templates)")
        } else {
            "no key is a misspelling of a setting that decides a capability (give --chart to \
             judge every key)"
                .to_string()
        });
    }
    let mut blocking = Vec::new();
    let mut other = Vec::new();
    let mut patch = json!({});
    for u in &found {
        let at = at(t, &u.path);
        match (&u.capability, &u.near) {
            // The misspelt key does nothing, but what it says is what the chart does anyway:
            // the verdict is about the install written, so it only warns.
            (Some(meant), _)
                if t.user_value(meant).is_none()
                    && same_to_the_chart(t.user_value(&u.path), t.value(meant).as_ref()) =>
            {
                other.push(format!(
                    "`{}`{at} (did you mean `{meant}`? its value is the chart's default anyway)",
                    u.path
                ));
            }
            (Some(meant), _) => {
                blocking.push(format!(
                    "`{}`{at} is not a key of {chart_name}; did you mean `{meant}`? The chart \
                     ignores it and keeps its default",
                    u.path
                ));
                // Move the value to the key meant, unless the user set that one too (then
                // which to keep is theirs to say).
                if t.user_value(meant).is_none()
                    && let Some(v) = t.user_value(&u.path)
                {
                    super::values::merge(&mut patch, super::values::patch_of(&u.path, Value::Null));
                    super::values::merge(&mut patch, super::values::patch_of(meant, v.clone()));
                }
            }
            (None, Some(near)) => other.push(format!("`{}`{at} (did you mean `{near}`?)", u.path)),
            (None, None) => other.push(format!("`{}`{at}", u.path)),
        }
    }
    if blocking.is_empty() {
        return Outcome::warn(format!(
            "not keys of {chart_name}, so they do nothing: {}",
            other.join(", ")
        ));
    }
    if !other.is_empty() {
        blocking.push(format!("also unknown: {}", other.join(", ")));
    }
    let f = Outcome::fail(blocking.join("; "))
        .remedy("rename each key to the one meant; the chart ignores the misspelt one");
    if patch.as_object().is_some_and(|m| !m.is_empty()) {
        f.patch(patch)
    } else {
        f
    }
}

/// Two values the chart's templates render alike (`false` and `"false"` are one
/// `kubeProxyReplacement`: the chart compares `toString`).
fn same_to_the_chart(a: Option<&Value>, b: Option<&Value>) -> bool {
    let show = |v: Option<&Value>| v.map(super::gotmpl::display).unwrap_or_default();
    a.is_some() && show(a) == show(b)
}

/// A values file with several YAML documents: Helm 4 merges them in order, as if each were its
/// own `-f` file (`LoadValues`, pkg/chart/v2/loader/load.go; helm/helm#13655), and preflight
/// judges that; Helm 3 read only the first and dropped the rest without a word (helm/helm#13097).
/// Which one installs is not known here, so a later document that sets anything is a warning
/// naming the line it starts on. Empty documents (a trailing `---`) change nothing in either.
fn multi_document(t: &Target) -> Outcome {
    if t.value_texts.is_empty() {
        return Outcome::skip("no values files");
    }
    let mut found = Vec::new();
    for (file, text) in &t.value_texts {
        let lines: Vec<&str> = text.lines().collect();
        let starts = super::yamlpos::document_starts(text);
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).map_or(lines.len(), |&next| next - 1);
            let sets_something = lines
                .get(start - 1..end)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(j, l)| if j == 0 { &l[3..] } else { *l })
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if sets_something {
                found.push(format!("{file}:{start}"));
            }
        }
    }
    if found.is_empty() {
        return Outcome::pass("each values file is one YAML document");
    }
    Outcome::warn(format!(
        "another YAML document starts at {}: Helm 4 merges the documents in order (as judged \
         here), Helm 3 reads only the first and ignores the rest",
        found.join(", ")
    ))
}

/// The accepted value a typo most likely meant: a close edit, a value spelled out with more
/// words (`native-routing`, `vxlan-tunnel`), or an abbreviation whose letters appear in order
/// (`wg` → `wireguard`).
fn suggestion<'a>(given: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let given = given.trim().to_ascii_lowercase();
    if given.is_empty() {
        return None;
    }
    let words: Vec<&str> = given
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut containing = accepted.iter().filter(|a| words.contains(a));
    if let (Some(one), None) = (containing.next(), containing.next()) {
        return Some(one);
    }
    let in_order = |word: &str| {
        let mut chars = word.chars();
        given.chars().all(|g| chars.any(|c| c == g))
    };
    accepted
        .iter()
        .map(|a| (strsim::damerau_levenshtein(&given, a), *a))
        .filter(|(d, a)| *d <= 2 || (given.len() >= 2 && given.starts_with(&a[..1]) && in_order(a)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// ` (at file:line)` / ` (--set a=b)` for a user value, empty for a chart default.
fn at(t: &Target, path: &str) -> String {
    t.origin(path)
        .map(|o| format!(" (at {o})"))
        .unwrap_or_default()
}

/// The settings that decide capabilities, with the values the chart accepts (the release table's
/// per-capability `accepts`; values.yaml of each chart, docs/upstream.md#node-requirements).
/// `routingMode`, `tunnelProtocol` and `kubeProxyReplacement` have their own rules.
pub fn settings(t: &Target) -> Vec<(&'static str, Accepts)> {
    let mut out: Vec<(&'static str, Accepts)> = Vec::new();
    for c in t.release().capabilities {
        for (path, accepts) in c.accepts {
            if !out.iter().any(|(p, _)| p == path) {
                out.push((path, *accepts));
            }
        }
    }
    out
}

fn accepted_values(t: &Target) -> Outcome {
    let mut problems = Vec::new();
    let mut patch = json!({});
    for (path, accepts) in settings(t) {
        let Some(value) = t.user_value(path) else {
            continue;
        };
        let text = as_text(Some(value)).unwrap_or_else(|| "{…}".into());
        let (ok, accepted, fix): (bool, String, Option<Value>) = match accepts {
            Accepts::Bool => {
                // A string is truthy in the chart's templates whatever it says ("false" too).
                let fix = match text.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" => Some(Value::Bool(true)),
                    "false" | "no" | "off" => Some(Value::Bool(false)),
                    _ => None,
                };
                (
                    value.is_boolean(),
                    "a boolean: true or false (unquoted; the chart's templates treat any \
                     non-empty string as true)"
                        .into(),
                    fix,
                )
            }
            Accepts::OneOf(list) => (
                matches!(value, Value::String(s) if list.contains(&s.as_str())),
                format!("one of {}", list.join(", ")),
                suggestion(&text, list).map(|s| Value::String(s.into())),
            ),
        };
        if ok {
            continue;
        }
        let guess = match (&fix, accepts) {
            (Some(v), Accepts::OneOf(_)) => {
                format!("; did you mean {}?", as_text(Some(v)).unwrap_or_default())
            }
            (Some(v), Accepts::Bool) => format!("; did you mean {v}?"),
            _ => String::new(),
        };
        problems.push(format!(
            "`{path}: {}`{} is not {accepted}{guess}",
            if value.is_string() && matches!(accepts, Accepts::Bool) {
                format!("\"{text}\"")
            } else {
                text.clone()
            },
            at(t, path)
        ));
        if let Some(v) = fix {
            super::values::merge(&mut patch, super::values::patch_of(path, v));
        }
    }
    if problems.is_empty() {
        return Outcome::pass("every setting that decides a capability has an accepted value");
    }
    let mut f = Outcome::fail(problems.join("; "))
        .remedy("set each to one of the accepted values named; capabilities are derived from them");
    if patch.as_object().is_some_and(|m| !m.is_empty()) {
        f = f.patch(patch);
    }
    f
}

fn hubble_ui_relay(t: &Target) -> Outcome {
    if let Some(skip) = judged_by_chart(t) {
        return skip;
    }
    let v = t.effective_values();
    let on = |p: &str| truthy(lookup(&v, p));
    if on("hubble.ui.enabled") && !on("hubble.relay.enabled") {
        return Outcome::fail("Hubble UI is enabled but Hubble Relay is not; the chart refuses it")
            .remedy("set `hubble.relay.enabled: true`")
            .patch(json!({"hubble": {"relay": {"enabled": true}}}));
    }
    if on("hubble.relay.enabled") && !on("hubble.enabled") {
        return Outcome::fail("Hubble Relay is enabled but Hubble is not; the chart refuses it")
            .remedy("set `hubble.enabled: true`")
            .patch(json!({"hubble": {"enabled": true}}));
    }
    Outcome::pass("consistent")
}

/// Where the chart has ServiceMonitors (each with a `trustCRDsExist` sibling).
pub const SERVICE_MONITORS: &[&str] = &[
    "prometheus.serviceMonitor",
    "operator.prometheus.serviceMonitor",
    "hubble.metrics.serviceMonitor",
    "hubble.relay.prometheus.serviceMonitor",
    "envoy.prometheus.serviceMonitor",
    "clustermesh.apiserver.metrics.serviceMonitor",
];

/// The ServiceMonitors the chart's guard covers (templates/validate.yaml of 1.16–1.20: each
/// with its `prometheus.enabled` parent) and the one key the guard reads to trust that the CRDs
/// will exist (docs/upstream.md#rejected-values).
const GUARDED_MONITORS: &[&str] = &[
    "prometheus",
    "operator.prometheus",
    "envoy.prometheus",
    "hubble.relay.prometheus",
];
const TRUST_CRDS: &str = "prometheus.serviceMonitor.trustCRDsExist";

fn service_monitor_crds(t: &Target) -> Outcome {
    if let Some(skip) = judged_by_chart(t) {
        return skip;
    }
    let v = t.effective_values();
    let on = |p: &str| truthy(lookup(&v, p));
    let guarded: Vec<String> = GUARDED_MONITORS
        .iter()
        .filter(|m| on(&format!("{m}.enabled")) && on(&format!("{m}.serviceMonitor.enabled")))
        .map(|m| format!("{m}.serviceMonitor.enabled"))
        .collect();
    if guarded.is_empty() {
        return Outcome::pass("no ServiceMonitor the chart's guard checks is enabled");
    }
    if on(TRUST_CRDS) {
        return Outcome::pass(format!(
            "{} with `{TRUST_CRDS}: true`: the chart trusts the CRDs to exist at install time",
            guarded.join(", ")
        ));
    }
    // A node cannot list the cluster's CRDs: the chart's `.Capabilities` check decides.
    Outcome::warn(format!(
        "{} need the monitoring.coreos.com/v1 CRDs; the chart fails unless the cluster has them",
        guarded.join(", ")
    ))
    .remedy(format!(
        "install the Prometheus Operator CRDs before Cilium, or if they will exist at install \
         time: --set {TRUST_CRDS}=true (the only key the chart's check reads)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cilium::values::merge, model::Status};

    fn target(version: &str, values: Value) -> Target {
        let mut t = Target::chart_defaults(version);
        t.values = values;
        t.capabilities = derive::capabilities(&t.effective_values());
        t
    }

    fn finding(t: &Target, id: &str) -> Outcome {
        judge_all(t)
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("no rule {id}"))
    }

    #[test]
    fn per_version_rules_quote_the_chart() {
        let table: &[(&str, Value, &str, Status, &str)] = &[
            // 1.16: the chart's own validate.yaml (generated data) rejects removed values.
            (
                "1.16.4",
                json!({"tunnel": "disabled"}),
                "values.chart-rules",
                Status::Fail,
                "tunnel was deprecated in v1.14 and has been removed in v1.15",
            ),
            (
                "1.16.4",
                json!({"tunnel": "disabled"}),
                "values.removed.tunnel",
                Status::Skip,
                "values.chart-rules",
            ),
            // 1.17 has no generated chart data: the known texts, also a failure.
            (
                "1.17",
                json!({"tunnel": "disabled"}),
                "values.removed.tunnel",
                Status::Fail,
                "has been removed in v1.15",
            ),
            (
                "1.14.0",
                json!({"tunnel": "disabled"}),
                "values.removed.tunnel",
                Status::Skip,
                "still reads it",
            ),
            (
                "1.15",
                json!({"kubeProxyReplacement": "strict"}),
                "values.kube-proxy-replacement",
                Status::Fail,
                KPR_CHART_ERROR,
            ),
            (
                "1.14",
                json!({"kubeProxyReplacement": "strict"}),
                "values.kube-proxy-replacement",
                Status::Pass,
                "1.14",
            ),
            (
                "1.18",
                json!({"kubeProxyReplacement": true}),
                "values.kube-proxy-replacement",
                Status::Pass,
                "true",
            ),
            (
                "1.17",
                json!({"encryption": {"keyFile": "k"}}),
                "values.removed.encryption-key-file",
                Status::Fail,
                "has been removed in v1.16",
            ),
            (
                "1.15",
                json!({"encryption": {"keyFile": "k"}}),
                "values.removed.encryption-key-file",
                Status::Skip,
                "still reads it",
            ),
            (
                "1.19",
                json!({"hubble": {"ui": {"enabled": true}}}),
                "values.hubble-ui-relay",
                Status::Fail,
                "Relay",
            ),
            (
                "1.20",
                json!({"hubble": {"ui": {"enabled": true}}}),
                "values.chart-rules",
                Status::Fail,
                "Hubble UI requires .Values.hubble.relay.enabled=true",
            ),
            (
                "1.19",
                json!({"hubble": {"enabled": false, "relay": {"enabled": true}}}),
                "values.hubble-ui-relay",
                Status::Fail,
                "Hubble is not",
            ),
            (
                "1.19",
                json!({"tunnelProtocol": "gre"}),
                "values.routing-mode",
                Status::Fail,
                "gre",
            ),
            (
                "1.19",
                json!({"encryption": {"enabled": true, "type": "wg"}}),
                "values.accepted-values",
                Status::Fail,
                "`encryption.type: wg` is not one of wireguard, ipsec; did you mean wireguard?",
            ),
            (
                "1.19",
                json!({"hubble": {"relay": {"enabled": "notabool"}}}),
                "values.accepted-values",
                Status::Fail,
                "`hubble.relay.enabled: \"notabool\"` is not a boolean: true or false",
            ),
            (
                "1.19",
                json!({"bpf": {"datapathMode": "netkit-l2"}, "l7Proxy": false,
                       "loadBalancer": {"acceleration": "best-effort"}}),
                "values.accepted-values",
                Status::Pass,
                "accepted value",
            ),
            (
                "1.19",
                json!({"loadBalancer": {"acceleration": "xdp"}}),
                "values.accepted-values",
                Status::Fail,
                "one of disabled, native, best-effort",
            ),
            (
                "1.19",
                json!({"routingMode": "nativ"}),
                "values.routing-mode",
                Status::Fail,
                "did you mean native?",
            ),
            (
                "1.16.99",
                json!({}),
                "values.cilium-version",
                Status::Warn,
                "newer than the newest 1.16 release preflight knows (1.16.15)",
            ),
            (
                "1.20.2",
                json!({}),
                "values.cilium-version",
                Status::Pass,
                "1.20.2",
            ),
        ];
        for (version, values, id, status, text) in table {
            let f = finding(&target(version, values.clone()), id);
            assert_eq!(f.status, *status, "{version} {values} {id}: {f:?}");
            assert!(f.detail.contains(text), "{version} {values} {id}: {f:?}");
        }
    }

    /// Class 1: what the 1.16 chart's validate.yaml rejects fails (it used to be an "ignored"
    /// warning), with the chart's own message and file:line.
    #[test]
    fn values_the_chart_rejects_fail_with_its_message_and_line() {
        for values in [
            json!({"endpointStatus": {"enabled": true}}),
            json!({"remoteNodeIdentity": true}),
            json!({"containerRuntime": {"integration": "containerd"}}),
            json!({"etcd": {"managed": true}}),
            json!({"encryption": {"keyFile": "keys"}}),
            json!({"proxy": {"prometheus": {"enabled": true}}}),
        ] {
            let t = target("1.16.4", values.clone());
            let f = finding(&t, "values.chart-rules");
            assert_eq!(f.status, Status::Fail, "{values}: {f:?}");
            assert!(
                f.detail.contains("templates/validate.yaml:")
                    && f.detail.contains("removed in v1.16"),
                "{values}: {}",
                f.detail
            );
            // The patch deletes what the chart rejects, and the chart then accepts it.
            let mut fixed = t.values.clone();
            merge(&mut fixed, f.patch.clone().expect("a patch"));
            let after = finding(&target("1.16.4", fixed), "values.chart-rules");
            assert_ne!(after.status, Status::Fail, "{values}: {after:?}");
        }
    }

    /// Class 2: DSR with the VXLAN tunnel, and GENEVE without geneve dispatch, fail with the
    /// agent's own message and the version that enforces it.
    #[test]
    fn dsr_with_a_tunnel_fails_as_the_agent_refuses_it() {
        let vxlan = json!({"kubeProxyReplacement": true, "loadBalancer": {"mode": "dsr"}});
        let f = finding(&target("1.20", vxlan), "values.agent.dsr-vxlan");
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.detail
                .contains("Node Port \"dsr\" mode cannot be used with vxlan tunneling.")
                && f.detail.contains("enforced since Cilium 1.14"),
            "{}",
            f.detail
        );
        assert_eq!(f.patch, Some(json!({"loadBalancer": {"mode": "snat"}})));
        let geneve = json!({"kubeProxyReplacement": true, "tunnelProtocol": "geneve",
                            "loadBalancer": {"mode": "hybrid"}});
        let f = finding(
            &target("1.19", geneve.clone()),
            "values.agent.dsr-geneve-dispatch",
        );
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.detail.contains("requires geneve dispatch"),
            "{}",
            f.detail
        );
        let mut fixed = geneve;
        merge(&mut fixed, f.patch.unwrap());
        let after = target("1.19", fixed);
        assert_eq!(
            finding(&after, "values.agent.dsr-geneve-dispatch").status,
            Status::Pass
        );
        assert_eq!(
            finding(&after, "values.agent.dsr-vxlan").status,
            Status::Pass
        );
        // DSR in native routing, or SNAT in a tunnel: accepted.
        for ok in [
            json!({"kubeProxyReplacement": true, "routingMode": "native", "loadBalancer": {"mode": "dsr"}}),
            json!({"kubeProxyReplacement": true, "loadBalancer": {"mode": "snat"}}),
            json!({"loadBalancer": {"mode": "dsr"}}),
        ] {
            assert_eq!(
                finding(&target("1.20", ok.clone()), "values.agent.dsr-vxlan").status,
                Status::Pass,
                "{ok}"
            );
        }
        // 1.17's agent says it in its older words.
        let f = finding(
            &target(
                "1.17",
                json!({"kubeProxyReplacement": true, "tunnelProtocol": "geneve", "loadBalancer": {"mode": "dsr"}}),
            ),
            "values.agent.dsr-geneve-dispatch",
        );
        assert!(
            f.detail
                .contains("with opt dispatch cannot be used with geneve tunneling"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn netkit_without_bpf_host_routing_is_refused_from_1_20() {
        let netkit = json!({"bpf": {"datapathMode": "netkit"}});
        let f = finding(
            &target("1.20", netkit.clone()),
            "values.agent.netkit-host-routing",
        );
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.detail.contains("enforced since Cilium 1.20"),
            "{}",
            f.detail
        );
        assert_eq!(
            finding(&target("1.19", netkit), "values.agent.netkit-host-routing").status,
            Status::Skip
        );
        let routed = json!({"bpf": {"datapathMode": "netkit", "masquerade": true},
                            "kubeProxyReplacement": true});
        assert_eq!(
            finding(&target("1.20", routed), "values.agent.netkit-host-routing").status,
            Status::Pass
        );
    }

    /// Class 3: the ServiceMonitor guard reads only prometheus.serviceMonitor.trustCRDsExist;
    /// the remedy names only that key, and setting it passes, in the chart's own rule too.
    #[test]
    fn service_monitor_remedy_names_the_key_the_chart_reads() {
        let monitors = json!({"prometheus": {"enabled": true, "serviceMonitor": {"enabled": true}},
                              "operator": {"prometheus": {"enabled": true, "serviceMonitor": {"enabled": true}}}});
        for (version, id) in [
            ("1.19", "values.service-monitor-crds"),
            ("1.18.3", "values.chart-rules"),
        ] {
            let f = finding(&target(version, monitors.clone()), id);
            assert_eq!(f.status, Status::Warn, "{version}: {f:?}");
            let remedy = f.remedy.unwrap_or_default();
            assert!(
                remedy.contains("prometheus.serviceMonitor.trustCRDsExist"),
                "{remedy}"
            );
            assert!(
                !remedy.contains("operator.prometheus.serviceMonitor.trustCRDsExist"),
                "{remedy}"
            );
            let mut trusted = monitors.clone();
            merge(
                &mut trusted,
                json!({"prometheus": {"serviceMonitor": {"trustCRDsExist": true}}}),
            );
            assert_eq!(
                finding(&target(version, trusted), id).status,
                Status::Pass,
                "{version}"
            );
        }
    }

    /// Class 5: `native-routing` is read as `native` (autoDirectNodeRoutes says so), not
    /// patched to `tunnel`, which the agent would refuse with autoDirectNodeRoutes.
    #[test]
    fn a_misspelt_routing_mode_is_patched_to_what_was_meant() {
        let t = target(
            "1.20",
            json!({"routingMode": "native-routing", "autoDirectNodeRoutes": true}),
        );
        let f = finding(&t, "values.routing-mode");
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.patch, Some(json!({"routingMode": "native"})));
        let mut fixed = t.values.clone();
        merge(&mut fixed, f.patch.unwrap());
        let after = target("1.20", fixed);
        for (id, f) in judge_all(&after) {
            assert_ne!(f.status, Status::Fail, "{id}: {f:?}");
        }
        // Without native-routing settings a typo that names nothing falls back to the default.
        let f = finding(
            &target("1.20", json!({"routingMode": "overlay"})),
            "values.routing-mode",
        );
        assert_eq!(f.patch, Some(json!({"routingMode": "tunnel"})));
    }

    /// Class 8: a misspelt capability key whose value is the default anyway does not fail.
    #[test]
    fn a_misspelling_that_changes_nothing_warns() {
        let f = finding(
            &target("1.20", json!({"kubeProxyReplacment": false})),
            "values.unknown-keys",
        );
        assert_eq!(f.status, Status::Warn, "{f:?}");
        let f = finding(
            &target("1.20", json!({"kubeProxyReplacment": true})),
            "values.unknown-keys",
        );
        assert_eq!(f.status, Status::Fail, "{f:?}");
    }

    /// Class 4: keys the templates read but values.yaml only mentions in comments are keys.
    #[test]
    fn keys_only_in_comments_but_read_by_templates_are_known() {
        let values = json!({"kubeProxyReplacement": true, "k8sServiceHost": "10.0.0.1",
                            "loadBalancer": {"mode": "dsr"}, "routingMode": "native",
                            "ipv4NativeRoutingCIDR": "10.42.0.0/16", "devices": "eth0",
                            "l2announcements": {"enabled": true}, "hostServices": {"enabled": true}});
        for version in ["1.16.4", "1.18.3", "1.20"] {
            let f = finding(&target(version, values.clone()), "values.unknown-keys");
            assert_eq!(f.status, Status::Pass, "{version}: {f:?}");
        }
        let f = finding(
            &target("1.20", json!({"loadBalancer": {"mdoe": "dsr"}})),
            "values.unknown-keys",
        );
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.detail.contains("did you mean `mode`"), "{}", f.detail);
    }

    #[test]
    fn fixes_make_the_rule_pass() {
        for (version, values) in [
            ("1.16.4", json!({"tunnel": "disabled"})),
            ("1.16.4", json!({"tunnel": "geneve"})),
            ("1.17", json!({"tunnel": "disabled"})),
            ("1.15", json!({"kubeProxyReplacement": "partial"})),
            ("1.19", json!({"hubble": {"ui": {"enabled": true}}})),
            ("1.20", json!({"hubble": {"ui": {"enabled": true}}})),
            (
                "1.19",
                json!({"encryption": {"type": "wg"}, "l7Proxy": "false"}),
            ),
            ("1.19", json!({"tunnelProtocol": "genev"})),
            ("1.19", json!({"autoDirectNodeRoutes": true})),
            (
                "1.17",
                json!({"tunnel": "disabled", "routingMode": "tunnel"}),
            ),
        ] {
            let t = target(version, values.clone());
            for (id, f) in judge_all(&t) {
                if f.status != Status::Fail {
                    continue;
                }
                let patch = f.patch.clone().expect("a failing rule offers a patch");
                let mut fixed = t.values.clone();
                merge(&mut fixed, patch);
                let after = finding(&target(version, fixed), &id);
                assert_ne!(after.status, Status::Fail, "{values} {id}: {after:?}");
            }
        }
    }

    /// Every key a remedy or patch names, for every version with chart data, is a key that
    /// version's chart reads.
    #[test]
    fn every_suggested_key_is_one_the_chart_reads() {
        use crate::cilium::releases::RELEASES;
        let has = |keys: &Value, path: &str| {
            let mut cur = keys;
            for part in path.split('.') {
                match cur {
                    Value::Object(m) if m.is_empty() => return true,
                    Value::Object(m) => match m.get(part) {
                        Some(next) => cur = next,
                        None => return false,
                    },
                    _ => return true,
                }
            }
            true
        };
        let patch_keys = |p: &Value| {
            fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
                if let Value::Object(m) = v
                    && !m.is_empty()
                {
                    for (k, v) in m {
                        let p = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&p, v, out);
                    }
                } else if !v.is_null() {
                    out.push(prefix.to_string());
                }
            }
            let mut out = Vec::new();
            walk("", p, &mut out);
            out
        };
        // `key: value` and dotted `a.b` spans of a remedy (not lone values like `true`).
        let backticked = |text: &str| -> Vec<String> {
            let parts: Vec<&str> = text.split('`').collect();
            parts
                .iter()
                .enumerate()
                .skip(1)
                .step_by(2)
                // "remove `x`" names the key to delete, not one to set.
                .filter(|(i, _)| !parts[i - 1].trim_end().ends_with("remove"))
                .map(|(_, s)| *s)
                .filter(|s| s.contains(':') || s.contains('.'))
                .filter_map(|s| s.split(':').next())
                .map(|k| k.trim().to_string())
                .filter(|k| {
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
                })
                .filter(|k| k.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .collect()
        };
        for release in RELEASES.iter().filter(|r| r.chart.data.is_some()) {
            let keys = &release.chart.data.unwrap().get().keys;
            let mut suggested: Vec<(String, String)> = Vec::new();
            for c in release.capabilities {
                for k in c.keys.iter().chain(c.accepts.iter().map(|(k, _)| k)) {
                    suggested.push((format!("capability {}", c.capability), k.to_string()));
                }
                if let Some(f) = c.fallback {
                    let p: Value = serde_json::from_str(f.patch).unwrap();
                    for k in patch_keys(&p) {
                        suggested.push((format!("fallback {}", c.capability), k));
                    }
                }
            }
            for rule in release.start_rules {
                for k in backticked(rule.remedy) {
                    suggested.push((format!("agent rule {}", rule.id), k));
                }
            }
            for r in rules() {
                for k in backticked(&r.remedy) {
                    suggested.push((r.id.clone(), k));
                }
            }
            for (from, key) in suggested {
                // Keys of versions this one removed are not suggested to it.
                if key == "tunnel" {
                    continue;
                }
                assert!(
                    has(keys, &key),
                    "Cilium {}: {from} names `{key}`, which the chart does not read",
                    release.label()
                );
            }
        }
    }
}

//! Values validation before Helm: what the target version's chart rejects or ignores, and
//! combinations that render but cannot work. Pure functions of the target; each rule has a
//! stable id (a check in `checks::values`) and, where a fix is mechanical, a values patch.
use serde_json::{Value, json};

use super::{
    Target, derive,
    profiles::{KPR_BOOLEAN_SINCE, KPR_CHART_ERROR, REMOVED_VALUES, RemovedValue, RuleEffect},
    values::{as_text, lookup, truthy},
};
use crate::model::Status;

/// k3s's default pod CIDR (FACTS §5): the native-routing CIDR when the node does not say.
pub const K3S_DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// One rule's judgement of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub status: Status,
    pub detail: String,
    pub remedy: Option<String>,
    /// Values to merge over the user's to fix it (`null` deletes a key).
    pub patch: Option<Value>,
}

impl Finding {
    fn new(status: Status, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            remedy: None,
            patch: None,
        }
    }
    pub fn pass(detail: impl Into<String>) -> Self {
        Self::new(Status::Pass, detail)
    }
    pub fn skip(detail: impl Into<String>) -> Self {
        Self::new(Status::Skip, detail)
    }
    pub fn fail(detail: impl Into<String>) -> Self {
        Self::new(Status::Fail, detail)
    }
    pub fn warn(detail: impl Into<String>) -> Self {
        Self::new(Status::Warn, detail)
    }
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
    pub fn patch(mut self, patch: Value) -> Self {
        self.patch = Some(patch);
        self
    }
}

type Judge = Box<dyn Fn(&Target) -> Finding + Send + Sync>;

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
    judge: impl Fn(&Target) -> Finding + Send + Sync + 'static,
) -> Rule {
    Rule {
        id: id.into(),
        title: title.into(),
        remedy: remedy.into(),
        judge: Box::new(judge),
    }
}

/// Every values rule, in report order.
pub fn rules() -> Vec<Rule> {
    let mut rules = vec![
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
            "values.k8s-service-host",
            "kube-proxy replacement can reach the API server without kube-proxy",
            "set `k8sServiceHost` and `k8sServicePort` to the API server (k3s: the server's IP, 6443)",
            k8s_service_host,
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
            "install the Prometheus Operator CRDs first, or set `trustCRDsExist: true` next to each \
             serviceMonitor.enabled when they will exist at install time",
            service_monitor_crds,
        ),
    ];
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
    for removed in REMOVED_VALUES {
        rules.push(rule(
            format!("values.removed.{}", removed.id),
            format!("`{}` is not a removed value", removed.path),
            removed.replacement,
            move |t| removed_value(removed, t),
        ));
    }
    rules
}

/// The findings of every rule, by id: what recommendations are built from.
pub fn judge_all(target: &Target) -> Vec<(String, Finding)> {
    rules()
        .into_iter()
        .map(|r| (r.id.clone(), (r.judge)(target)))
        .collect()
}

fn version_label(t: &Target) -> String {
    format!("Cilium {}", t.cilium_version)
}

fn removed_value(removed: &RemovedValue, t: &Target) -> Finding {
    let Some(value) = t.user_value(removed.path) else {
        return Finding::skip("not set");
    };
    if !t.at_least(removed.removed_in) {
        return Finding::pass(format!(
            "set, and still read by {} (removed in {}.{})",
            version_label(t),
            removed.removed_in.0,
            removed.removed_in.1
        ));
    }
    let shown = as_text(Some(value)).unwrap_or_else(|| "{…}".into());
    let (mut finding, what) = match removed.effect {
        RuleEffect::Reject => (
            Finding::fail(format!(
                "`{}: {shown}` is rejected by the {} chart: \"{}\"",
                removed.path,
                version_label(t),
                removed.chart_error.unwrap_or("removed value")
            )),
            "rejected",
        ),
        RuleEffect::Ignored => (
            Finding::warn(format!(
                "`{}` was removed in {}.{}: the {} chart ignores it",
                removed.path,
                removed.removed_in.0,
                removed.removed_in.1,
                version_label(t)
            )),
            "ignored",
        ),
    };
    let _ = what;
    finding = finding.remedy(removed.replacement);
    if removed.id == "tunnel" {
        finding = finding.patch(tunnel_patch(&shown, t));
    } else {
        finding = finding.patch(super::values::patch_of(removed.path, Value::Null));
    }
    finding
}

/// The 1.15+ spelling of a 1.14 `tunnel:` value; keys the user already set are left alone.
fn tunnel_patch(old: &str, t: &Target) -> Value {
    let mut patch = match old {
        "disabled" => json!({
            "tunnel": null,
            "routingMode": "native",
            "autoDirectNodeRoutes": true,
            // k3s's default pod CIDR (FACTS §5); `values.native-routing-cidr` replaces it with
            // the node's own k3s cluster-cidr when the node says.
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

/// `autoDirectNodeRoutes: true` in a tunnel: cilium-agent exits at start-up
/// (daemon/cmd/daemon_main.go: "auto-direct-node-routes cannot be used with tunneling").
fn auto_direct_routes_in_tunnel(t: &Target) -> Option<Finding> {
    let effective = t.effective_values();
    if !truthy(lookup(&effective, "autoDirectNodeRoutes")) {
        return None;
    }
    let routing = derive::routing(&effective);
    if routing == derive::Routing::Native {
        return None;
    }
    Some(
        Finding::fail(format!(
            "`autoDirectNodeRoutes: true`{} with {} tunnel routing: the agent exits at start-up \
             with \"auto-direct-node-routes cannot be used with tunneling. Packets must be routed \
             through the tunnel device.\"",
            at(t, "autoDirectNodeRoutes"),
            format!("{routing:?}").to_lowercase()
        ))
        .remedy(
            "set `autoDirectNodeRoutes: false` (a tunnel routes between nodes itself), or use \
             `routingMode: native` with `ipv4NativeRoutingCIDR: <pod CIDR>`",
        )
        .patch(json!({"autoDirectNodeRoutes": false})),
    )
}

fn kube_proxy_replacement(t: &Target) -> Finding {
    let Some(value) = t.user_value("kubeProxyReplacement") else {
        return Finding::pass("not set (chart default: kube-proxy kept)");
    };
    let text = as_text(Some(value)).unwrap_or_default();
    if !t.at_least(KPR_BOOLEAN_SINCE) {
        return if matches!(
            text.as_str(),
            "strict" | "partial" | "probe" | "disabled" | "true" | "false"
        ) {
            Finding::pass(format!("`{text}` is a {} mode", version_label(t)))
        } else {
            Finding::fail(format!("`kubeProxyReplacement: {text}` is not a 1.14 mode"))
                .remedy("use strict, partial, probe or disabled")
        };
    }
    if matches!(value, Value::Bool(_)) || text == "true" || text == "false" {
        return Finding::pass(format!("`kubeProxyReplacement: {text}`"));
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
    Finding::fail(format!(
        "`kubeProxyReplacement: {text}` is rejected by the {} chart: \"{KPR_CHART_ERROR}\"",
        version_label(t)
    ))
    .remedy(format!("set `kubeProxyReplacement: {fix}` ({why})"))
    .patch(json!({"kubeProxyReplacement": fix}))
}

fn routing_mode(t: &Target) -> Finding {
    for (path, accepted, fallback) in [
        ("routingMode", &["tunnel", "native"], "tunnel"),
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
        let mut f = Finding::fail(format!(
            "`{path}: {text}`{} is neither {} nor {}{}",
            at(t, path),
            accepted[0],
            accepted[1],
            guess
                .map(|g| format!("; did you mean {g}?"))
                .unwrap_or_default()
        ));
        f = f.patch(super::values::patch_of(
            path,
            Value::String(guess.unwrap_or(fallback).into()),
        ));
        return f;
    }
    if let Some(contradiction) = auto_direct_routes_in_tunnel(t) {
        return contradiction;
    }
    let routing = derive::routing(&t.effective_values());
    Finding::pass(format!("{routing:?} routing").to_lowercase())
}

/// A key set twice in one mapping: Helm keeps the last without a word (helm/helm#4107; newer
/// `helm lint` reports it), so the first setting silently does nothing.
fn duplicate_keys(t: &Target) -> Finding {
    if t.value_texts.is_empty() {
        return Finding::skip("no values files");
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
        return Finding::pass("no key set twice");
    }
    Finding::warn(found.join("; "))
}

/// Keys the chart does not have: Helm passes them to the templates, which never read them, so
/// the setting silently does nothing. A typo of a key that decides a capability fails (the
/// chart default stays in force, and the verdict would be about another install than the one
/// written); any other unknown key warns. The chart's keys are its values.yaml with --chart;
/// otherwise only the profile's defaults are known, and only capability-key typos are judged.
fn unknown_keys(t: &Target) -> Finding {
    if t.values.as_object().is_none_or(|m| m.is_empty()) {
        return Finding::skip("no user values");
    }
    let (chart, complete) = match &t.chart_values {
        Some(v) => (v.clone(), true),
        None => (
            serde_norway::from_str(t.profile().chart_defaults).unwrap_or_else(|_| json!({})),
            false,
        ),
    };
    // Removed values have their own rules, with the replacement spelled out.
    let removed: Vec<&str> = REMOVED_VALUES
        .iter()
        .filter(|r| t.at_least(r.removed_in))
        .map(|r| r.path)
        .collect();
    let found = super::keys::unknown_keys(&t.values, &chart, complete, &removed);
    let chart_name = match &t.chart {
        Some(c) => c.source.clone(),
        None => format!("the Cilium {} chart", t.cilium_version),
    };
    if found.is_empty() {
        return Finding::pass(if complete {
            format!("every key is in {chart_name}'s values.yaml")
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
        return Finding::warn(format!(
            "not keys of {chart_name}, so they do nothing: {}",
            other.join(", ")
        ));
    }
    if !other.is_empty() {
        blocking.push(format!("also unknown: {}", other.join(", ")));
    }
    let f = Finding::fail(blocking.join("; "))
        .remedy("rename each key to the one meant; the chart ignores the misspelt one");
    if patch.as_object().is_some_and(|m| !m.is_empty()) {
        f.patch(patch)
    } else {
        f
    }
}

/// A values file with several YAML documents: Helm 4 merges them in order, as if each were its
/// own `-f` file (`LoadValues`, pkg/chart/v2/loader/load.go; helm/helm#13655), and preflight
/// judges that; Helm 3 read only the first and dropped the rest without a word (helm/helm#13097).
/// Which one installs is not known here, so a later document that sets anything is a warning
/// naming the line it starts on. Empty documents (a trailing `---`) change nothing in either.
fn multi_document(t: &Target) -> Finding {
    if t.value_texts.is_empty() {
        return Finding::skip("no values files");
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
        return Finding::pass("each values file is one YAML document");
    }
    Finding::warn(format!(
        "another YAML document starts at {}: Helm 4 merges the documents in order (as judged \
         here), Helm 3 reads only the first and ignores the rest",
        found.join(", ")
    ))
}

/// What a setting that decides a capability accepts.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    Bool,
    OneOf(&'static [&'static str]),
}

/// The settings `derive` reads, with the values the chart accepts (values.yaml of each chart;
/// FACTS §3). `routingMode`/`tunnelProtocol` and `kubeProxyReplacement` have their own rules.
pub const SETTINGS: &[(&str, Accepts)] = &[
    ("encryption.enabled", Accepts::Bool),
    ("encryption.type", Accepts::OneOf(&["wireguard", "ipsec"])),
    (
        "bpf.datapathMode",
        Accepts::OneOf(&["veth", "netkit", "netkit-l2"]),
    ),
    (
        "loadBalancer.acceleration",
        Accepts::OneOf(&["disabled", "native", "best-effort"]),
    ),
    ("bpf.masquerade", Accepts::Bool),
    ("bpf.hostLegacyRouting", Accepts::Bool),
    ("socketLB.enabled", Accepts::Bool),
    ("bandwidthManager.enabled", Accepts::Bool),
    ("l7Proxy", Accepts::Bool),
    ("hubble.enabled", Accepts::Bool),
    ("hubble.relay.enabled", Accepts::Bool),
    ("hubble.ui.enabled", Accepts::Bool),
    ("autoDirectNodeRoutes", Accepts::Bool),
    ("enableIPv4Masquerade", Accepts::Bool),
];

/// The accepted value a typo most likely meant: a close edit, or an abbreviation whose letters
/// appear in order (`wg` → `wireguard`).
fn suggestion<'a>(given: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let given = given.trim().to_ascii_lowercase();
    if given.is_empty() {
        return None;
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

fn accepted_values(t: &Target) -> Finding {
    let mut problems = Vec::new();
    let mut patch = json!({});
    for (path, accepts) in SETTINGS {
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
        return Finding::pass("every setting that decides a capability has an accepted value");
    }
    let mut f = Finding::fail(problems.join("; "))
        .remedy("set each to one of the accepted values named; capabilities are derived from them");
    if patch.as_object().is_some_and(|m| !m.is_empty()) {
        f = f.patch(patch);
    }
    f
}

fn k8s_service_host(t: &Target) -> Finding {
    if !derive::kube_proxy_replacement(&t.effective_values()) {
        return Finding::skip("kube-proxy is kept");
    }
    let host = as_text(t.value("k8sServiceHost").as_ref()).unwrap_or_default();
    if host.is_empty() {
        return Finding::fail(
            "kube-proxy replacement without `k8sServiceHost`: with kube-proxy gone the agent \
             cannot reach the API server through the kubernetes Service",
        );
    }
    let port = as_text(t.value("k8sServicePort").as_ref()).unwrap_or_else(|| "443".into());
    Finding::pass(format!("API server at {host}:{port}"))
}

fn hubble_ui_relay(t: &Target) -> Finding {
    let v = t.effective_values();
    let on = |p: &str| truthy(lookup(&v, p));
    if on("hubble.ui.enabled") && !on("hubble.relay.enabled") {
        return Finding::fail("Hubble UI is enabled but Hubble Relay is not; the chart refuses it")
            .remedy("set `hubble.relay.enabled: true`")
            .patch(json!({"hubble": {"relay": {"enabled": true}}}));
    }
    if on("hubble.relay.enabled") && !on("hubble.enabled") {
        return Finding::fail("Hubble Relay is enabled but Hubble is not; the chart refuses it")
            .remedy("set `hubble.enabled: true`")
            .patch(json!({"hubble": {"enabled": true}}));
    }
    Finding::pass("consistent")
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

fn service_monitor_crds(t: &Target) -> Finding {
    let v = t.effective_values();
    let untrusted: Vec<_> = SERVICE_MONITORS
        .iter()
        .filter(|m| {
            truthy(lookup(&v, &format!("{m}.enabled")))
                && !truthy(lookup(&v, &format!("{m}.trustCRDsExist")))
        })
        .collect();
    if untrusted.is_empty() {
        return Finding::pass("no ServiceMonitor depends on CRDs preflight cannot see");
    }
    let list: Vec<_> = untrusted.iter().map(|m| format!("{m}.enabled")).collect();
    let trust: Vec<_> = untrusted
        .iter()
        .map(|m| format!("--set {m}.trustCRDsExist=true"))
        .collect();
    // A node preflight cannot list the cluster's CRDs: the chart's lookup decides at install.
    Finding::warn(format!(
        "{} need the monitoring.coreos.com/v1 CRDs; the chart fails unless the cluster has them",
        list.join(", ")
    ))
    .remedy(format!(
        "install the Prometheus Operator CRDs before Cilium, or if they will exist: {}",
        trust.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::values::merge;

    fn target(version: &str, values: Value) -> Target {
        let mut t = Target::chart_defaults(version);
        t.values = values;
        t
    }

    fn finding(t: &Target, id: &str) -> Finding {
        judge_all(t)
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f)
            .unwrap()
    }

    #[test]
    fn per_version_rules_quote_the_chart() {
        let table: &[(&str, Value, &str, Status, &str)] = &[
            (
                "1.16.4",
                json!({"tunnel": "disabled"}),
                "values.removed.tunnel",
                Status::Fail,
                "tunnel was deprecated in v1.14 and has been removed in v1.15",
            ),
            (
                "1.14.0",
                json!({"tunnel": "disabled"}),
                "values.removed.tunnel",
                Status::Pass,
                "still read",
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
                "1.16",
                json!({"encryption": {"keyFile": "k"}}),
                "values.removed.encryption-key-file",
                Status::Warn,
                "removed in 1.16",
            ),
            (
                "1.15",
                json!({"encryption": {"keyFile": "k"}}),
                "values.removed.encryption-key-file",
                Status::Pass,
                "still read",
            ),
            (
                "1.19",
                json!({"kubeProxyReplacement": true}),
                "values.k8s-service-host",
                Status::Fail,
                "k8sServiceHost",
            ),
            (
                "1.19",
                json!({"kubeProxyReplacement": true, "k8sServiceHost": "10.0.0.1",
                            "k8sServicePort": 6443}),
                "values.k8s-service-host",
                Status::Pass,
                "10.0.0.1:6443",
            ),
            (
                "1.19",
                json!({"hubble": {"ui": {"enabled": true}}}),
                "values.hubble-ui-relay",
                Status::Fail,
                "Relay",
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
                json!({"prometheus": {"serviceMonitor": {"enabled": true}}}),
                "values.service-monitor-crds",
                Status::Warn,
                "monitoring.coreos.com/v1",
            ),
            (
                "1.19",
                json!({"prometheus": {"serviceMonitor": {"enabled": true, "trustCRDsExist": true}}}),
                "values.service-monitor-crds",
                Status::Pass,
                "",
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
        ];
        for (version, values, id, status, text) in table {
            let f = finding(&target(version, values.clone()), id);
            assert_eq!(f.status, *status, "{version} {values} {id}: {f:?}");
            assert!(f.detail.contains(text), "{version} {values} {id}: {f:?}");
            if f.status == Status::Fail {
                assert!(f.remedy.is_some() || !f.detail.is_empty());
            }
        }
    }

    #[test]
    fn fixes_make_the_rule_pass() {
        for (version, values) in [
            ("1.16.4", json!({"tunnel": "disabled"})),
            ("1.16.4", json!({"tunnel": "geneve"})),
            ("1.15", json!({"kubeProxyReplacement": "partial"})),
            ("1.19", json!({"hubble": {"ui": {"enabled": true}}})),
            (
                "1.19",
                json!({"encryption": {"type": "wg"}, "l7Proxy": "false"}),
            ),
            ("1.19", json!({"tunnelProtocol": "genev"})),
            ("1.19", json!({"autoDirectNodeRoutes": true})),
            (
                "1.16.4",
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
}

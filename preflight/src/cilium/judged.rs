//! The values rules that come from the target's own sources rather than from preflight: the
//! chart's templates/validate.yaml (`values.chart-rules`), the settings the agent refuses at
//! start (`values.agent.*`), and what preflight says about the version and the shape of the
//! values (`values.cilium-version`, `values.umbrella`).
use serde_json::{Value, json};

use crate::model::Outcome;

use super::{
    Target,
    chartdata::{self, RuleFinding},
    gotmpl::Verdict,
    values::{merge, patch_of},
};

/// The chart's `fail` rules judged on the values Helm renders with. A rule that applies fails
/// with the chart's own message and `file:line`; one that depends on the cluster's API
/// (`.Capabilities`) warns and names the key that keeps it from applying; one this evaluator
/// cannot evaluate is "could not tell" with its line, never a guess.
pub fn chart_rules(t: &Target) -> Outcome {
    let Some(rules) = t.chart_rules() else {
        return Outcome::skip(format!(
            "preflight has not read the Cilium {} chart's templates; give --chart to judge its \
             rules (the values rules below use the chart's known texts)",
            t.release().label()
        ));
    };
    let chart = t.chart_label();
    let found = chartdata::judge(rules, &t.effective_values());
    let mut fails = Vec::new();
    let mut cluster = Vec::new();
    let mut unknown = Vec::new();
    let mut patch = json!({});
    for f in &found {
        let at = format!("{}:{}", f.file, f.line);
        match &f.verdict {
            Verdict::Fails(message) => {
                fails.push(format!("{at}: \"{message}\""));
                if let Some(p) = fail_patch(t, f) {
                    merge(&mut patch, p);
                }
            }
            Verdict::CouldNotTell { line, why } if why.contains(".Capabilities") => {
                let escape = f
                    .escape_keys
                    .iter()
                    .map(|k| format!("`{k}: true`"))
                    .collect::<Vec<_>>();
                cluster.push((format!("{at} ({}:{line}: {why})", f.file), escape));
            }
            Verdict::CouldNotTell { line, why } => {
                unknown.push(format!("{at} (at {}:{line}: {why})", f.file));
            }
            Verdict::Passes => {}
        }
    }
    // What the chart cannot be asked here, said beside a failure too.
    let also = cluster
        .iter()
        .map(|(at, escape)| {
            let or = if escape.is_empty() {
                String::new()
            } else {
                format!(" (or set {})", escape.join(", "))
            };
            format!("fails unless the cluster serves the API it checks{or}: {at}")
        })
        .chain(unknown.iter().map(|u| format!("could not tell: {u}")))
        .collect::<Vec<_>>();
    if !fails.is_empty() {
        let also = if also.is_empty() {
            String::new()
        } else {
            format!("; also: {}", also.join("; "))
        };
        let known: Vec<&str> = t
            .release()
            .chart
            .removed
            .iter()
            .filter(|r| t.user_value(r.path).is_some())
            .map(|r| r.replacement)
            .collect();
        let mut finding = Outcome::fail(format!(
            "{chart} rejects these values (`helm install` fails): {}{also}",
            fails.join("; ")
        ))
        .remedy(if known.is_empty() {
            "change the values the chart's messages name; the patch covers the ones it can"
                .to_string()
        } else {
            known.join("; ")
        });
        if patch.as_object().is_some_and(|m| !m.is_empty()) {
            finding = finding.patch(patch);
        }
        return finding;
    }
    if !unknown.is_empty() {
        return Outcome::unknown(format!(
            "could not tell whether {chart} accepts the values: {}",
            unknown.join("; ")
        ))
        .remedy("render the chart with these values (`helm template`) to see whether it fails");
    }
    if !cluster.is_empty() {
        let escapes: Vec<String> = cluster.iter().flat_map(|(_, e)| e.clone()).collect();
        return Outcome::warn(format!(
            "{chart} fails unless the cluster serves the API it checks at install time: {}",
            cluster
                .iter()
                .map(|(at, _)| at.clone())
                .collect::<Vec<_>>()
                .join("; ")
        ))
        .remedy(if escapes.is_empty() {
            "install the CRDs the rule checks for before Cilium".to_string()
        } else {
            format!(
                "install the CRDs the rule checks for before Cilium, or, if they will exist at \
                 install time, set {}",
                escapes.join(", ")
            )
        });
    }
    let read = match (&t.chart, t.release().chart.data) {
        (None, Some(d)) => format!(" (read from the {} chart)", d.version),
        _ => String::new(),
    };
    Outcome::pass(format!(
        "the {} rules of {chart}'s templates/validate.yaml{read} accept the values",
        rules.len()
    ))
}

/// What undoes a failing chart rule, where that is mechanical: a removed value goes (its
/// replacement spelled as preflight knows it), and a rule guarded by `not .Values.x` is
/// satisfied by `x: true` (the Hubble UI needs `hubble.relay.enabled`).
fn fail_patch(t: &Target, f: &RuleFinding) -> Option<Value> {
    let Verdict::Fails(message) = &f.verdict else {
        return None;
    };
    let rule = t
        .chart_rules()?
        .iter()
        .find(|r| r.file == f.file && r.rule.line == f.line)?;
    let read = rule.rule.values_paths();
    if message.contains("removed") {
        let mut patch = json!({});
        for path in read.iter().filter(|p| t.user_value(p).is_some()) {
            let known = t
                .release()
                .chart
                .removed
                .iter()
                .find(|r| r.path == path.as_str() || path.starts_with(&format!("{}.", r.path)));
            match known {
                Some(r) if r.id == "tunnel" => merge(&mut patch, super::validate::tunnel_patch(t)),
                _ => merge(&mut patch, patch_of(path, Value::Null)),
            }
        }
        return patch
            .as_object()
            .is_some_and(|m| !m.is_empty())
            .then_some(patch);
    }
    let mut patch = json!({});
    for key in &f.escape_keys {
        merge(&mut patch, patch_of(key, Value::Bool(true)));
    }
    patch
        .as_object()
        .is_some_and(|m| !m.is_empty())
        .then_some(patch)
}

/// One agent start rule, as the target's release has it.
pub fn agent_rule(id: &str, t: &Target) -> Outcome {
    let release = t.release();
    let Some(rule) = release.start_rules.iter().find(|r| r.id == id) else {
        return Outcome::skip(format!(
            "cilium-agent {} has no such start-up check",
            release.label()
        ));
    };
    // An invalid routing mode is refused before anything that depends on it: judged by
    // values.routing-mode, whose fix settles this one too.
    if !super::validate::routing_valid(t) {
        return Outcome::skip(
            "routingMode/tunnelProtocol is not a value the chart accepts (values.routing-mode)",
        );
    }
    let effective = t.effective_values();
    match (rule.broken)(&effective) {
        None => Outcome::pass("the agent accepts these settings"),
        Some(message) => Outcome::fail(format!(
            "the values render, but cilium-agent {} exits at start-up with \"{message}\" \
             (enforced since Cilium {}.{}: {})",
            release.label(),
            rule.since.0,
            rule.since.1,
            rule.source
        ))
        .remedy(rule.remedy)
        .patch((rule.fix)(&effective)),
    }
}

/// The version: known as given, or judged with caveats.
pub fn cilium_version(t: &Target) -> Outcome {
    match &t.version_note {
        Some(note) => Outcome::warn(note.clone())
            .remedy("check the release notes of that version for new requirements"),
        None => Outcome::pass(format!(
            "Cilium {} (preflight knows {} up to {})",
            t.cilium_version,
            t.release().label(),
            t.release().latest()
        )),
    }
}

/// Values under an umbrella chart's key.
pub fn umbrella(t: &Target) -> Outcome {
    let Some(path) = &t.values_path else {
        return Outcome::skip("the values are the Cilium chart's own");
    };
    let others = if t.values_path_others.is_empty() {
        String::new()
    } else {
        format!(
            "; not judged (other parts of the umbrella): {}",
            t.values_path_others.join(", ")
        )
    };
    if t.values_path_found {
        Outcome::warn(format!(
            "the values hold the Cilium chart's settings under `{path}:` (an umbrella chart's \
             subchart values): judged as the Cilium chart's values{others}"
        ))
        .remedy(format!(
            "pass --values-path {path} to say so; install with the umbrella chart, or move the \
             settings to the top level for the Cilium chart itself"
        ))
    } else {
        Outcome::pass(format!(
            "judging the values under `{path}:` (--values-path){others}"
        ))
    }
}

//! User keys the chart does not have (`values.unknown-keys`). Helm renders whatever keys it is
//! given and the Cilium templates read only the ones they know, so a misspelt key
//! (`kubeProxyReplacment: true`) silently does nothing and the chart default stays in force.
use serde_json::{Map, Value};

/// Keys whose values are Kubernetes objects or free-form maps in the Cilium chart (pod
/// annotations and labels, node selectors, resources, security contexts, extra agent options):
/// any key below them is the user's to choose. Checked by name at any depth, because with
/// `--chart` their defaults are often non-empty maps (`nodeSelector: {kubernetes.io/os: linux}`,
/// `securityContext.capabilities`) that would otherwise look like closed key sets.
const OPEN_KEYS: &[&str] = &[
    "affinity",
    "annotations",
    "extraArgs",
    "extraConfig",
    "extraEnv",
    "extraHostPathMounts",
    "extraInitContainers",
    "extraVolumeMounts",
    "extraVolumes",
    // Helm's own: coalesced into every chart and subchart (chartutil's coalesceGlobals).
    "global",
    "hostAliases",
    "labels",
    "livenessProbe",
    "nodeSelector",
    "podAnnotations",
    "podLabels",
    "podSecurityContext",
    "readinessProbe",
    "resources",
    "securityContext",
    "serviceAnnotations",
    "startupProbe",
    "tolerations",
    "topologySpreadConstraints",
    "updateStrategy",
];

/// Real Cilium chart keys within a typo of a capability key (values.yaml of 1.14–1.19): never
/// taken for misspellings, even when only the profile's partial defaults are known.
const REAL_NEIGHBOURS: &[&str] = &[
    "enableIPv6Masquerade",
    "ipv6NativeRoutingCIDR",
    "k8sServicePort",
];

/// A key the chart does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// Dotted path as the user wrote it.
    pub path: String,
    /// The capability key (dotted path) it most likely meant, when one is a typo away.
    pub capability: Option<String>,
    /// Otherwise the closest key the chart has at that place, when one is close.
    pub near: Option<String>,
}

/// The user's keys that are not in `chart` (the chart's defaults). With `complete` false only
/// part of the chart's keys are known (the profile's defaults): then only misspellings of
/// capability keys are reported, because any other key may exist in the real chart.
/// `skip` lists dotted paths other rules report (removed values). `capability_keys` are the
/// settings that decide a capability in the target's version (the release table's
/// `CapabilityFacts::keys`): a key one typo away from one of these is a blocking failure, the
/// chart default staying and the verdict being about another install than the one written.
pub fn unknown_keys(
    user: &Value,
    chart: &Value,
    complete: bool,
    skip: &[&str],
    capability_keys: &[&str],
) -> Vec<Unknown> {
    let mut out = Vec::new();
    if let (Some(u), Some(c)) = (user.as_object(), chart.as_object()) {
        let ctx = Walk {
            complete,
            skip,
            capability_keys,
        };
        walk("", u, c, &ctx, &mut out);
    }
    out
}

struct Walk<'a> {
    complete: bool,
    skip: &'a [&'a str],
    capability_keys: &'a [&'a str],
}

fn walk(
    prefix: &str,
    user: &Map<String, Value>,
    chart: &Map<String, Value>,
    ctx: &Walk,
    out: &mut Vec<Unknown>,
) {
    let Walk {
        complete,
        skip,
        capability_keys,
    } = *ctx;
    for (key, value) in user {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        // A null sets nothing (it deletes a default), so it cannot be a setting lost to a typo;
        // the values patch writes one to remove a misspelt key.
        if value.is_null() || OPEN_KEYS.contains(&key.as_str()) || skip.contains(&path.as_str()) {
            continue;
        }
        match chart.get(key) {
            // A mapping with known keys: judge the user's keys below it.
            Some(Value::Object(known)) if !known.is_empty() => {
                if let Value::Object(below) = value {
                    walk(&path, below, known, ctx, out);
                }
            }
            // A scalar, list, null or empty-map default: whatever is below is free-form.
            Some(_) => {}
            None => {
                let capability = capability_meant(prefix, key, capability_keys);
                let near = if capability.is_none() && complete {
                    closest(key, chart.keys().map(String::as_str))
                } else {
                    None
                };
                if capability.is_some() || complete {
                    out.push(Unknown {
                        path,
                        capability,
                        near: near.map(str::to_string),
                    });
                }
            }
        }
    }
}

/// The capability key (or a parent of one, such as `hubble`) at `prefix` that `key` is a typo
/// of. A capability key itself is never a typo (it may be absent from a partial default tree).
fn capability_meant(prefix: &str, key: &str, capability_keys: &[&str]) -> Option<String> {
    if REAL_NEIGHBOURS.contains(&key) {
        return None;
    }
    let siblings = capability_keys.iter().filter_map(|p| {
        let rest = if prefix.is_empty() {
            Some(*p)
        } else {
            p.strip_prefix(prefix)?.strip_prefix('.')
        }?;
        rest.split('.').next()
    });
    let siblings: Vec<&str> = siblings.collect();
    if siblings.contains(&key) {
        return None;
    }
    let meant = siblings.into_iter().find(|s| typo_of(key, s))?;
    Some(if prefix.is_empty() {
        meant.to_string()
    } else {
        format!("{prefix}.{meant}")
    })
}

/// `given` is a typo of `key`: the same ignoring case, or a Damerau-Levenshtein edit away that
/// grows with the key's length (1 from 5 letters, 2 from 10). Short keys (`cni`, `ui`) only by
/// case: one letter off, they are other real keys (`eni`).
pub fn typo_of(given: &str, key: &str) -> bool {
    let (g, k) = (given.to_ascii_lowercase(), key.to_ascii_lowercase());
    if g == k {
        return true;
    }
    let allowed = match k.chars().count() {
        n if n >= 10 => 2,
        n if n >= 5 => 1,
        _ => 0,
    };
    strsim::damerau_levenshtein(&g, &k) <= allowed
}

/// The closest of `keys` to `given` for a did-you-mean: a typo of it, or within a third of its
/// length.
fn closest<'a>(given: &str, keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let g = given.to_ascii_lowercase();
    keys.map(|k| (strsim::damerau_levenshtein(&g, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| typo_of(given, k) || *d * 3 <= k.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(found: &[Unknown]) -> Vec<(&str, Option<&str>, Option<&str>)> {
        found
            .iter()
            .map(|u| (u.path.as_str(), u.capability.as_deref(), u.near.as_deref()))
            .collect()
    }

    #[test]
    fn misspelt_capability_keys_are_found_even_with_partial_defaults() {
        let chart = json!({"kubeProxyReplacement": false, "hubble": {"enabled": true, "relay": {"enabled": false}}});
        let user = json!({
            "kubeProxyReplacment": true,
            "KubeProxyReplacement": true,
            "hubble": {"relay": {"enable": true}, "enabeld": true},
            "ipam": {"mode": "kubernetes"},
            "enableIPv6Masquerade": false,
            "k8sServicePort": 6443,
            "eni": {"enabled": false},
        });
        let caps = crate::cilium::releases::BUILTIN.newest().capability_keys();
        let found = unknown_keys(&user, &chart, false, &[], &caps);
        assert_eq!(
            paths(&found),
            [
                ("KubeProxyReplacement", Some("kubeProxyReplacement"), None),
                ("hubble.enabeld", Some("hubble.enabled"), None),
                ("hubble.relay.enable", Some("hubble.relay.enabled"), None),
                ("kubeProxyReplacment", Some("kubeProxyReplacement"), None),
            ]
        );
    }

    #[test]
    fn with_the_whole_chart_every_unknown_key_is_named_and_free_form_maps_are_open() {
        let chart = json!({
            "routingMode": "tunnel",
            "operator": {"replicas": 2, "nodeSelector": {"kubernetes.io/os": "linux"}, "podAnnotations": {}},
            "extraConfig": {},
            "hubble": {"metrics": {"enabled": null}},
            "tolerations": [{"operator": "Exists"}],
        });
        let user = json!({
            "operator": {"replicsa": 1, "nodeSelector": {"disk": "ssd"}, "podAnnotations": {"a": "b"}},
            "extraConfig": {"anything": "goes"},
            "hubble": {"metrics": {"enabled": ["dns"]}},
            "tolerations": [{"key": "x"}],
            "fooBar": 1,
            "tunnel": "vxlan",
        });
        let caps = crate::cilium::releases::BUILTIN.newest().capability_keys();
        let found = unknown_keys(&user, &chart, true, &["tunnel"], &caps);
        assert_eq!(
            paths(&found),
            [
                ("fooBar", None, None),
                ("operator.replicsa", None, Some("replicas")),
            ]
        );
        assert!(typo_of("routingmode", "routingMode"));
        assert!(!typo_of("eni", "cni"));
        assert!(typo_of("tunelProtocol", "tunnelProtocol"));
    }
}

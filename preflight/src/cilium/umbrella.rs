//! Values written for an umbrella chart: a GitOps repository's own chart with Cilium as a
//! dependency keeps Cilium's values under `cilium:` (Helm hands a subchart the parent's values
//! under the subchart's name, plus `global`). Judged as they stand, every Cilium setting in such
//! a file would be an unknown top-level key and the chart's defaults would be judged instead:
//! a silent GO. preflight finds them (`values.umbrella` says so) or is told (`--values-path`).
use serde_json::{Map, Value};

use super::releases::Release;

/// The key an umbrella chart's Cilium dependency is usually named by.
const SUBCHART: &str = "cilium";

/// Whether `values` look like an umbrella chart's: a top-level `cilium:` mapping that is not a
/// key of the Cilium chart itself, holding keys the Cilium chart has. `keys` is the chart's key
/// set when known; otherwise the release's capability keys stand for it.
pub fn detect(values: &Value, keys: Option<&Value>, release: &Release) -> Option<String> {
    let top = values.as_object()?;
    let inner = top.get(SUBCHART)?.as_object()?;
    let is_chart_key = |k: &str| match keys {
        Some(Value::Object(m)) => m.contains_key(k),
        _ => release
            .capability_keys()
            .iter()
            .any(|c| c.split('.').next() == Some(k)),
    };
    if keys.is_some() && is_chart_key(SUBCHART) {
        return None;
    }
    let known = inner.keys().filter(|k| is_chart_key(k)).count();
    (known > 0).then(|| SUBCHART.to_string())
}

/// The values under a dotted path, with Helm's `global` handed down from the top.
pub fn select(values: &Value, path: &str) -> Result<Value, String> {
    let mut cur = values;
    for key in path.split('.') {
        cur = cur
            .as_object()
            .and_then(|m| m.get(key))
            .ok_or_else(|| format!("the values have no `{path}` mapping"))?;
    }
    let Value::Object(inner) = cur else {
        return Err(format!("`{path}` in the values is not a mapping"));
    };
    let mut out: Map<String, Value> = inner.clone();
    if let Some(global) = values.get("global")
        && !out.contains_key("global")
    {
        out.insert("global".into(), global.clone());
    }
    Ok(Value::Object(out))
}

/// Top-level keys of an umbrella file that are not the subchart's (they configure other parts
/// of the umbrella and are not judged).
pub fn others(values_files: &Value, path: &str) -> Vec<String> {
    let first = path.split('.').next().unwrap_or(path);
    values_files
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| k.as_str() != first && k.as_str() != "global")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cilium::releases::BUILTIN;

    #[test]
    fn cilium_values_under_cilium_are_found_and_selected_with_global() {
        let r = BUILTIN.newest();
        let umbrella = json!({
            "cilium": {"kubeProxyReplacement": true, "routingMode": "native"},
            "global": {"imageRegistry": "r"},
            "ingress-nginx": {"enabled": false},
        });
        assert_eq!(detect(&umbrella, None, r).as_deref(), Some("cilium"));
        let keys =
            json!({"kubeProxyReplacement": null, "routingMode": null, "hubble": {"enabled": null}});
        assert_eq!(detect(&umbrella, Some(&keys), r).as_deref(), Some("cilium"));
        assert_eq!(
            select(&umbrella, "cilium").unwrap(),
            json!({"kubeProxyReplacement": true, "routingMode": "native", "global": {"imageRegistry": "r"}})
        );
        assert_eq!(others(&umbrella, "cilium"), ["ingress-nginx"]);
        // The chart's own values, or a `cilium:` holding nothing Cilium's: not an umbrella.
        assert_eq!(
            detect(&json!({"kubeProxyReplacement": true}), None, r),
            None
        );
        assert_eq!(detect(&json!({"cilium": {"foo": 1}}), Some(&keys), r), None);
        assert!(select(&json!({"a": 1}), "cilium").is_err());
        assert!(select(&json!({"cilium": 1}), "cilium").is_err());
    }
}

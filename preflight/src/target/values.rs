//! Helm values: files (`-f`, later wins, deep merge as Helm does) and `--set` overrides.
//! Values are held as JSON values so the chart's JSON Schema can judge them directly.
use std::path::Path;

use serde_json::{Map, Value};

/// A values problem the user must fix; always names where (file:line:column or the --set text).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValuesError {
    /// A syntax error. The YAML crate gives a position for every syntax error; only document-
    /// level refusals (several documents in one file) come without one.
    #[error("{file}{}: invalid YAML: {message}", at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Yaml {
        file: String,
        /// (line, column), 1-based.
        at: Option<(usize, usize)>,
        message: String,
    },
    /// A JSON syntax error (the chart's values.schema.json).
    #[error("{file}:{}:{}: invalid JSON: {message}", at.0, at.1)]
    Json {
        file: String,
        /// (line, column), 1-based.
        at: (usize, usize),
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("--set {expr:?}: {message}")]
    Set { expr: String, message: String },
}

/// Parses one values document. `name` is what errors call it (the path as given).
pub fn parse_yaml(name: &str, text: &str) -> Result<Value, ValuesError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        // The crate's message repeats the position ("at line 3 column 5"); keep only the cause.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ValuesError::Yaml {
            file: name.to_string(),
            at,
            message,
        }
    })?;
    match value {
        // An empty file is an empty values map, as for Helm.
        Value::Null => Ok(Value::Object(Map::new())),
        Value::Object(_) => Ok(value),
        other => Err(ValuesError::File {
            file: name.to_string(),
            message: format!(
                "a values file must be a mapping at the top level, not {}",
                kind(&other)
            ),
        }),
    }
}

/// Reads and parses a values file; returns its text too (messages point at its lines).
pub fn load_file(path: &Path) -> Result<(String, Value), ValuesError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ValuesError::File {
        file: name.clone(),
        message: e.to_string(),
    })?;
    let value = parse_yaml(&name, &text)?;
    Ok((text, value))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Helm's merge of user values: maps merge key by key, anything else in `over` replaces what is
/// in `base` (lists are replaced whole, not appended). A `null` is kept: it deletes the key when
/// coalesced with the chart's defaults (see [`coalesce`]).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// The values the chart renders with: its defaults, overridden by the user's; a user `null`
/// removes the default (Helm's coalesce).
pub fn coalesce(defaults: &Value, user: &Value) -> Value {
    match (defaults, user) {
        (Value::Object(d), Value::Object(u)) => {
            let mut out = d.clone();
            for (k, v) in u {
                if v.is_null() {
                    out.remove(k);
                } else if let Some(dv) = d.get(k)
                    && dv.is_object()
                    && v.is_object()
                {
                    out.insert(k.clone(), coalesce(dv, v));
                } else {
                    out.insert(k.clone(), strip_nulls(v));
                }
            }
            Value::Object(out)
        }
        (_, u) => strip_nulls(u),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The value at a dotted path (`hubble.relay.enabled`), treating `null` as absent.
pub fn lookup<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = values;
    for key in path.split('.') {
        cur = cur.as_object()?.get(key)?;
    }
    (!cur.is_null()).then_some(cur)
}

/// A flag as Helm templates read it: `true`, or a string "true" from a careless --set-string.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// A scalar as text, for messages and string-typed settings.
pub fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Builds `{a: {b: v}}` from `a.b` and `v`: how recommendations become a values patch.
pub fn patch_of(path: &str, value: Value) -> Value {
    path.rsplit('.').fold(value, |acc, key| {
        let mut m = Map::new();
        m.insert(key.to_string(), acc);
        Value::Object(m)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn yaml_errors_name_file_line_and_column() {
        let err = parse_yaml("plan.yaml", "hubble:\n  enabled: true\n   relay: x\n").unwrap_err();
        let ValuesError::Yaml { file, at, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "plan.yaml");
        assert_eq!(*at, Some((3, 9)), "{err}");
        assert!(err.to_string().starts_with("plan.yaml:3:"), "{err}");
        let err = parse_yaml("l.yaml", "- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("mapping"), "{err}");
        assert_eq!(parse_yaml("e.yaml", "").unwrap(), json!({}));
    }

    #[test]
    fn later_files_win_and_maps_merge_deeply() {
        let mut v = json!({"hubble": {"enabled": true, "relay": {"enabled": false}}, "l": [1, 2]});
        merge(
            &mut v,
            json!({"hubble": {"relay": {"enabled": true}}, "l": [3]}),
        );
        assert_eq!(
            v,
            json!({"hubble": {"enabled": true, "relay": {"enabled": true}}, "l": [3]})
        );
    }

    #[test]
    fn a_user_null_deletes_the_chart_default() {
        let defaults = json!({"tunnel": "vxlan", "bpf": {"masquerade": false, "x": 1}});
        let user = json!({"tunnel": null, "bpf": {"x": null, "masquerade": true}});
        assert_eq!(
            coalesce(&defaults, &user),
            json!({"bpf": {"masquerade": true}})
        );
        assert_eq!(lookup(&user, "tunnel"), None);
        assert_eq!(lookup(&defaults, "bpf.x"), Some(&json!(1)));
        assert_eq!(patch_of("a.b", json!(true)), json!({"a": {"b": true}}));
    }
}

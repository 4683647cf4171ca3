//! Helm values: files (`-f`, later wins, deep merge as Helm does) and `--set` overrides.
//! Values are held as JSON values so the chart's JSON Schema can judge them directly.
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// A values problem the user must fix; always names where (file:line:column or the --set text).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValuesError {
    /// A syntax error, with the position the YAML crate gives (every syntax error has one); a
    /// bad merge key has one only when the file has a single `<<`.
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
    /// A file refused before parsing: not a regular file, too large, nested too deep.
    #[error(transparent)]
    Input(#[from] crate::host::input::InputError),
}

/// Most keys accepted in the user's values (files and --set together): each key is judged
/// (the typo check costs ~40 µs a key), and Cilium's whole values.yaml has ~1,400.
pub const MAX_VALUES_KEYS: usize = 10_000;

/// Parses a values file the way Helm 4 loads one (`LoadValues`, pkg/chart/v2/loader/load.go,
/// helm/helm#13655): each YAML document in turn, merged over the ones before it as if each were
/// its own `-f` file. Helm 3 read only the first document; `values.multi-document` warns about
/// the difference. YAML merge keys (`<<: *anchor`) are resolved as Helm's YAML library does.
/// `name` is what errors call the file (the path as given).
pub fn parse_yaml(name: &str, text: &str) -> Result<Value, ValuesError> {
    crate::host::input::yaml_depth(name, text)?;
    let mut values = Value::Object(Map::new());
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let node = Node::deserialize(document).map_err(|e| yaml_error(name, &e))?;
        let value = node.into_json().map_err(|message| ValuesError::Yaml {
            file: name.to_string(),
            // The library keeps no positions past parsing: name the merge key when there is
            // only one, which is where the problem is.
            at: match merge_key_lines(text).as_slice() {
                [line] => Some((*line, 1)),
                _ => None,
            },
            message,
        })?;
        match value {
            // An empty document is an empty values map, as for Helm.
            Value::Null => {}
            Value::Object(_) => merge(&mut values, value),
            other => {
                let at = match index {
                    0 => String::new(),
                    n => super::yamlpos::document_starts(text)
                        .get(n - 1)
                        .map(|l| format!(" (document {} from line {l})", n + 1))
                        .unwrap_or_else(|| format!(" (document {})", n + 1)),
                };
                return Err(ValuesError::File {
                    file: name.to_string(),
                    message: format!(
                        "a values file must be a mapping at the top level, not {}{at}",
                        kind(&other)
                    ),
                });
            }
        }
    }
    Ok(values)
}

fn yaml_error(name: &str, e: &serde_norway::Error) -> ValuesError {
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
}

/// 1-based lines holding a block-style `<<:` merge key.
fn merge_key_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.starts_with("<<:") || t.contains("{<<:") || t.contains(" <<:")
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// A YAML document as written: mappings keep every entry in order, repeats and `<<` included,
/// because Helm's YAML library (go-yaml v2 under sigs.k8s.io/yaml) applies merge keys in
/// document order. serde_norway's own `Value` refuses repeated keys (Helm keeps the last; see
/// `values.duplicate-keys`) and its `apply_merge` lets explicit keys win wherever they stand,
/// so neither fits.
enum Node {
    Scalar(Value),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        // As serde_json's own Value: NaN and infinities have no JSON number.
        Ok(Node::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        // Keys are strings, as JSON needs (the chart's schema judges these values).
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            entries.push((k, v));
        }
        Ok(Node::Map(entries))
    }
}

/// go-yaml v2's message for a bad merge value (decode.go `failWantMap`).
const WANT_MAP: &str = "map merge requires map or sequence of maps as the value";

impl Node {
    /// The JSON value Helm sees. A mapping is built in document order, each entry overwriting
    /// what is there: a repeated key keeps its last value, and `<<` inserts the merged
    /// mapping's entries at its place, so keys written before it are overwritten and keys after
    /// it win (go-yaml v2 decode.go `mapping`/`merge`, which sigs.k8s.io/yaml uses). In a list
    /// of merged mappings the earlier ones win (the library applies them back to front).
    /// Aliases arrive expanded, merge keys inside an anchor included; those are resolved here.
    fn into_json(self) -> Result<Value, String> {
        Ok(match self {
            Node::Scalar(v) => v,
            Node::List(items) => Value::Array(
                items
                    .into_iter()
                    .map(Node::into_json)
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(entries) => {
                let mut out = Map::new();
                for (k, v) in entries {
                    if k != "<<" {
                        out.insert(k, v.into_json()?);
                        continue;
                    }
                    match v.into_json()? {
                        Value::Object(m) => out.extend(m),
                        Value::Array(items) => {
                            for item in items.into_iter().rev() {
                                let Value::Object(m) = item else {
                                    return Err(WANT_MAP.to_string());
                                };
                                out.extend(m);
                            }
                        }
                        _ => return Err(WANT_MAP.to_string()),
                    }
                }
                Value::Object(out)
            }
        })
    }
}

/// Reads and parses a values file (`-` is stdin); returns its text too (messages point at its
/// lines). The file must be a regular file within the input cap ([`crate::host::input`]).
pub fn load_file(path: &Path) -> Result<(String, Value), ValuesError> {
    let name = crate::host::input::shown(path);
    let text = crate::host::input::read_text(path, "values files")?;
    let value = parse_yaml(&name, &text)?;
    Ok((text, value))
}

/// Refuses values with more than [`MAX_VALUES_KEYS`] keys in all; `what` names them.
pub fn check_key_count(values: &Value, what: &str) -> Result<(), ValuesError> {
    let mut count = 0usize;
    let mut stack = vec![values];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                count += m.len();
                stack.extend(m.values());
            }
            Value::Array(l) => stack.extend(l.iter()),
            _ => {}
        }
        if count > MAX_VALUES_KEYS {
            return Err(ValuesError::File {
                file: what.to_string(),
                message: format!(
                    "more than {MAX_VALUES_KEYS} keys in the values; not judged (Cilium's \
                     values have ~1,400)"
                ),
            });
        }
    }
    Ok(())
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
    fn merge_keys_are_resolved_as_helm_does() {
        // The reviewer's case: Relay switched on through a merge key, in flow and block style.
        let flow = "x: &x {enabled: true}\nhubble: {relay: {<<: *x}}\n";
        assert_eq!(
            parse_yaml("f.yaml", flow).unwrap()["hubble"]["relay"]["enabled"],
            json!(true)
        );
        let block =
            "base: &b\n  enabled: true\n  port: 1\nhubble:\n  relay:\n    <<: *b\n    port: 2\n";
        let v = parse_yaml("b.yaml", block).unwrap();
        assert_eq!(v["hubble"]["relay"], json!({"enabled": true, "port": 2}));
        // go-yaml v2 applies `<<` where it stands: a key written before it is overwritten.
        let before = "b: &b {port: 1}\nt:\n  port: 2\n  <<: *b\n";
        assert_eq!(
            parse_yaml("o.yaml", before).unwrap()["t"],
            json!({"port": 1})
        );
        // A list of merges: the earlier mapping wins.
        let list = "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nt:\n  <<: [*a, *b]\n";
        assert_eq!(
            parse_yaml("l.yaml", list).unwrap()["t"],
            json!({"k": 1, "j": 3})
        );
        // Merges inside an anchor that is merged again (serde_norway's apply_merge leaves these).
        let chained = "a: &a {k: 1}\nb: &b {<<: *a, j: 2}\nt: {<<: *b}\n";
        assert_eq!(
            parse_yaml("c.yaml", chained).unwrap()["t"],
            json!({"k": 1, "j": 2})
        );
        // A scalar to merge is an error naming the only merge key's line.
        let err = parse_yaml("s.yaml", "a: 1\nt:\n  <<: 5\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.yaml:3:1: invalid YAML: map merge requires map or sequence of maps as the value"
        );
    }

    #[test]
    fn several_documents_merge_in_order_as_helm_4_loads_them() {
        let text = "hubble:\n  enabled: true\n  relay:\n    enabled: false\n---\nhubble:\n  relay:\n    enabled: true\n---\n";
        assert_eq!(
            parse_yaml("m.yaml", text).unwrap(),
            json!({"hubble": {"enabled": true, "relay": {"enabled": true}}})
        );
        // A syntax error in the second document names its own line.
        let err = parse_yaml("m.yaml", "a: 1\n---\nb: [\n").unwrap_err();
        let ValuesError::Yaml {
            at: Some((line, _)),
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(line >= 3, "{line}");
        // A document that is not a mapping names the line it starts on.
        let err = parse_yaml("m.yaml", "a: 1\n---\n- x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.yaml: a values file must be a mapping at the top level, not a list (document 2 from line 2)"
        );
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

//! Helm's `--set` syntax: `a.b=c,d=e`, lists as `{x,y}`, indexes as `a[0].b=c`, `\` escapes
//! `,` `.` `=` `{` `[`. Values are typed as Helm types them: `true`/`false` are booleans, `null`
//! is null, integers without a leading zero are numbers, everything else is a string.
use serde_json::{Map, Number, Value};

use super::values::ValuesError;

/// Largest list index accepted, so `a[99999999]=x` cannot allocate without bound.
const MAX_INDEX: usize = 65_535;
/// Most levels in one key (`a.b[0].c` has 4): the value is built and dropped recursively, so a
/// 20,000-level key would overflow the stack. Cilium's deepest key has 6.
pub const MAX_DEPTH: usize = 64;

/// Applies one `--set` argument (which may hold several comma-separated assignments).
pub fn apply(values: &mut Value, expr: &str) -> Result<(), ValuesError> {
    let err = |message: String| ValuesError::Set {
        expr: shorten(expr),
        message,
    };
    for (key, raw) in split_assignments(expr).map_err(err)? {
        let path = parse_key(&key).map_err(err)?;
        let value = parse_value(&raw);
        set_path(values, &path, value).map_err(err)?;
    }
    Ok(())
}

/// The expression as messages quote it: a runaway one is cut, not printed whole.
fn shorten(expr: &str) -> String {
    const SHOWN: usize = 100;
    match expr.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} bytes)", &expr[..at], expr.len()),
        None => expr.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Splits `a=1,b={x,y}` into (key, raw value) pairs; commas inside `{}` belong to the list.
fn split_assignments(expr: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut key = String::new();
    let mut val = String::new();
    let mut in_value = false;
    let mut depth = 0usize;
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // Keep the escape for the key parser / value splitter to honour.
                let next = chars.next().ok_or("trailing backslash")?;
                let buf = if in_value { &mut val } else { &mut key };
                buf.push('\\');
                buf.push(next);
            }
            '=' if !in_value => in_value = true,
            '{' if in_value && val.is_empty() => {
                depth += 1;
                val.push(c);
            }
            '}' if in_value && depth > 0 => {
                depth -= 1;
                val.push(c);
            }
            ',' if depth == 0 => {
                if !in_value {
                    return Err(format!("key {key:?} has no value (expected key=value)"));
                }
                out.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                in_value = false;
            }
            _ if in_value => val.push(c),
            _ => key.push(c),
        }
    }
    if depth > 0 {
        return Err("unclosed '{' in list value".into());
    }
    if !in_value {
        if key.is_empty() && !out.is_empty() {
            return Ok(out); // a trailing comma
        }
        return Err(format!("key {key:?} has no value (expected key=value)"));
    }
    out.push((key, val));
    Ok(out)
}

/// `a.b[0].c` → [Key a, Key b, Index 0, Key c]; `\.` keeps a dot inside a key.
fn parse_key(key: &str) -> Result<Vec<Step>, String> {
    let levels = key.matches(['.', '[']).count() + 1;
    if levels > MAX_DEPTH {
        return Err(format!(
            "the key has {levels} levels; at most {MAX_DEPTH} are accepted"
        ));
    }
    let mut steps = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars().peekable();
    let mut after_index = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next().ok_or("trailing backslash in key")?);
            }
            '.' => {
                if cur.is_empty() && !after_index {
                    return Err(format!("empty key segment in {key:?}"));
                }
                if !cur.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut cur)));
                }
                after_index = false;
            }
            '[' => {
                if !cur.is_empty() {
                    steps.push(Step::Key(std::mem::take(&mut cur)));
                } else if steps.is_empty() {
                    return Err(format!("{key:?} starts with an index"));
                }
                let mut digits = String::new();
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some(d) if d.is_ascii_digit() => digits.push(d),
                        _ => return Err(format!("bad list index in {key:?}")),
                    }
                }
                let index: usize = digits
                    .parse()
                    .map_err(|_| format!("bad list index in {key:?}"))?;
                if index > MAX_INDEX {
                    return Err(format!("list index {index} is larger than {MAX_INDEX}"));
                }
                steps.push(Step::Index(index));
                after_index = true;
            }
            _ => {
                if after_index {
                    return Err(format!("expected '.' or '[' after ']' in {key:?}"));
                }
                cur.push(c)
            }
        }
    }
    if !cur.is_empty() {
        steps.push(Step::Key(cur));
    } else if !after_index {
        return Err(if key.is_empty() {
            "empty key".to_string()
        } else {
            format!("{key:?} ends with '.'")
        });
    }
    Ok(steps)
}

/// Types a raw value; `{a,b}` becomes a list of typed items.
fn parse_value(raw: &str) -> Value {
    if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        if inner.is_empty() {
            return Value::Array(Vec::new());
        }
        return Value::Array(split_list(inner).iter().map(|s| scalar(s)).collect());
    }
    scalar(&unescape(raw))
}

fn split_list(inner: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    items.last_mut().expect("non-empty").push(n);
                }
            }
            ',' => items.push(String::new()),
            _ => items.last_mut().expect("non-empty").push(c),
        }
    }
    items
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Helm's typing of a --set scalar (strvals typedVal).
fn scalar(s: &str) -> Value {
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        "0" => Value::Number(0.into()),
        _ if !s.starts_with('0') => match s.parse::<i64>() {
            Ok(n) => Value::Number(Number::from(n)),
            Err(_) => Value::String(s.to_string()),
        },
        _ => Value::String(s.to_string()),
    }
}

fn set_path(node: &mut Value, path: &[Step], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    match first {
        Step::Key(k) => {
            if !node.is_object() {
                // Helm replaces a scalar in the way with a map.
                *node = Value::Object(Map::new());
            }
            let map = node.as_object_mut().expect("just made an object");
            let child = map.entry(k.clone()).or_insert(Value::Null);
            set_path(child, rest, value)
        }
        Step::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let list = node.as_array_mut().expect("just made a list");
            if list.len() <= *i {
                list.resize(*i + 1, Value::Null);
            }
            set_path(&mut list[*i], rest, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn set(exprs: &[&str]) -> Result<Value, ValuesError> {
        let mut v = json!({});
        for e in exprs {
            apply(&mut v, e)?;
        }
        Ok(v)
    }

    #[test]
    fn helm_set_semantics() {
        let cases: &[(&[&str], Value)] = &[
            (
                &["tunnelProtocol=geneve"],
                json!({"tunnelProtocol": "geneve"}),
            ),
            (
                &["hubble.relay.enabled=true,hubble.ui.enabled=false"],
                json!({"hubble": {"relay": {"enabled": true}, "ui": {"enabled": false}}}),
            ),
            (&["k8sServicePort=6443"], json!({"k8sServicePort": 6443})),
            (&["x=0"], json!({"x": 0})),
            (&["x=0755"], json!({"x": "0755"})),
            (&["x=1.5"], json!({"x": "1.5"})),
            (&["x="], json!({"x": ""})),
            (&["x=null"], json!({"x": null})),
            (&["l={a,b,3}"], json!({"l": ["a", "b", 3]})),
            (&["l={}"], json!({"l": []})),
            (&["a[1].b=x"], json!({"a": [null, {"b": "x"}]})),
            (
                &["nodeSelector.kubernetes\\.io/os=linux"],
                json!({"nodeSelector": {"kubernetes.io/os": "linux"}}),
            ),
            (&["x=a\\,b"], json!({"x": "a,b"})),
            (&["a.b=1", "a=2"], json!({"a": 2})),
            (&["a=2", "a.b=1"], json!({"a": {"b": 1}})),
            (&["k=v=w"], json!({"k": "v=w"})),
        ];
        for (exprs, want) in cases {
            assert_eq!(&set(exprs).unwrap(), want, "{exprs:?}");
        }
    }

    #[test]
    fn bad_set_expressions_are_errors_that_quote_the_input() {
        for bad in [
            "novalue",
            "a..b=1",
            "=1",
            "a.=1",
            "a[x]=1",
            "[0]=1",
            "l={a,b",
            "a\\",
            "a[999999999]=1",
            "a[0]b=1",
        ] {
            let err = set(&[bad]).unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_key_deeper_than_the_limit_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}=1", vec!["a"; 20_000].join("."));
        let err = set(&[&deep]).unwrap_err().to_string();
        assert!(err.contains("20000 levels") && err.contains("64"), "{err}");
        assert!(err.len() < 300, "the message quotes a short prefix: {err}");
        let indexes = format!("a{}=1", "[0]".repeat(20_000));
        assert!(set(&[&indexes]).is_err());
        let ok = format!("{}=1", vec!["a"; MAX_DEPTH].join("."));
        assert!(set(&[&ok]).is_ok());
    }

    proptest! {
        // A plain key=value always reads back (fuzzing for crashes is in cilium::fuzz).
        #[test]
        fn set_reads_back(key in "[a-z][a-zA-Z0-9]{0,8}(\\.[a-z][a-zA-Z0-9]{0,8}){0,3}",
                          val in "[a-z][a-z0-9-]{0,10}") {
            prop_assume!(!["true", "false", "null"].contains(&val.as_str()));
            let mut v = json!({});
            apply(&mut v, &format!("{key}={val}")).unwrap();
            prop_assert_eq!(super::super::values::lookup(&v, &key), Some(&Value::String(val.clone())));
        }
    }
}

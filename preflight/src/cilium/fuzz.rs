//! Bounded fuzzing of the parsers and the merger we wrote (`--set`, values merge/coalesce, the
//! YAML error path). Each target runs PREFLIGHT_FUZZ_CASES inputs (default 3000 in `cargo
//! test`; scripts/fuzz-values.sh runs many more) and prints how many it executed. A panic is a
//! crash: proptest shrinks it and fails the test with the smallest input.
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{Map, Value};

use super::{set, values};

fn cases() -> u32 {
    std::env::var("PREFLIGHT_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Arbitrary Helm-values-like trees: maps of short keys, lists, scalars, nulls.
fn arb_values() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[a-z0-9./-]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every (path, value) where `v` has a non-map value, as dotted paths.
fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        // An empty map merges into whatever is there: it asserts nothing.
        Value::Object(m) if m.is_empty() => {}
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn raw_lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |cur, k| cur.as_object()?.get(k))
}

fn has_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(has_null),
        Value::Array(l) => l.iter().any(has_null),
        _ => false,
    }
}

#[test]
fn fuzz_set_parser() {
    let runs = AtomicUsize::new(0);
    runner()
        .run(&"[a-zA-Z0-9.\\[\\]{},=\\\\ -]{0,40}", |expr| {
            runs.fetch_add(1, Ordering::Relaxed);
            let mut v = Value::Object(Map::new());
            match set::apply(&mut v, &expr) {
                // Whatever parsed leaves a map at the top, as Helm's values are.
                Ok(()) => prop_assert!(v.is_object()),
                Err(e) => {
                    let quoted = format!("{expr:?}");
                    prop_assert!(e.to_string().contains(&quoted), "{} lacks {}", e, quoted)
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz --set parser: {} executions, 0 crashes",
        runs.into_inner()
    );
}

#[test]
fn fuzz_values_merge_and_coalesce() {
    let runs = AtomicUsize::new(0);
    runner()
        .run(&(arb_values(), arb_values()), |(base, over)| {
            runs.fetch_add(1, Ordering::Relaxed);
            let mut merged = base.clone();
            values::merge(&mut merged, over.clone());
            // Later wins: every leaf of the override is in the result, unchanged.
            let mut want = Vec::new();
            leaves("", &over, &mut want);
            for (path, value) in want {
                if path.is_empty() {
                    prop_assert_eq!(&merged, &value);
                } else {
                    prop_assert_eq!(raw_lookup(&merged, &path), Some(&value), "{}", path);
                }
            }
            // Coalescing over defaults: a user null deletes the key, any other user leaf wins.
            let rendered = values::coalesce(&base, &over);
            if over.is_object() {
                let mut user = Vec::new();
                leaves("", &over, &mut user);
                for (path, value) in user {
                    let got = raw_lookup(&rendered, &path);
                    if value.is_null() {
                        prop_assert!(got.is_none(), "{} should be deleted: {}", path, rendered);
                    } else if !has_null(&value) {
                        prop_assert_eq!(got, Some(&value), "{}", path);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz values merge/coalesce: {} executions, 0 crashes",
        runs.into_inner()
    );
}

#[test]
fn fuzz_yaml_errors_always_have_a_location() {
    let runs = AtomicUsize::new(0);
    runner()
        .run(&"[a-z:\\- \\n\\t\\[\\]{}'\"&*!|>#0-9]{0,60}", |text| {
            runs.fetch_add(1, Ordering::Relaxed);
            if let Err(e @ values::ValuesError::Yaml { .. }) = values::parse_yaml("f.yaml", &text) {
                let values::ValuesError::Yaml {
                    ref file,
                    at,
                    ref message,
                } = e
                else {
                    unreachable!()
                };
                prop_assert_eq!(file, "f.yaml");
                // Syntax errors carry a position; only a bad merge key in a file with several
                // may not (the parser keeps no positions past parsing).
                prop_assert!(
                    at.is_some_and(|(l, c)| l >= 1 && c >= 1)
                        || message.contains("map merge requires"),
                    "no position for {:?}: {}",
                    text,
                    e
                );
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz YAML error path: {} executions, 0 crashes",
        runs.into_inner()
    );
}

/// Merge keys: for any two mappings A (anchored) and B, `<<: *a` followed by B's keys gives
/// A overridden by B, and B followed by `<<: *a` gives B overridden by A (go-yaml v2 applies
/// the merge where it stands), in block and flow style; arbitrary anchor/alias/merge text never
/// panics and every error names the file.
#[test]
fn fuzz_yaml_merge_keys() {
    let runs = AtomicUsize::new(0);
    let map = || prop::collection::btree_map("[a-d]", 0i64..9, 0..4);
    runner()
        .run(
            &(map(), map(), "[a-z:<*&\\- \n{},\\[\\]]{0,60}"),
            |(a, b, text)| {
                runs.fetch_add(1, Ordering::Relaxed);
                let flow = |m: &std::collections::BTreeMap<String, i64>| {
                    m.iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let block = |m: &std::collections::BTreeMap<String, i64>| {
                    m.iter()
                        .map(|(k, v)| format!("  {k}: {v}\n"))
                        .collect::<String>()
                };
                let json = |m: &std::collections::BTreeMap<String, i64>| -> Map<String, Value> {
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::from(*v)))
                        .collect()
                };
                let head = format!("a: &a {{{}}}\n", flow(&a));
                let mut after = json(&a);
                after.extend(json(&b));
                let mut before = json(&b);
                before.extend(json(&a));
                for (text, want) in [
                    (format!("{head}t:\n  <<: *a\n{}", block(&b)), &after),
                    (format!("{head}t:\n{}  <<: *a\n", block(&b)), &before),
                    (format!("{head}t: {{<<: *a, {}}}\n", flow(&b)), &after),
                ] {
                    let v = values::parse_yaml("m.yaml", &text)
                        .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
                    prop_assert_eq!(v.get("t"), Some(&Value::Object(want.clone())), "{}", text);
                }
                let noise = format!("x: &x {{k: 1}}\n{text}");
                if let Err(e) = values::parse_yaml("n.yaml", &noise) {
                    prop_assert!(e.to_string().starts_with("n.yaml"), "{}", e);
                }
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz YAML merge keys: {} executions, 0 crashes",
        runs.into_inner()
    );
}

/// The unknown-key walk over arbitrary user and chart trees: never panics, never names a key
/// the chart has, and finds nothing in the chart's own values.
#[test]
fn fuzz_unknown_keys() {
    let runs = AtomicUsize::new(0);
    let caps = crate::cilium::releases::BUILTIN.newest().capability_keys();
    runner()
        .run(&(arb_values(), arb_values()), |(user, chart)| {
            runs.fetch_add(1, Ordering::Relaxed);
            for complete in [true, false] {
                for u in super::keys::unknown_keys(&user, &chart, complete, &[], &caps) {
                    prop_assert!(
                        raw_lookup(&chart, &u.path).is_none(),
                        "{} is in the chart",
                        u.path
                    );
                    prop_assert!(
                        raw_lookup(&user, &u.path).is_some(),
                        "{} is not the user's",
                        u.path
                    );
                }
                prop_assert!(
                    super::keys::unknown_keys(&chart, &chart, complete, &[], &caps).is_empty()
                );
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz unknown keys: {} executions, 0 crashes",
        runs.into_inner()
    );
}

/// The chart-rule evaluator over arbitrary template text (made of the pieces templates are made
/// of, and arbitrary Unicode): finding the rules and judging them never panics, and every error
/// names a line inside the text.
#[test]
fn fuzz_chart_rule_templates() {
    let piece = prop_oneof![
        Just("{{".to_string()),
        Just("}}".to_string()),
        Just("{{- if ".to_string()),
        Just("{{ else }}".to_string()),
        Just("{{- end }}".to_string()),
        Just("{{ range .Values.l }}".to_string()),
        Just("{{ fail \"x\" }}".to_string()),
        Just("{{ fail (printf \"%s %d\" .Values.a) }}".to_string()),
        Just(".Values.a.b ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(" | ".to_string()),
        Just("\"s\"".to_string()),
        Just("`r`".to_string()),
        Just("$x ".to_string()),
        Just("and or not eq dig hasKey index regexMatch semverCompare ".to_string()),
        Just("\n".to_string()),
        Just("{{/* c */}}".to_string()),
        any::<String>(),
    ];
    let runs = AtomicUsize::new(0);
    runner()
        .run(
            &(proptest::collection::vec(piece, 0..40), arb_values()),
            |(pieces, values)| {
                runs.fetch_add(1, Ordering::Relaxed);
                let text = pieces.concat();
                match super::gotmpl::fail_rules(&text) {
                    Ok(rules) => {
                        for r in rules {
                            let _ = r.judge(&values);
                            let _ = r.values_paths();
                            let _ = r.escape_keys();
                        }
                    }
                    Err(e) => {
                        prop_assert!(
                            e.line >= 1 && e.line <= text.lines().count().max(1) + 1,
                            "{e}"
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz chart-rule templates: {} executions, 0 crashes",
        runs.into_inner()
    );
}

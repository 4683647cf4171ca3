#![no_main]
//! A chart's templates/validate.yaml, as read from a user's `--chart` or a pulled chart: the Go
//! template subset is parsed and every rule judged against values built from the same bytes.
//! Any text gives rules or an error, and judging terminates (no recursion without bound).
use libfuzzer_sys::fuzz_target;
use preflight::cilium::gotmpl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, values) = text.split_once("\n---\n").unwrap_or((text, "{}"));
    let values = serde_json::from_str(values).unwrap_or(serde_json::Value::Null);
    if let Ok(rules) = gotmpl::fail_rules(template) {
        for rule in &rules {
            let _ = rule.judge(&values);
        }
    }
});

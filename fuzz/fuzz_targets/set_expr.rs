#![no_main]
//! `--set` expressions: any text gives values or an error, never a panic or a stack overflow
//! (keys deeper than set::MAX_DEPTH are refused before anything is built).
use libfuzzer_sys::fuzz_target;
use preflight::cilium::{set, values};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut v = serde_json::json!({});
    for expr in text.split('\n') {
        if set::apply(&mut v, expr).is_err() {
            return;
        }
    }
    assert!(v.is_object());
    let _ = values::check_key_count(&v, "--set");
});

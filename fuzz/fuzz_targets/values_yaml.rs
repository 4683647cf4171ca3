#![no_main]
//! Values files, nested YAML above all: the depth and key prescan, then the parser and merge-key
//! resolution. Any text gives a mapping or an error naming the file, in bounded time (deep flow
//! `[[[[` is refused by the linear prescan before the quadratic parser sees it).
use libfuzzer_sys::fuzz_target;
use preflight::cilium::values;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match values::parse_yaml("fuzz.yaml", text) {
        Ok(v) => assert!(v.is_object()),
        Err(e) => assert!(e.to_string().contains("fuzz.yaml"), "{e}"),
    }
});

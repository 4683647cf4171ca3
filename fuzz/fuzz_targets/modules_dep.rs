#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::modules;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match modules::parse_dep(text) {
            Ok(map) => assert!(map.keys().all(|k| !k.is_empty() && !k.contains('-'))),
            Err(line) => assert!(line >= 1),
        }
    }
});

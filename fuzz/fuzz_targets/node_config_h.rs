#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::state;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let macros = state::macros(&text);
    let _ = state::classify(&macros);
    let _ = state::minor_of(&text);
});

#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::cni;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cni::containerd_cni(text);
    }
});

//! Kernel config text, and the same bytes through the /proc/config.gz path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::kconfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err((line, _)) = kconfig::parse(text)
    {
        assert!(line >= 1 && line <= text.lines().count().max(1));
    }
    if let Ok(bytes) = kconfig::gunzip(data) {
        assert!(bytes.len() as u64 <= preflight::host::MAX_FILE_BYTES + 1);
    }
});

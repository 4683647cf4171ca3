#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::distro;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = distro::parse_os_release(&text);
    let _ = preflight::checks::kernel_version(&text);
});

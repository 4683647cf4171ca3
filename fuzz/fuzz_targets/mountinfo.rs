#![no_main]
use libfuzzer_sys::fuzz_target;
use preflight::host::mounts;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match mounts::parse(text) {
            Ok(entries) => {
                let table = mounts::MountTable { source: String::new(), entries };
                let _ = table.covering("/proc/sys/net");
                let _ = table.at("/sys/fs/bpf").iter().map(|m| m.shared()).count();
            }
            Err((line, _)) => assert!(line >= 1),
        }
    }
});

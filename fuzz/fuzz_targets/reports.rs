#![no_main]
//! What `aggregate` and `plan --cluster` read: report JSON, JSON lines and `kubectl logs
//! --prefix` output, from untrusted pods. Any bytes give items and counts, never a panic, and
//! every item is accounted for in the stats.
use libfuzzer_sys::fuzz_target;
use preflight::fleet::read;

fuzz_target!(|data: &[u8]| {
    let (items, _stats) = read::read_all("fuzz.log", data);
    // Nothing read can come out larger than what went in (no amplification).
    assert!(items.len() <= data.len() + 1);
});

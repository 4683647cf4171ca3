#![no_main]
//! `--bpf-tar`, `--image-archive` and image layers: tar or tar.gz from anywhere. Every entry is
//! routed into a scratch dir under small limits; whatever the bytes, nothing is written outside
//! it (paths are cleaned, links must stay inside) and the limits hold.
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use preflight::compile::source::tarx::{self, Limits, Route};

const LIMITS: Limits = Limits {
    entries: 256,
    file_bytes: 64 * 1024,
    total_bytes: 256 * 1024,
    stream_bytes: 1024 * 1024,
    raw_bytes: 1024 * 1024,
};

fuzz_target!(|data: &[u8]| {
    // The scratch dir three levels down: an entry that climbs out with `..` lands in one of the
    // levels above it, which must hold nothing but the way down.
    let top = std::env::temp_dir().join(format!("preflight-fuzz-tar-{}", std::process::id()));
    let scratch = top.join("a/b/scratch");
    let _ = std::fs::remove_dir_all(&top);
    std::fs::create_dir_all(&scratch).unwrap();
    let mut route = |path: &Path, _kind: &tarx::Kind| Route::Take(path.to_path_buf());
    if let Ok((stats, _)) = tarx::extract("fuzz.tar", data, &scratch, &LIMITS, &mut route) {
        assert!(stats.entries <= LIMITS.entries);
    }
    for (dir, only) in [(top.clone(), "a"), (top.join("a"), "b"), (top.join("a/b"), "scratch")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name();
            assert_eq!(name, only, "an entry escaped the scratch dir into {}", dir.display());
        }
    }
    let _ = std::fs::remove_dir_all(&top);
});

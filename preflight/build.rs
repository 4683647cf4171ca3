//! Builds the canary programs in `preflight-ebpf` for the BPF target and leaves the object in
//! OUT_DIR, where `probe::canary` embeds it with `include_bytes!`.
//!
//! The eBPF crate needs a rustc with the same LLVM as bpf-linker (see scripts/setup.sh).
//! `AYA_BUILD_SKIP=1` skips it (for a quick host-only check); the binary then reports every
//! canary as "unknown: built without the eBPF object".
use std::{env, fs, path::PathBuf};

const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

/// Real Cilium trees, test data outside the repository (../shared/cilium beside the clone, or
/// PREFLIGHT_SHARED): where present, `cfg(shared_cilium_trees)` turns on the tests that use them
/// and PREFLIGHT_SHARED_CILIUM names the dir; where absent those tests are ignored, visibly.
fn shared_trees(manifest: &std::path::Path) {
    println!("cargo:rustc-check-cfg=cfg(shared_cilium_trees)");
    println!("cargo:rerun-if-env-changed=PREFLIGHT_SHARED");
    let shared = env::var_os("PREFLIGHT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../shared"));
    let cilium = shared.join("cilium");
    if cilium.is_dir() {
        println!("cargo:rustc-cfg=shared_cilium_trees");
        println!(
            "cargo:rustc-env=PREFLIGHT_SHARED_CILIUM={}",
            cilium.display()
        );
    }
}

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("preflight-ebpf");
    println!("cargo:rerun-if-env-changed=PREFLIGHT_EBPF_TOOLCHAIN");
    let toolchain = env::var("PREFLIGHT_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    shared_trees(&manifest);
    let root = manifest.join("../preflight-ebpf");
    let root = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "preflight-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )?;
    if !object.exists() {
        // AYA_BUILD_SKIP: embed an empty object; the canary checks then say why they cannot run.
        fs::write(&object, [])?;
    }
    Ok(())
}

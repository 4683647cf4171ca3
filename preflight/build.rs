//! Builds the canary programs in `preflight-ebpf` for the BPF target and leaves the object in
//! OUT_DIR, where `probe::canary` embeds it with `include_bytes!`.
//!
//! The eBPF crate needs a rustc with the same LLVM as bpf-linker (see scripts/setup.sh).
//! `AYA_BUILD_SKIP=1` skips it (for a quick host-only check); the binary then reports every
//! canary as "unknown: built without the eBPF object".
use std::{env, fs, path::PathBuf};

const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

/// The real Cilium trees the compile tests use (`../shared/cilium`, test data that is not in
/// the repository): `cfg(shared_cilium)` and `PREFLIGHT_SHARED_CILIUM` when present, so those
/// tests are `#[ignore]`d visibly elsewhere.
fn shared_cilium(manifest: &std::path::Path) {
    println!("cargo::rustc-check-cfg=cfg(shared_cilium)");
    println!("cargo:rerun-if-env-changed=PREFLIGHT_SHARED_DIR");
    let candidates = env::var_os("PREFLIGHT_SHARED_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../../shared"),
            manifest.join("../../../shared"),
        ]);
    for dir in candidates {
        let cilium = dir.join("cilium");
        if cilium.join("1.16.15/bpf.tar.gz").is_file() {
            println!("cargo:rerun-if-changed={}", cilium.display());
            println!("cargo::rustc-cfg=shared_cilium");
            println!(
                "cargo::rustc-env=PREFLIGHT_SHARED_CILIUM={}",
                cilium.display()
            );
            return;
        }
    }
}

fn main() -> anyhow::Result<()> {
    shared_cilium(&PathBuf::from(env::var("CARGO_MANIFEST_DIR")?));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("preflight-ebpf");
    println!("cargo:rerun-if-env-changed=PREFLIGHT_EBPF_TOOLCHAIN");
    let toolchain = env::var("PREFLIGHT_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
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

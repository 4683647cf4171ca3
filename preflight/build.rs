//! Builds the canary programs in `preflight-ebpf` for the BPF target and leaves the object in
//! OUT_DIR, where `probe::canary` embeds it with `include_bytes!`.
//!
//! The eBPF crate needs a rustc with the same LLVM as bpf-linker (see scripts/setup.sh).
//! `AYA_BUILD_SKIP=1` skips it (for a quick host-only check); the binary then reports every
//! canary as "unknown: built without the eBPF object".
use std::{env, fs, path::PathBuf};

const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

fn main() -> anyhow::Result<()> {
    // Tests that read the real Cilium sources (shared/cilium beside the repository or above a
    // worktree) run where they are and say they are ignored elsewhere.
    println!("cargo:rustc-check-cfg=cfg(cilium_sources)");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    if manifest_dir
        .ancestors()
        .any(|a| a.join("shared/cilium/README.md").is_file())
    {
        println!("cargo:rustc-cfg=cilium_sources");
    }
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

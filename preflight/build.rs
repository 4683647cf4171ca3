//! Builds the canary programs in `preflight-ebpf` for the BPF target, twice: the default object
//! (`OUT_DIR/preflight-ebpf`) and the logging one (`--features log`, aya-log, loaded at `-vv`:
//! `OUT_DIR/preflight-ebpf-log`). `probe::canary` embeds both with `include_bytes!`.
//!
//! Both are stripped of DWARF (`.debug_*`): the loader reads the programs, maps, BTF and
//! relocations, never the debug info, which was 90 % of each object (1 MiB for the logging one).
//!
//! The eBPF crate needs a rustc with the same LLVM as bpf-linker (see scripts/setup.sh).
//! `AYA_BUILD_SKIP=1` skips it (for a quick host-only check); the binary then reports every
//! canary as "unknown: built without the eBPF object".
use std::{env, fs, path::Path, path::PathBuf};

use object::build::elf::{Builder, SectionData};

const EBPF_TOOLCHAIN: &str = "nightly-2026-05-20";

/// (file in OUT_DIR, features): the logging build first, because aya-build copies every build to
/// `OUT_DIR/preflight-ebpf` and the default object must be the one left there.
const OBJECTS: [(&str, &[&str]); 2] = [("preflight-ebpf-log", &["log"]), ("preflight-ebpf", &[])];
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
    println!("cargo:rerun-if-env-changed=PREFLIGHT_EBPF_TOOLCHAIN");
    let toolchain = env::var("PREFLIGHT_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.into());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    shared_trees(&manifest);
    let root = manifest.join("../preflight-ebpf");
    let root = root.to_str().expect("utf-8 path");
    // aya-build watches the eBPF crate's directory; the shared crate is compiled into it too.
    let common = manifest.join("../preflight-ebpf-common");
    println!("cargo:rerun-if-changed={}", common.display());
    let built = out_dir.join("preflight-ebpf");
    for (file, features) in OBJECTS {
        let object = out_dir.join(file);
        // Start from nothing: never rename the other build's object, and with AYA_BUILD_SKIP
        // never embed a stale one.
        for stale in [&built, &object] {
            if stale.exists() {
                fs::remove_file(stale)?;
            }
        }
        aya_build::build_ebpf(
            [aya_build::Package {
                name: "preflight-ebpf",
                root_dir: root,
                features,
                ..Default::default()
            }],
            aya_build::Toolchain::Custom(&toolchain),
        )?;
        if file != "preflight-ebpf" && built.exists() {
            fs::rename(&built, &object)?;
        }
        if object.exists() {
            strip_dwarf(&object)?;
        } else {
            // AYA_BUILD_SKIP: embed an empty object; the canary checks then say why they cannot run.
            fs::write(&object, [])?;
        }
    }
    Ok(())
}

/// Removes the DWARF sections and their relocation sections from the ELF object at `path`.
fn strip_dwarf(path: &Path) -> anyhow::Result<()> {
    let data = fs::read(path)?;
    let mut elf = Builder::read(&*data)?;
    let debug: Vec<_> = elf
        .sections
        .iter()
        .filter(|s| s.name.starts_with(b".debug"))
        .map(|s| s.id())
        .collect();
    for section in elf.sections.iter_mut() {
        let target = section.sh_info_section;
        section.delete =
            debug.contains(&section.id()) || target.is_some_and(|t| debug.contains(&t));
    }
    elf.delete_orphans();
    // bpf-linker keeps section names in .strtab with the symbol names, which object's writer
    // does not support: give them a table of their own.
    if !elf
        .sections
        .iter()
        .any(|s| matches!(s.data, SectionData::SectionString))
    {
        let names = elf.sections.add();
        names.name = b".shstrtab"[..].into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = SectionData::SectionString;
    }
    let mut stripped = Vec::new();
    elf.write(&mut stripped)?;
    fs::write(path, stripped)?;
    Ok(())
}

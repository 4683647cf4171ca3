//! `cargo xtask dist`: the binary that goes into the container image and the qemu initramfs.
//! Static (glibc with crt-static, since no musl target is installed here) so it runs on any
//! node and in a bare busybox initramfs; stripped, because the size is what ships.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};

use crate::workspace_root;

const TARGET: &str = "x86_64-unknown-linux-gnu";
/// The flag that makes rustc link glibc statically. Applied only to the target (an explicit
/// --target keeps build scripts and proc macros dynamic), so it does not disturb host builds.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// Builds, strips and checks the static binary; returns its path.
pub fn dist() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        .args(["build", "--release", "--target", TARGET, "-p", "preflight"])
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "cargo build --release --target {TARGET} failed"
    );
    let built = root.join("target").join(TARGET).join("release/preflight");
    let dist_dir = root.join("target/dist");
    fs::create_dir_all(&dist_dir).with_context(|| format!("creating {}", dist_dir.display()))?;
    let out = dist_dir.join("preflight");
    fs::copy(&built, &out)
        .with_context(|| format!("copying {} to {}", built.display(), out.display()))?;
    // binutils 2.40's strip misreads the .strtab of this LLVM-linked binary ("invalid string
    // offset") even though its output runs; llvm-strip (from llvm-22-dev) reads it cleanly.
    let strip = ["llvm-strip-22", "llvm-strip", "strip"]
        .into_iter()
        .find(|tool| {
            Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .context("no llvm-strip or strip on PATH")?;
    let status = Command::new(strip)
        .arg(&out)
        .status()
        .with_context(|| format!("running {strip}"))?;
    ensure!(status.success(), "{strip} {} failed", out.display());
    if let Some(interp) = elf_interpreter(&out)? {
        bail!(
            "{} is dynamically linked (interpreter {interp}); expected a static binary",
            out.display()
        );
    }
    let size = fs::metadata(&out)?.len();
    let unstripped = fs::metadata(&built)?.len();
    println!(
        "dist: {} static, stripped: {} bytes ({:.1} MiB; {:.1} MiB before strip)",
        out.display(),
        size,
        size as f64 / 1048576.0,
        unstripped as f64 / 1048576.0
    );
    Ok(out)
}

/// The PT_INTERP of a 64-bit little-endian ELF file, or None for a static binary.
fn elf_interpreter(path: &Path) -> anyhow::Result<Option<String>> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    ensure!(
        data.starts_with(b"\x7fELF\x02\x01"),
        "{}: not a 64-bit little-endian ELF file",
        path.display()
    );
    let truncated = || anyhow::anyhow!("{}: truncated ELF header", path.display());
    let phoff = u64_at(0x20).ok_or_else(truncated)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(truncated)? as usize;
    let phnum = u16_at(0x38).ok_or_else(truncated)? as usize;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph).ok_or_else(truncated)? == PT_INTERP {
            let off = u64_at(ph + 8).ok_or_else(truncated)? as usize;
            let len = u64_at(ph + 32).ok_or_else(truncated)? as usize;
            let raw = data.get(off..off + len).ok_or_else(truncated)?;
            let interp = String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string();
            return Ok(Some(interp));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_names_its_interpreter() {
        // The test binary itself is linked dynamically against glibc.
        let me = std::env::current_exe().unwrap();
        let interp = elf_interpreter(&me).unwrap();
        assert!(
            interp.as_deref().is_some_and(|i| i.contains("ld-linux")),
            "{interp:?}"
        );
    }

    #[test]
    fn the_dockerfile_builds_the_binary_this_way() {
        // One recipe for the shipped binary: the image must not strip with binutils (which
        // misreads this binary's .strtab) or otherwise diverge from `cargo xtask dist`.
        let path = workspace_root().join("Dockerfile");
        let text = fs::read_to_string(&path).unwrap();
        let run_lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        let commands = run_lines.join("\n");
        assert!(commands.contains("cargo xtask dist"), "{commands}");
        assert!(
            commands.contains("COPY --from=build /preflight")
                && commands.contains("cp target/dist/preflight /preflight"),
            "{commands}"
        );
        for line in &run_lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                !words.iter().any(|w| *w == "strip" || w.ends_with("/strip")),
                "binutils strip in the Dockerfile: {line}"
            );
            assert!(
                !line.contains("cargo build"),
                "a second build recipe: {line}"
            );
        }
    }

    #[test]
    fn a_non_elf_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-elf-{}", std::process::id()));
        fs::write(&dir, b"#!/bin/sh\n").unwrap();
        let err = elf_interpreter(&dir).unwrap_err().to_string();
        fs::remove_file(&dir).unwrap();
        assert!(err.contains("not a 64-bit"), "{err}");
    }
}

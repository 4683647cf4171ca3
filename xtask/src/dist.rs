//! `cargo xtask dist [--arch amd64|arm64]...`: the binaries that ship, one per architecture, in
//! `target/dist/<arch>/preflight` (the Docker/Debian architecture names, so the Dockerfile finds
//! its binary by `TARGETARCH`). Static (glibc with crt-static, since no musl target is
//! installed here) so each runs on any node of its architecture, in the image and in a bare
//! busybox initramfs; stripped, because the size is what ships. arm64 is cross-built with
//! Debian's `gcc-aarch64-linux-gnu` as the linker (scripts/setup.sh installs it and the rustup
//! target). The eBPF object is built for bpfel by preflight/build.rs on the build host whatever
//! the target is; each artifact is refused unless it still embeds one.
use std::{fs, path::PathBuf, process::Command, time::Instant};

use anyhow::{Context, bail, ensure};

use crate::workspace_root;

/// The flag that makes rustc link glibc statically. Applied only to the target (an explicit
/// --target keeps build scripts and proc macros dynamic), so it does not disturb host builds.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// An architecture the binary ships for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The name Docker (`TARGETARCH`) and Debian use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
    pub fn triple(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }
    /// ELF e_machine of the artifact: EM_X86_64, EM_AARCH64.
    fn elf_machine(self) -> u16 {
        match self {
            Self::Amd64 => 62,
            Self::Arm64 => 183,
        }
    }
    /// The linker cargo must use for this target when it is not the machine's own
    /// architecture: Debian's cross gcc (`gcc-aarch64-linux-gnu`, `gcc-x86-64-linux-gnu`),
    /// which also brings the target's static glibc.
    fn cross_linker(self) -> Option<&'static str> {
        if Self::host() == Some(self) {
            return None;
        }
        Some(match self {
            Self::Amd64 => "x86_64-linux-gnu-gcc",
            Self::Arm64 => "aarch64-linux-gnu-gcc",
        })
    }
    /// The strip that reads this architecture's static binary cleanly, in order of preference.
    /// amd64: binutils 2.40's strip misreads the .strtab of this LLVM-linked binary ("invalid
    /// string offset", though its output runs), llvm-strip (llvm-22) reads it cleanly. arm64:
    /// llvm-strip-22 refuses it ("Link field value 26 in section .rela.plt is not a symbol
    /// table": the static binary's IRELATIVE relocations link to .symtab, which strip removes),
    /// binutils' aarch64 strip (with the cross gcc) handles it and the result runs.
    fn strippers(self) -> &'static [&'static str] {
        match self {
            Self::Amd64 => &["llvm-strip-22", "llvm-strip"],
            Self::Arm64 => &["aarch64-linux-gnu-strip"],
        }
    }
    /// The Debian package of the cross linker.
    fn cross_package(self) -> &'static str {
        match self {
            Self::Amd64 => "gcc-x86-64-linux-gnu",
            Self::Arm64 => "gcc-aarch64-linux-gnu",
        }
    }
    /// The architecture of the machine running this.
    pub fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Self::Amd64),
            "aarch64" => Some(Self::Arm64),
            _ => None,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct DistArgs {
    /// Architectures to build, each once (default: this machine's).
    #[arg(long = "arch", value_enum)]
    pub arches: Vec<Arch>,
}

/// `cargo xtask dist`: builds each architecture asked for.
pub fn dist_command(args: &DistArgs) -> anyhow::Result<()> {
    let arches = if args.arches.is_empty() {
        vec![Arch::host().context("no shipped architecture matches this machine")?]
    } else {
        args.arches.clone()
    };
    for arch in arches {
        build(arch)?;
    }
    Ok(())
}

/// The host architecture's artifact (for vm-test and the benchmarks).
pub fn dist() -> anyhow::Result<PathBuf> {
    build(Arch::host().context("no shipped architecture matches this machine")?)
}

/// Builds, strips and checks one architecture's static binary; returns its path.
pub fn build(arch: Arch) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let triple = arch.triple();
    let start = Instant::now();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        .args(["build", "--release", "--target", triple, "-p", "preflight"]);
    if let Some(linker) = arch.cross_linker() {
        ensure!(
            tool_runs(linker, "--version"),
            "{linker} not found: apt-get install {} (scripts/setup.sh), and rustup target add \
             {triple}",
            arch.cross_package()
        );
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            triple.to_uppercase().replace('-', "_")
        );
        cargo.env(var, linker);
    }
    let status = cargo.status().context("running cargo build")?;
    ensure!(
        status.success(),
        "cargo build --release --target {triple} failed"
    );
    let build_time = start.elapsed();
    let built = root.join("target").join(triple).join("release/preflight");
    let dist_dir = root.join("target/dist").join(arch.name());
    fs::create_dir_all(&dist_dir).with_context(|| format!("creating {}", dist_dir.display()))?;
    let out = dist_dir.join("preflight");
    // Copy beside and rename: a reader of target/dist never sees a half-written binary.
    let partial = dist_dir.join(".preflight.partial");
    fs::copy(&built, &partial)
        .with_context(|| format!("copying {} to {}", built.display(), partial.display()))?;
    let strip = arch
        .strippers()
        .iter()
        .copied()
        .find(|tool| tool_runs(tool, "--version"))
        .with_context(|| format!("none of {:?} on PATH (scripts/setup.sh)", arch.strippers()))?;
    let status = Command::new(strip)
        .arg(&partial)
        .status()
        .with_context(|| format!("running {strip}"))?;
    ensure!(status.success(), "{strip} {} failed", partial.display());
    let data = fs::read(&partial).with_context(|| format!("reading {}", partial.display()))?;
    let elf = Elf::parse(&data).with_context(|| partial.display().to_string())?;
    ensure!(
        elf.machine == arch.elf_machine(),
        "{} is for ELF machine {}, expected {} ({triple})",
        built.display(),
        elf.machine,
        arch.elf_machine()
    );
    if let Some(interp) = elf.interpreter {
        bail!(
            "{} is dynamically linked (interpreter {interp}); expected a static binary",
            built.display()
        );
    }
    let ebpf = embedded_bpf_objects(&data);
    ensure!(
        ebpf > 0,
        "{} embeds no eBPF object (was it built with AYA_BUILD_SKIP?): its canaries could \
         not run",
        built.display()
    );
    fs::rename(&partial, &out)?;
    let size = data.len() as u64;
    let unstripped = fs::metadata(&built)?.len();
    println!(
        "dist: {} ({triple}) static, stripped: {} bytes ({:.1} MiB; {:.1} MiB before strip), \
         eBPF object embedded; built in {:.1} s",
        out.display(),
        size,
        size as f64 / 1048576.0,
        unstripped as f64 / 1048576.0,
        build_time.as_secs_f64()
    );
    Ok(out)
}

fn tool_runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What the build checks in an artifact's ELF header.
struct Elf {
    machine: u16,
    /// PT_INTERP, None for a static binary.
    interpreter: Option<String>,
}

impl Elf {
    /// Reads a 64-bit little-endian ELF file's machine and interpreter.
    fn parse(data: &[u8]) -> anyhow::Result<Self> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |o: usize| {
            data.get(o..o + 8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            })
        };
        ensure!(
            data.starts_with(b"\x7fELF\x02\x01"),
            "not a 64-bit little-endian ELF file"
        );
        let truncated = || anyhow::anyhow!("truncated ELF header");
        let machine = u16_at(0x12).ok_or_else(truncated)?;
        let phoff = u64_at(0x20).ok_or_else(truncated)? as usize;
        let phentsize = u16_at(0x36).ok_or_else(truncated)? as usize;
        let phnum = u16_at(0x38).ok_or_else(truncated)? as usize;
        const PT_INTERP: u32 = 3;
        let mut interpreter = None;
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            if u32_at(ph).ok_or_else(truncated)? == PT_INTERP {
                let off = u64_at(ph + 8).ok_or_else(truncated)? as usize;
                let len = u64_at(ph + 32).ok_or_else(truncated)? as usize;
                let raw = data.get(off..off + len).ok_or_else(truncated)?;
                interpreter = Some(
                    String::from_utf8_lossy(raw)
                        .trim_end_matches('\0')
                        .to_string(),
                );
            }
        }
        Ok(Self {
            machine,
            interpreter,
        })
    }
}

/// How many little-endian eBPF ELF objects (e_machine EM_BPF, 247) the file carries: the
/// canary object `probe::canary` embeds with include_bytes.
fn embedded_bpf_objects(data: &[u8]) -> usize {
    const HEADER: &[u8] = b"\x7fELF\x02\x01\x01";
    const EM_BPF: [u8; 2] = 247u16.to_le_bytes();
    data.windows(HEADER.len())
        .enumerate()
        .filter(|(at, w)| *w == HEADER && data.get(at + 0x12..at + 0x14) == Some(&EM_BPF[..]))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_executable_names_its_interpreter() {
        // The test binary itself is linked dynamically against glibc.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let elf = Elf::parse(&me).unwrap();
        assert!(
            elf.interpreter
                .as_deref()
                .is_some_and(|i| i.contains("ld-linux")),
            "{:?}",
            elf.interpreter
        );
        assert_eq!(Some(elf.machine), Arch::host().map(Arch::elf_machine));
    }

    #[test]
    fn the_dockerfile_builds_the_binary_this_way() {
        // One recipe for the shipped binary: the image must not strip with binutils (which
        // misreads this binary's .strtab) or otherwise diverge from `cargo xtask dist`, and it
        // takes the binary of the architecture it is built for.
        let path = workspace_root().join("Dockerfile");
        let text = fs::read_to_string(&path).unwrap();
        let run_lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        let commands = run_lines.join("\n");
        assert!(
            commands.contains("cargo xtask dist --arch \"$TARGETARCH\""),
            "{commands}"
        );
        assert!(
            commands.contains("COPY --from=build /preflight")
                && commands.contains("cp \"target/dist/$TARGETARCH/preflight\" /preflight"),
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
    fn every_base_image_is_pinned_by_digest() {
        let text = fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
        let froms: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("FROM "))
            .collect();
        assert!(froms.len() >= 2, "{froms:?}");
        for from in froms {
            let image = from
                .split_whitespace()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .unwrap_or("");
            let digest = image.split_once("@sha256:").map_or("", |(_, d)| d);
            assert!(
                digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
                "not pinned by a sha256 digest: {from}"
            );
        }
    }

    #[test]
    fn an_embedded_bpf_object_is_found_and_a_host_object_is_not() {
        let mut blob = vec![0u8; 100];
        let mut bpf = b"\x7fELF\x02\x01\x01".to_vec();
        bpf.resize(0x12, 0);
        bpf.extend_from_slice(&247u16.to_le_bytes());
        blob.extend_from_slice(&bpf);
        blob.extend_from_slice(&[0u8; 64]);
        assert_eq!(embedded_bpf_objects(&blob), 1);
        let mut x86 = b"\x7fELF\x02\x01\x01".to_vec();
        x86.resize(0x12, 0);
        x86.extend_from_slice(&62u16.to_le_bytes());
        assert_eq!(embedded_bpf_objects(&x86), 0);
    }

    #[test]
    fn a_non_elf_file_is_refused() {
        let err = Elf::parse(b"#!/bin/sh\n").err().unwrap().to_string();
        assert!(err.contains("not a 64-bit"), "{err}");
    }
}

//! `preflight gate`: the kernel-upgrade gate on real kernels. Each kernel (a Debian package,
//! a `.deb`, or a kernel on disk) boots under qemu with this static preflight as the guest's
//! only program besides busybox; `preflight run` judges the user's target there with the live
//! probes and canaries, exactly as on a node; the reports come out over the serial console and
//! each kernel is compared with the next by `preflight diff`'s rules. Exit codes are diff's:
//! 0 nothing the target needs got worse, 1 it did, 2 bad input or a guest that gave no report.
//!
//! `--arch arm64` on an amd64 machine (or the reverse) boots the other architecture's kernels
//! under TCG, with `--guest-binary` that architecture's static build inside ([`qemu::Machine`],
//! [`kernels`] for how its packages are fetched without multiarch apt).
//!
//! The machinery (kernels, initramfs, qemu) is shared with `cargo xtask vm-test`, which boots
//! the same guests and checks them against what Debian's kernels are known to have.
pub mod cpio;
pub mod initramfs;
pub mod kernels;
pub mod qemu;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, ensure};
use clap::ValueEnum;

use crate::{
    cilium::{Target, TargetSpec},
    exit,
    report::{self, Report, diff},
};
use initramfs::{Section, shell_words};

/// A line into the gate's output (a String: writing to it cannot fail).
macro_rules! wl {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// What `preflight gate` was asked (cmd/gate.rs builds it from the command line).
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// Kernels to boot, oldest first; each is compared with the next.
    pub kernels: Vec<String>,
    /// The user's target, as the guests will judge it.
    pub target: TargetSpec,
    pub no_canaries: bool,
    /// Seconds before a guest is given up.
    pub timeout: u64,
    /// Where each kernel's report, console log and the diffs go.
    pub results: PathBuf,
    /// The static preflight to put in the guests (None: this one, if it is static).
    pub guest_binary: Option<PathBuf>,
    /// Kernel package cache (None: the default).
    pub cache: Option<PathBuf>,
    /// The guests' architecture (the host's by default; another one runs under TCG).
    pub machine: qemu::Machine,
}

/// What one kernel gave.
struct Guest {
    release: String,
    package: String,
    report: Option<Report>,
    /// `run`'s exit code in the guest (None: no section came back).
    rc: Option<i32>,
    why_no_report: Option<String>,
    elapsed: Duration,
}

/// Boots every kernel and compares each report with the next: the exit code (diff's) and
/// what to print.
pub fn gate(args: &GateOptions) -> anyhow::Result<(u8, String)> {
    ensure!(
        args.kernels.len() >= 2,
        "--kernel: give at least two kernels, the current one first (each is compared with \
         the next)"
    );
    // The target as the guests will build it: bad values stop here, before any download.
    Target::build(&args.target).map_err(|e| anyhow::anyhow!("{e}"))?;
    let machine = args.machine;
    let guest_binary = guest_binary(args.guest_binary.as_deref(), machine)?;
    let (guest_args, files) = guest_run_args(args)?;
    let cache = args.cache.clone().unwrap_or_else(kernels::cache_dir);
    let busybox = kernels::guest_busybox(machine, &cache)?;
    let (accel, why) = qemu::accelerator(machine);
    eprintln!("preflight gate: qemu accelerator {accel} ({why})");
    fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    let mut guests = Vec::new();
    for spec in &args.kernels {
        let kernel =
            kernels::resolve(spec, &cache, machine).with_context(|| format!("--kernel {spec}"))?;
        kernels::check_image(&kernel, machine).with_context(|| format!("--kernel {spec}"))?;
        let work = tempfile::Builder::new()
            .prefix("preflight-gate.")
            .tempdir()
            .context("creating a scratch directory")?;
        let sections = [
            Section::new("uname", "uname -r"),
            Section::new(
                "run",
                format!("timeout {} {}", args.timeout, shell_words(&guest_args)),
            ),
        ];
        let (initrd, _) = initramfs::build(
            &kernel,
            &busybox,
            &guest_binary,
            work.path(),
            &sections,
            &files,
        )?;
        eprintln!(
            "preflight gate: booting {} ({})",
            kernel.release, kernel.package
        );
        let boot = qemu::boot(
            machine,
            &kernel.vmlinuz(),
            &initrd,
            accel,
            // The guest's own timeout stops `run`; this one stops a guest that hangs.
            Duration::from_secs(args.timeout + 60),
        )?;
        guests.push(save_guest(&args.results, &kernel, &boot)?);
    }
    let mut out = String::new();
    print_guests(&guests, &mut out);
    let code = compare(&guests, &args.results, &mut out);
    Ok((code, out))
}

/// The static preflight the guests run: `--guest-binary`, else this executable; either must
/// be a static program of the guests' architecture.
fn guest_binary(given: Option<&Path>, machine: qemu::Machine) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => {
            ensure!(
                crate::exe::is_statically_linked(),
                "this preflight is dynamically linked and cannot run in the guest (no shared \
                 libraries there): run the gate from the static build (`cargo xtask dist`, the \
                 released binary) or pass --guest-binary"
            );
            std::env::current_exe().context("finding this executable")?
        }
    };
    let flag = if given.is_some() {
        "--guest-binary"
    } else {
        "this preflight"
    };
    let data = fs::read(&path).with_context(|| format!("{flag} {}", path.display()))?;
    let (interp, elf_machine) = elf_facts(&data)
        .with_context(|| format!("{flag} {}: not an ELF executable", path.display()))?;
    ensure!(
        elf_machine == machine.elf_machine(),
        "{flag} {}: built for another architecture than the {} guests; give the {} static \
         build with --guest-binary (cargo xtask dist --arch {}: target/dist/{}/preflight)",
        path.display(),
        machine.debian_arch(),
        machine.debian_arch(),
        machine.debian_arch(),
        machine.debian_arch()
    );
    ensure!(
        !interp,
        "{flag} {}: dynamically linked; the guest has no shared libraries, give the static \
         build (cargo xtask dist)",
        path.display()
    );
    Ok(path)
}

/// Whether a 64-bit ELF executable names a dynamic loader (PT_INTERP), and its e_machine.
fn elf_facts(data: &[u8]) -> anyhow::Result<(bool, u16)> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| anyhow::anyhow!("{e}"))?;
    let endian = elf.endian();
    let interp = elf
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP);
    Ok((interp, elf.elf_header().e_machine(endian)))
}

/// A host file or directory and where it goes in the guest: (guest path, host path).
type GuestFile = (PathBuf, PathBuf);

/// `preflight run`'s command line in the guest, and the host files it needs there: values
/// files at /etc/preflight/values/<n>-<name>, the chart at /etc/preflight/chart/<name>.
pub(crate) fn guest_run_args(args: &GateOptions) -> anyhow::Result<(Vec<String>, Vec<GuestFile>)> {
    let t = &args.target;
    let mut words: Vec<String> = ["preflight", "run", "--format", "json", "--color", "never"]
        .map(String::from)
        .to_vec();
    let mut files = Vec::new();
    if let Some(v) = &t.cilium_version {
        words.extend(["--cilium-version".into(), v.to_string()]);
    }
    for (i, file) in t.value_files.iter().enumerate() {
        let name = file
            .file_name()
            .with_context(|| format!("-f {}: not a file", file.display()))?
            .to_string_lossy();
        let guest = PathBuf::from(format!("/etc/preflight/values/{}-{name}", i + 1));
        words.extend(["-f".into(), guest.display().to_string()]);
        files.push((guest, file.clone()));
    }
    for (flag, sets) in [
        ("--set-json", &t.set_json),
        ("--set", &t.sets),
        ("--set-string", &t.set_string),
    ] {
        for set in sets {
            words.extend([flag.into(), set.clone()]);
        }
    }
    // --set-file KEY=PATH: the file goes into the guest like a values file.
    for (i, set) in t.set_file.iter().enumerate() {
        let (key, path) = set
            .split_once('=')
            .with_context(|| format!("--set-file {set}: expected KEY=FILE"))?;
        let guest = PathBuf::from(format!("/etc/preflight/set-file/{}", i + 1));
        words.extend(["--set-file".into(), format!("{key}={}", guest.display())]);
        files.push((guest, PathBuf::from(path)));
    }
    if let Some(chart) = &t.chart {
        let name = chart
            .file_name()
            .with_context(|| format!("--chart {}: no file name", chart.display()))?
            .to_string_lossy();
        let guest = PathBuf::from(format!("/etc/preflight/chart/{name}"));
        words.extend(["--chart".into(), guest.display().to_string()]);
        files.push((guest, chart.clone()));
    }
    for need in &t.need {
        let name = need
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .context("a capability without a name")?;
        words.extend(["--need".into(), name]);
    }
    if args.no_canaries {
        words.push("--no-canaries".into());
    }
    Ok((words, files))
}

/// Writes the console, the report and the exit code under `<results>/<release>/`.
fn save_guest(
    results: &Path,
    kernel: &kernels::Kernel,
    boot: &qemu::Boot,
) -> anyhow::Result<Guest> {
    let dir = results.join(&kernel.release);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("console.log"), &boot.console)?;
    let mut guest = Guest {
        release: kernel.release.clone(),
        package: kernel.package.clone(),
        report: None,
        rc: None,
        why_no_report: None,
        elapsed: boot.elapsed,
    };
    if let Some((err, _)) = boot.sections.get("run.stderr") {
        fs::write(dir.join("run.stderr.txt"), err)?;
    }
    match boot.sections.get("run") {
        Some((text, rc)) => {
            guest.rc = Some(*rc);
            let path = dir.join("run.json");
            fs::write(&path, text)?;
            match report::read_json(&path) {
                Ok(r) => guest.report = Some(r),
                Err(e) => {
                    guest.why_no_report = Some(format!("run exited {rc} without a report: {e:#}"))
                }
            }
        }
        None => {
            guest.why_no_report = Some(if boot.timed_out {
                "the guest timed out before `run` finished".into()
            } else {
                format!(
                    "no `run` output on the console (panic?): see {}",
                    dir.join("console.log").display()
                )
            })
        }
    }
    Ok(guest)
}

fn print_guests(guests: &[Guest], out: &mut String) {
    for g in guests {
        wl!(
            out,
            "== {} ({}), {:.1} s ==",
            g.release,
            g.package,
            g.elapsed.as_secs_f64()
        );
        match (&g.report, &g.why_no_report) {
            (Some(r), _) => wl!(
                out,
                "  {} (exit {})",
                r.verdict.summary,
                g.rc.map_or("?".into(), |c| c.to_string())
            ),
            (None, Some(why)) => wl!(out, "  NO REPORT: {why}"),
            (None, None) => wl!(out, "  NO REPORT"),
        }
    }
}

/// `preflight diff` from each kernel to the next; the exit code is diff's, or 2 when a guest
/// gave no report.
fn compare(guests: &[Guest], results: &Path, out: &mut String) -> u8 {
    let mut code = exit::GO;
    for pair in guests.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let (Some(a), Some(b)) = (&old.report, &new.report) else {
            wl!(
                out,
                "\n== {} -> {}: not compared (a guest gave no report) ==",
                old.release,
                new.release
            );
            code = exit::ERROR;
            continue;
        };
        let d = diff::diff(a, b);
        let text = diff::render_diff_text(&d);
        let _ = fs::write(
            results.join(format!("diff-{}-to-{}.txt", old.release, new.release)),
            &text,
        );
        wl!(
            out,
            "\n== preflight diff {} -> {} ==\n{text}",
            old.release,
            new.release
        );
        if d.gate_fails() && code == exit::GO {
            code = exit::NO_GO;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Capability;

    fn options(kernels: &[&str], target: TargetSpec) -> GateOptions {
        GateOptions {
            kernels: kernels.iter().map(|k| k.to_string()).collect(),
            target,
            no_canaries: false,
            timeout: 300,
            results: PathBuf::from("preflight-gate"),
            guest_binary: None,
            cache: None,
            machine: qemu::Machine::host(),
        }
    }

    #[test]
    fn the_guest_runs_the_users_target_with_its_files_inside() {
        let mut args = options(
            &["6.1", "6.12"],
            TargetSpec {
                cilium_version: Some(crate::cilium::CiliumVersion::parse("1.16.4").unwrap()),
                value_files: vec![
                    PathBuf::from("fixtures/values/homelab.yaml"),
                    PathBuf::from("/x/values.yaml"),
                ],
                sets: vec!["a='b c'".into()],
                need: vec![Capability::Netkit],
                ..Default::default()
            },
        );
        args.no_canaries = true;
        let (words, files) = guest_run_args(&args).unwrap();
        assert_eq!(
            words,
            [
                "preflight",
                "run",
                "--format",
                "json",
                "--color",
                "never",
                "--cilium-version",
                "1.16.4",
                "-f",
                "/etc/preflight/values/1-homelab.yaml",
                "-f",
                "/etc/preflight/values/2-values.yaml",
                "--set",
                "a='b c'",
                "--need",
                "netkit",
                "--no-canaries",
            ]
        );
        assert_eq!(
            files,
            [
                (
                    PathBuf::from("/etc/preflight/values/1-homelab.yaml"),
                    PathBuf::from("fixtures/values/homelab.yaml")
                ),
                (
                    PathBuf::from("/etc/preflight/values/2-values.yaml"),
                    PathBuf::from("/x/values.yaml")
                ),
            ]
        );
    }

    #[test]
    fn one_kernel_or_a_dynamic_guest_binary_is_refused_before_any_download() {
        let one = options(&["6.1"], TargetSpec::default());
        let err = gate(&one).unwrap_err().to_string();
        assert!(err.contains("at least two kernels"), "{err}");
        // The test binary is dynamically linked: refused as the guest's preflight.
        let me = std::env::current_exe().unwrap();
        let host = qemu::Machine::host();
        let err = guest_binary(Some(&me), host).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        let err = guest_binary(None, host).unwrap_err().to_string();
        assert!(err.contains("--guest-binary"), "{err}");
        // A binary of the host's architecture for guests of the other one: refused by name.
        let other = match host {
            qemu::Machine::X86_64 => qemu::Machine::Aarch64,
            qemu::Machine::Aarch64 => qemu::Machine::X86_64,
        };
        let err = guest_binary(Some(&me), other).unwrap_err().to_string();
        assert!(
            err.contains("another architecture") && err.contains(other.debian_arch()),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        fs::write(&bad, "a: [\n").unwrap();
        let args = options(
            &["6.1", "6.12"],
            TargetSpec {
                value_files: vec![bad.clone()],
                ..Default::default()
            },
        );
        let err = format!("{:#}", gate(&args).unwrap_err());
        assert!(err.contains("bad.yaml"), "{err}");
    }
}

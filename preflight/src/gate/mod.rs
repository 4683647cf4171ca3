//! `preflight gate`: the kernel-upgrade gate on real kernels. Each kernel (a Debian package,
//! a `.deb`, or a kernel on disk) boots under qemu with this static preflight as the guest's
//! only program besides busybox; `preflight run` judges the user's target there with the live
//! probes and canaries, exactly as on a node; the reports come out over the serial console and
//! each kernel is compared with the next by `preflight diff`'s rules. Exit codes are diff's:
//! 0 nothing the target needs got worse, 1 it did, 2 bad input or a guest that gave no report.
//!
//! The machinery (kernels, initramfs, qemu) is shared with `cargo xtask vm-test`, which boots
//! the same guests and checks them against what Debian's kernels are known to have.
pub mod args;
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
    cilium::Target,
    exit,
    report::{self, Report, diff},
};
pub use args::GateArgs;
use initramfs::{Section, shell_words};

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

pub fn gate(args: &GateArgs) -> anyhow::Result<u8> {
    ensure!(
        args.kernels.len() >= 2,
        "--kernel: give at least two kernels, the current one first (each is compared with \
         the next)"
    );
    // The target as the guests will build it: bad values stop here, before any download.
    Target::build(&args.target.spec(None)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let guest_binary = guest_binary(args.guest_binary.as_deref())?;
    let (guest_args, files) = guest_run_args(args)?;
    let cache = args.cache.clone().unwrap_or_else(kernels::cache_dir);
    let machine = qemu::Machine::host();
    let (accel, why) = qemu::accelerator(machine);
    eprintln!("preflight gate: qemu accelerator {accel} ({why})");
    fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    let mut guests = Vec::new();
    for spec in &args.kernels {
        let kernel = kernels::resolve(spec, &cache).with_context(|| format!("--kernel {spec}"))?;
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
        let (initrd, _) = initramfs::build(&kernel, &guest_binary, work.path(), &sections, &files)?;
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
    print_guests(&guests);
    Ok(compare(&guests, &args.results))
}

/// The static preflight the guests run: `--guest-binary`, else this executable.
fn guest_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        let data = fs::read(path).with_context(|| format!("--guest-binary {}", path.display()))?;
        ensure!(
            !has_interpreter(&data).with_context(|| format!(
                "--guest-binary {}: not an ELF executable",
                path.display()
            ))?,
            "--guest-binary {}: dynamically linked; the guest has no shared libraries, give the \
             static build (cargo xtask dist)",
            path.display()
        );
        return Ok(path.to_path_buf());
    }
    ensure!(
        crate::exe::is_statically_linked(),
        "this preflight is dynamically linked and cannot run in the guest (no shared libraries \
         there): run the gate from the static build (`cargo xtask dist`, the released binary) \
         or pass --guest-binary"
    );
    std::env::current_exe().context("finding this executable")
}

/// Whether a 64-bit ELF executable names a dynamic loader (PT_INTERP).
fn has_interpreter(data: &[u8]) -> anyhow::Result<bool> {
    use object::read::elf::{ElfFile64, ProgramHeader};
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| anyhow::anyhow!("{e}"))?;
    let endian = elf.endian();
    Ok(elf
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

/// A host file or directory and where it goes in the guest: (guest path, host path).
type GuestFile = (PathBuf, PathBuf);

/// `preflight run`'s command line in the guest, and the host files it needs there: values
/// files at /etc/preflight/values/<n>-<name>, the chart at /etc/preflight/chart/<name>.
fn guest_run_args(args: &GateArgs) -> anyhow::Result<(Vec<String>, Vec<GuestFile>)> {
    let t = &args.target;
    let mut words: Vec<String> = ["preflight", "run", "--format", "json", "--color", "never"]
        .map(String::from)
        .to_vec();
    let mut files = Vec::new();
    if let Some(v) = &t.cilium_version {
        words.extend(["--cilium-version".into(), v.clone()]);
    }
    for (i, file) in t.values.iter().enumerate() {
        let name = file
            .file_name()
            .with_context(|| format!("-f {}: not a file", file.display()))?
            .to_string_lossy();
        let guest = PathBuf::from(format!("/etc/preflight/values/{}-{name}", i + 1));
        words.extend(["-f".into(), guest.display().to_string()]);
        files.push((guest, file.clone()));
    }
    for set in &t.set {
        words.extend(["--set".into(), set.clone()]);
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

fn print_guests(guests: &[Guest]) {
    for g in guests {
        crate::outln!(
            "== {} ({}), {:.1} s ==",
            g.release,
            g.package,
            g.elapsed.as_secs_f64()
        );
        match (&g.report, &g.why_no_report) {
            (Some(r), _) => crate::outln!(
                "  {} (exit {})",
                r.verdict.summary,
                g.rc.map_or("?".into(), |c| c.to_string())
            ),
            (None, Some(why)) => crate::outln!("  NO REPORT: {why}"),
            (None, None) => crate::outln!("  NO REPORT"),
        }
    }
}

/// `preflight diff` from each kernel to the next; the exit code is diff's, or 2 when a guest
/// gave no report.
fn compare(guests: &[Guest], results: &Path) -> u8 {
    let mut code = exit::GO;
    for pair in guests.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        let (Some(a), Some(b)) = (&old.report, &new.report) else {
            crate::outln!(
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
        crate::outln!(
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
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gate: GateArgs,
    }

    fn parse(args: &[&str]) -> GateArgs {
        Cli::try_parse_from(std::iter::once("gate").chain(args.iter().copied()))
            .unwrap()
            .gate
    }

    #[test]
    fn the_guest_runs_the_users_target_with_its_files_inside() {
        let args = parse(&[
            "--kernel",
            "6.1",
            "--kernel",
            "6.12",
            "--cilium-version",
            "1.16.4",
            "-f",
            "fixtures/values/homelab.yaml",
            "-f",
            "/x/values.yaml",
            "--set",
            "a='b c'",
            "--need",
            "netkit",
            "--no-canaries",
        ]);
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
        // The guest's command line is what `preflight run` itself accepts.
        let run = crate::cli::Cli::try_parse_from(&words);
        assert!(run.is_ok(), "{:?}", run.err());
    }

    #[test]
    fn one_kernel_or_a_dynamic_guest_binary_is_refused_before_any_download() {
        let one = parse(&["--kernel", "6.1"]);
        let err = gate(&one).unwrap_err().to_string();
        assert!(err.contains("at least two kernels"), "{err}");
        // The test binary is dynamically linked: refused as the guest's preflight.
        let me = std::env::current_exe().unwrap();
        let err = guest_binary(Some(&me)).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        let err = guest_binary(None).unwrap_err().to_string();
        assert!(err.contains("--guest-binary"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        fs::write(&bad, "a: [\n").unwrap();
        let args = parse(&[
            "--kernel",
            "6.1",
            "--kernel",
            "6.12",
            "-f",
            bad.to_str().unwrap(),
        ]);
        let err = format!("{:#}", gate(&args).unwrap_err());
        assert!(err.contains("bad.yaml"), "{err}");
    }
}

//! `cargo xtask vm-test`: the kernel-upgrade gate on real kernels. For each kernel: fetch the
//! Debian package (cached), build an initramfs around the static preflight, boot it in qemu,
//! bring the reports out over the serial console, save them and check them.
mod expect;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::Value;

use crate::{dist, workspace_root};
use expect::{GuestReports, Mark};
use preflight::{
    gate::{
        initramfs::{self, Section},
        kernels, qemu,
    },
    report::{self, diff},
};

#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Kernels to boot: a Debian line (6.1, 6.12: newest cached, else newest in the archive) or
    /// an exact release (6.1.0-56-cloud-amd64). Repeatable.
    #[arg(long = "kernel", value_name = "VERSION", default_values = ["6.1", "6.12"])]
    kernels: Vec<String>,
    /// Skip the attach canaries in the guest.
    #[arg(long)]
    no_canaries: bool,
    /// Give up on a guest after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Where the reports go (default target/vm-test/results).
    #[arg(long)]
    results: Option<PathBuf>,
    /// The guests' architecture (default: this machine's): its static artifact (cargo xtask
    /// dist --arch), Debian's kernels and busybox-static of that architecture; another
    /// architecture than the host's boots under TCG.
    #[arg(long, value_enum)]
    arch: Option<dist::Arch>,
}

/// The qemu machine of a shipped architecture.
fn machine_of(arch: dist::Arch) -> qemu::Machine {
    match arch {
        dist::Arch::Amd64 => qemu::Machine::X86_64,
        dist::Arch::Arm64 => qemu::Machine::Aarch64,
    }
}

/// Returns whether every expectation held.
pub fn vm_test(args: &VmTestArgs) -> anyhow::Result<bool> {
    let start = Instant::now();
    let root = workspace_root();
    let results = args
        .results
        .clone()
        .unwrap_or_else(|| root.join("target/vm-test/results"));
    fs::create_dir_all(&results).with_context(|| format!("creating {}", results.display()))?;
    let arch = match args.arch {
        Some(arch) => arch,
        None => dist::Arch::host().context("no shipped architecture matches this machine")?,
    };
    let t = Instant::now();
    let preflight = dist::build(arch)?;
    let dist_time = t.elapsed();
    let machine = machine_of(arch);
    let (accel, why) = qemu::accelerator(machine);
    println!(
        "vm-test: {} guests, accelerator {accel} ({why})",
        arch.name()
    );

    let host_probe = host_probe(arch, &preflight, &results);
    let cache = kernels::cache_dir();
    let busybox = kernels::guest_busybox(machine, &cache)?;
    let mut all_ok = true;
    let mut timings = Vec::new();
    let mut run_reports = Vec::new();
    for spec in &args.kernels {
        let t = Instant::now();
        let kernel = kernels::resolve(spec, &cache, machine)?;
        kernels::check_image(&kernel, machine)?;
        let fetch_time = t.elapsed();
        let work = root.join("target/vm-test/work").join(&kernel.release);
        fs::create_dir_all(&work)?;
        let t = Instant::now();
        let (initrd, shipped) = initramfs::build(
            &kernel,
            &busybox,
            &preflight,
            &work,
            &sections(!args.no_canaries),
            &[],
        )?;
        let initrd_time = t.elapsed();
        let boot = qemu::boot(
            machine,
            &kernel.vmlinuz(),
            &initrd,
            accel,
            Duration::from_secs(args.timeout),
        )?;
        let out_dir = results.join(&kernel.release);
        save(&out_dir, &boot)?;
        let parsed = |name: &str| -> Option<Value> {
            boot.sections
                .get(name)
                .and_then(|(text, _)| serde_json::from_str(text).ok())
        };
        let probe = parsed("probe");
        let run = parsed("run");
        let run_rc = boot.sections.get("run").map(|(_, rc)| *rc).unwrap_or(-1);
        let text = |name: &str| boot.sections.get(name).map(|(t, _)| t.as_str());
        let guest = GuestReports {
            machine: text("machine"),
            probe: probe.as_ref(),
            run: run.as_ref().map(|r| (r, run_rc)),
            modules_before: text("modules-before"),
            modprobe: text("modprobe"),
            modules_after: text("modules-after"),
            shipped_modules: &shipped,
        };
        let mut findings = expect::check(&kernel, machine, &guest, host_probe.as_ref());
        if !boot.completed {
            findings.insert(
                0,
                expect::Finding {
                    mark: Mark::Fail,
                    what: "guest ran /init to the end".into(),
                    detail: if boot.timed_out {
                        format!("timed out after {} s", args.timeout)
                    } else {
                        "console ended early (panic?); see console.log".into()
                    },
                },
            );
        }
        println!(
            "\n== {} ({}), booted in {:.1} s ==",
            kernel.release,
            kernel.package,
            boot.elapsed.as_secs_f64()
        );
        if let Some(run) = &run {
            print_verdict(run);
        }
        for f in &findings {
            println!("  [{:<7}] {}: {}", f.mark.label(), f.what, f.detail);
            all_ok &= f.mark != Mark::Fail;
        }
        println!("  reports: {}", out_dir.display());
        timings.push((
            kernel.release.clone(),
            fetch_time,
            initrd_time,
            boot.elapsed,
        ));
        if run.is_some() {
            run_reports.push((kernel.release.clone(), out_dir.join("run.json")));
        }
    }
    diff_between(&run_reports, &results);
    println!(
        "\nvm-test timings: static build {:.1} s",
        dist_time.as_secs_f64()
    );
    for (release, fetch, initrd, boot) in &timings {
        println!(
            "  {release:<32} fetch/unpack {:.1} s, initramfs {:.1} s, boot+run {:.1} s",
            fetch.as_secs_f64(),
            initrd.as_secs_f64(),
            boot.as_secs_f64()
        );
    }
    println!(
        "  total {:.1} s; {}",
        start.elapsed().as_secs_f64(),
        if all_ok {
            "every expectation held"
        } else {
            "SOME EXPECTATIONS FAILED"
        }
    );
    Ok(all_ok)
}

/// What /init runs in vm-test's guests: the probe, `run` with canaries, every checked module
/// loaded by modprobe, and `run` again. The commands are constants, not built from input.
fn sections(canaries: bool) -> Vec<Section> {
    let modules = initramfs::guest_modules().join(" ");
    let canary_flag = if canaries { "" } else { " --no-canaries" };
    vec![
        Section::new("uname", "uname -r"),
        Section::new("machine", "uname -m"),
        Section::new("modules-before", "cat /proc/modules"),
        Section::new("probe", "preflight probe --all --format json"),
        Section::new(
            "run",
            format!("timeout 300 preflight run --format json --need netkit{canary_flag}"),
        ),
        Section::new(
            "modprobe",
            format!(
                "for m in {modules}; do if modprobe $m; then echo \"$m loaded\"; \
                 else echo \"$m failed\"; fi; done"
            ),
        ),
        Section::new("modules-after", "cat /proc/modules"),
        Section::new(
            "run-after-modprobe",
            "timeout 300 preflight run --format json --need netkit --no-canaries",
        ),
    ]
}

/// The host kernel's probe (6.18 here), for comparing helper sets. None when it cannot run.
/// Made by the host architecture's artifact: the guests' one when they share the host's
/// architecture, else an earlier `cargo xtask dist` (not built for this: a cold build costs
/// minutes for one informational line).
fn host_probe(arch: dist::Arch, guest_preflight: &Path, results: &Path) -> Option<Value> {
    let preflight = if Some(arch) == dist::Arch::host() {
        guest_preflight.to_path_buf()
    } else {
        let host = dist::Arch::host()?;
        let built = workspace_root()
            .join("target/dist")
            .join(host.name())
            .join("preflight");
        if !built.is_file() {
            println!(
                "vm-test: no {} artifact ({}): the host's helper comparison is skipped",
                host.name(),
                built.display()
            );
            return None;
        }
        built
    };
    let out = Command::new(preflight)
        .args(["probe", "--all", "--format", "json"])
        .output()
        .ok()?;
    let mut probe: Value = serde_json::from_slice(&out.stdout).ok()?;
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let dir = results.join("host");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("probe.json"), &out.stdout);
    probe["kernel_release"] = Value::String(release);
    Some(probe)
}

/// Writes each console section to a file: JSON reports as .json, the rest as .txt.
fn save(dir: &Path, boot: &qemu::Boot) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    fs::write(dir.join("console.log"), &boot.console)?;
    for (name, (text, rc)) in &boot.sections {
        let is_json = matches!(name.as_str(), "probe" | "run" | "run-after-modprobe");
        let file = dir.join(format!("{name}.{}", if is_json { "json" } else { "txt" }));
        fs::write(&file, text)?;
        if *rc != 0 {
            fs::write(dir.join(format!("{name}.rc")), format!("{rc}\n"))?;
        }
    }
    Ok(())
}

/// What the target needs and whether the node is go, per capability.
fn print_verdict(run: &Value) {
    let summary = run
        .pointer("/verdict/summary")
        .and_then(Value::as_str)
        .unwrap_or("(no summary)");
    println!("  verdict: {summary}");
    let caps = run
        .pointer("/verdict/capabilities")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for cap in caps {
        let name = cap.get("capability").and_then(Value::as_str).unwrap_or("?");
        let go = cap.get("go").and_then(Value::as_bool).unwrap_or(false);
        let list = |key: &str| {
            cap.get(key)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let (blocking, unverified) = (list("blocking"), list("unverified"));
        println!(
            "    needs {name:<24} {}{}{}",
            if go { "go" } else { "NO-GO" },
            if blocking.is_empty() {
                String::new()
            } else {
                format!("  blocked by {blocking}")
            },
            if unverified.is_empty() {
                String::new()
            } else {
                format!("  (could not tell: {unverified})")
            }
        );
    }
}

/// `preflight diff OLD NEW`'s rules between consecutive kernels (the library's, so that
/// guests of another architecture need no host artifact); each diff is saved next to the
/// reports.
fn diff_between(reports: &[(String, PathBuf)], results: &Path) {
    for pair in reports.windows(2) {
        let ((old, old_path), (new, new_path)) = (&pair[0], &pair[1]);
        let (a, b) = match (report::read_json(old_path), report::read_json(new_path)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                println!("\n== diff {old} -> {new}: not compared: {e:#} ==");
                continue;
            }
        };
        let d = diff::diff(&a, &b);
        let text = diff::render_diff_text(&d);
        let file = results.join(format!("diff-{old}-to-{new}.txt"));
        let _ = fs::write(&file, text.as_bytes());
        println!(
            "\n== preflight diff {old} -> {new} ({}) ==\n{text}",
            if d.gate_fails() {
                "something the target needs got worse"
            } else {
                "nothing the target needs got worse"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checked_module_is_loaded_and_canaries_follow_the_flag() {
        let modprobe = sections(true)
            .into_iter()
            .find(|s| s.name == "modprobe")
            .unwrap()
            .script;
        assert!(
            modprobe.contains(" xt_CT ") && modprobe.contains(" xt_mark "),
            "{modprobe}"
        );
        let run = |canaries| {
            sections(canaries)
                .into_iter()
                .find(|s| s.name == "run")
                .unwrap()
                .script
        };
        assert!(run(true).ends_with("--need netkit"));
        assert!(run(false).ends_with("--need netkit --no-canaries"));
    }
}

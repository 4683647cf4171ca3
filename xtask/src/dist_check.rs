//! `cargo xtask dist-check`: the shipped artifacts themselves, run on every fixture node and
//! the compile fixtures, must not crash and must reach the release build's verdict (exit code
//! and verdict line). Each artifact is built once (`cargo xtask dist`), the reference once
//! (`cargo build --release -p preflight`, dynamic, so it loads libclang where the static
//! artifacts parse clang's text). arm64 runs under qemu-user (`qemu-aarch64-static`, invoked
//! directly: no binfmt registration, nothing on the machine changes). Prints a table and the
//! time of each step; exit 1 on a crash or a different verdict.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::{
    dist::{self, Arch},
    workspace_root,
};

#[derive(Debug, clap::Args)]
pub struct DistCheckArgs {
    /// Architectures whose artifact is checked (default: amd64 and arm64).
    #[arg(long = "arch", value_enum)]
    arches: Vec<Arch>,
    /// Compare with this binary instead of building the release build.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Give up on one command after this many seconds (counted as a failure).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Skip the kernel-upgrade gate steps (two Debian kernels booted under qemu by the amd64
    /// artifact alone; then, when arm64 is checked, two arm64 kernels under TCG with the arm64
    /// artifact inside).
    #[arg(long)]
    no_gate: bool,
}

/// One command the artifacts and the reference run.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    args: Vec<String>,
    /// Runs the live probes, canaries and clang on this machine: needs root.
    live: bool,
}

/// What a run gave, reduced to what must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    exit: String,
    verdict: String,
}

fn cases(root: &Path) -> anyhow::Result<Vec<Case>> {
    let mut out = Vec::new();
    let nodes = root.join("fixtures/nodes");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&nodes)
        .with_context(|| format!("reading {}", nodes.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let rel = format!("fixtures/nodes/{name}");
        let run = |extra: &[&str]| {
            let mut args: Vec<String> = ["run", "--format", "json", "--color", "never", "--root"]
                .map(String::from)
                .to_vec();
            args.push(rel.clone());
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        };
        out.push(Case {
            name: format!("run --root {rel}"),
            args: run(&[]),
            live: false,
        });
        // The live probes, canaries and the datapath compile as well: the path on which the
        // static binary once loaded libclang and crashed (failed-cilium: exit 139).
        out.push(Case {
            name: format!("run --root {rel} --host-kernel"),
            args: run(&["--host-kernel"]),
            live: true,
        });
    }
    let compile = |fixture: &str, extra: &[&str]| {
        let mut args: Vec<String> = ["compile", "--as-node", "--format", "json", "--root"]
            .map(String::from)
            .to_vec();
        args.push(format!("fixtures/compile/{fixture}/root"));
        args.extend(extra.iter().map(|s| s.to_string()));
        Case {
            name: format!(
                "compile --as-node --root fixtures/compile/{fixture}/root {}",
                extra.join(" ")
            )
            .trim_end()
            .to_string(),
            args,
            live: true,
        }
    };
    // The scenarios of fixtures/compile/README.md.
    out.push(compile("clean", &["--cilium-version", "1.18"]));
    out.push(compile("missing-node-config", &[]));
    out.push(compile(
        "missing-node-config",
        &["--cilium-version", "1.18"],
    ));
    out.push(compile("stale-node-config", &["--cilium-version", "1.16"]));
    out.push(compile(
        "clean",
        &["--cilium-version", "1.16", "--clang", "clang-19"],
    ));
    Ok(out)
}

/// The verdict a report states: `run` has one (summary and, per capability, go and what
/// blocks it); `compile` has per program whether it compiled and what was found.
fn verdict_of(case: &Case, stdout: &[u8]) -> String {
    let Ok(report) = serde_json::from_slice::<Value>(stdout) else {
        return format!("(no JSON report; {} bytes of output)", stdout.len());
    };
    if case.args[0] == "run" {
        let summary = report
            .pointer("/verdict/summary")
            .and_then(Value::as_str)
            .unwrap_or("(no summary)");
        let caps: Vec<String> = report
            .pointer("/verdict/capabilities")
            .and_then(Value::as_array)
            .map(|caps| {
                caps.iter()
                    .map(|c| {
                        format!(
                            "{}={}{}",
                            c["capability"].as_str().unwrap_or("?"),
                            if c["go"].as_bool() == Some(true) {
                                "go"
                            } else {
                                "no"
                            },
                            c["blocking"]
                                .as_array()
                                .filter(|b| !b.is_empty())
                                .map(|b| {
                                    let ids: Vec<&str> =
                                        b.iter().filter_map(Value::as_str).collect();
                                    format!("({})", ids.join(","))
                                })
                                .unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!("{summary} [{}]", caps.join(" "))
    } else {
        let programs: Vec<String> = report["programs"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        let kinds: Vec<String> = p["findings"]
                            .as_array()
                            .map(|fs| {
                                fs.iter()
                                    .map(|f| {
                                        format!(
                                            "{}:{}",
                                            f["kind"].as_str().unwrap_or("?"),
                                            f["subject"].as_str().unwrap_or("")
                                        )
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        format!(
                            "{}={}{:?}",
                            p["name"].as_str().unwrap_or("?"),
                            if p["compiled"].as_bool() == Some(true) {
                                "ok"
                            } else {
                                "failed"
                            },
                            kinds
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        programs.join(" ")
    }
}

/// Whether the report says its diagnostics came from clang's text because the binary is static.
fn says_static_text(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).contains("this preflight is statically linked")
}

fn says_libclang(stdout: &[u8]) -> bool {
    String::from_utf8_lossy(stdout).contains("libclang 1")
}

struct Ran {
    outcome: Outcome,
    stdout: Vec<u8>,
    elapsed: Duration,
}

fn run(
    prefix: &[&str],
    binary: &Path,
    case: &Case,
    root: &Path,
    timeout: u64,
) -> anyhow::Result<Ran> {
    let start = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.arg(timeout.to_string()).args(prefix).arg(binary);
    cmd.args(&case.args).current_dir(root);
    let out = cmd
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let exit = match out.status.code() {
        Some(124) => format!("timed out after {timeout} s"),
        Some(code) => code.to_string(),
        None => "killed by a signal".into(),
    };
    let exit = if exit == "139" || exit == "134" {
        format!(
            "{exit} (crashed: {})",
            if exit == "139" { "SIGSEGV" } else { "SIGABRT" }
        )
    } else {
        exit
    };
    Ok(Ran {
        outcome: Outcome {
            exit,
            verdict: verdict_of(case, &out.stdout),
        },
        stdout: out.stdout,
        elapsed: start.elapsed(),
    })
}

/// The command prefix that runs `arch`'s binary here: nothing for the host's, qemu-user for
/// the other (`qemu-aarch64-static` from Debian's qemu-user-static).
fn runner(arch: Arch) -> anyhow::Result<Vec<&'static str>> {
    if Arch::host() == Some(arch) {
        return Ok(Vec::new());
    }
    let qemu = match arch {
        Arch::Arm64 => ["qemu-aarch64-static", "qemu-aarch64"],
        Arch::Amd64 => ["qemu-x86_64-static", "qemu-x86_64"],
    };
    qemu.into_iter()
        .find(|q| {
            Command::new(q)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|q| vec![q])
        .with_context(|| format!("no {} (apt-get install qemu-user-static)", qemu[0]))
}

pub fn run_check(args: &DistCheckArgs) -> anyhow::Result<bool> {
    let total = Instant::now();
    let root = workspace_root();
    let arches = if args.arches.is_empty() {
        vec![Arch::Amd64, Arch::Arm64]
    } else {
        args.arches.clone()
    };
    let mut timings = Vec::new();
    let reference = match &args.reference {
        Some(path) => path.clone(),
        None => {
            let t = Instant::now();
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&root)
                .args(["build", "--release", "-p", "preflight"])
                .status()
                .context("running cargo build --release")?;
            ensure!(
                status.success(),
                "cargo build --release -p preflight failed"
            );
            timings.push(("release build (reference)".to_string(), t.elapsed()));
            root.join("target/release/preflight")
        }
    };
    let mut artifacts = Vec::new();
    for arch in &arches {
        let t = Instant::now();
        let path = dist::build(*arch)?;
        timings.push((
            format!("cargo xtask dist --arch {}", arch.name()),
            t.elapsed(),
        ));
        artifacts.push((*arch, path, runner(*arch)?));
    }
    let is_root = nix_is_root();
    let mut ok = true;
    let mut rows = 0;
    let mut static_text_seen = false;
    let mut reference_libclang_seen = false;
    let t_cases = Instant::now();
    for case in cases(&root)? {
        if case.live && !is_root {
            println!(
                "SKIP  {}: needs root (live probes, canaries, bpf() loads)",
                case.name
            );
            continue;
        }
        let reference_run = run(&[], &reference, &case, &root, args.timeout)?;
        reference_libclang_seen |= says_libclang(&reference_run.stdout);
        println!(
            "\n{}\n  reference      exit {:<4} {:>6.1} s  {}",
            case.name,
            reference_run.outcome.exit,
            reference_run.elapsed.as_secs_f64(),
            short(&reference_run.outcome.verdict)
        );
        for (arch, path, prefix) in &artifacts {
            let ran = run(prefix, path, &case, &root, args.timeout)?;
            static_text_seen |= says_static_text(&ran.stdout);
            rows += 1;
            if case.live && !prefix.is_empty() {
                // Under qemu-user bpf() is ENOSYS and the canary worker (a re-exec of this
                // binary) cannot start, so the live answers are not the kernel's: the verdict
                // cannot be the release build's. What must hold is no crash and a report.
                let fine = matches!(ran.outcome.exit.as_str(), "0" | "1" | "2")
                    && !ran.outcome.verdict.starts_with("(no JSON report");
                ok &= fine;
                println!(
                    "  {:<6} {:<7} exit {:<4} {:>6.1} s  (live answers under qemu-user are not the \
                     kernel's: checked for no crash and a report only)",
                    arch.name(),
                    if fine { "ran" } else { "FAILED" },
                    ran.outcome.exit,
                    ran.elapsed.as_secs_f64(),
                );
                continue;
            }
            let same = ran.outcome == reference_run.outcome;
            ok &= same;
            println!(
                "  {:<6} {:<7} exit {:<4} {:>6.1} s  {}",
                arch.name(),
                if same { "same" } else { "DIFFERS" },
                ran.outcome.exit,
                ran.elapsed.as_secs_f64(),
                if same {
                    String::new()
                } else {
                    format!(
                        "\n      verdict:   {}\n      reference: {}",
                        ran.outcome.verdict, reference_run.outcome.verdict
                    )
                }
            );
        }
    }
    timings.push(("fixture commands".to_string(), t_cases.elapsed()));
    if !args.no_gate {
        if let Some((_, path, _)) = artifacts
            .iter()
            .find(|(a, _, p)| *a == Arch::Amd64 && p.is_empty())
        {
            let t = Instant::now();
            let gate_ok = gate_step(path, None, &root)?;
            ok &= gate_ok;
            timings.push((
                "gate: Debian 6.1 -> 6.12 under qemu".to_string(),
                t.elapsed(),
            ));
            // arm64 guests from the same amd64 binary, the arm64 artifact inside (TCG).
            if let Some((_, guest, _)) = artifacts.iter().find(|(a, ..)| *a == Arch::Arm64) {
                let t = Instant::now();
                ok &= gate_step(path, Some((Arch::Arm64, guest)), &root)?;
                timings.push(("gate --arch arm64: 6.1 -> 6.12".to_string(), t.elapsed()));
            }
        } else {
            println!("\nSKIP  gate: needs the amd64 artifact on an amd64 machine");
        }
    }
    if is_root {
        // The comparison means something only if the two builds really took the two paths.
        println!(
            "\nlibclang: reference used it: {reference_libclang_seen}; the static artifacts \
             said they parse clang's text instead: {static_text_seen}"
        );
        ok &= static_text_seen;
    }
    println!("\ndist-check timings:");
    for (what, d) in &timings {
        println!("  {what:<36} {:>7.1} s", d.as_secs_f64());
    }
    println!(
        "  {:<36} {:>7.1} s\ndist-check: {rows} artifact runs, {}",
        "total",
        total.elapsed().as_secs_f64(),
        if ok {
            "no crash, every verdict the release build's"
        } else {
            "FAILED (a crash or a different verdict above)"
        }
    );
    Ok(ok)
}

/// The kernel-upgrade gate from the shipped binary alone: a user's values file judged on
/// Debian's 6.1 and 6.12 cloud kernels, booted under qemu (TCG). Checks the gate's exit code
/// and that each guest's report judged that values file on that kernel. `guest`: guests of
/// another architecture (`--arch`) running that architecture's artifact.
fn gate_step(preflight: &Path, guest: Option<(Arch, &Path)>, root: &Path) -> anyhow::Result<bool> {
    let results = root.join(match guest {
        None => "target/dist-check/gate".to_string(),
        Some((arch, _)) => format!("target/dist-check/gate-{}", arch.name()),
    });
    let _ = std::fs::remove_dir_all(&results);
    let mut guest_args = Vec::new();
    if let Some((arch, binary)) = guest {
        guest_args.extend([
            "--arch".into(),
            arch.name().into(),
            "--guest-binary".into(),
            binary.display().to_string(),
        ]);
    }
    let args = [
        "gate",
        "--kernel",
        "6.1",
        "--kernel",
        "6.12",
        "--cilium-version",
        "1.16.4",
        "-f",
        "fixtures/values/homelab.yaml",
        "--results",
    ];
    println!(
        "\n{} {} {} {}",
        preflight.display(),
        args.join(" "),
        results.display(),
        guest_args.join(" ")
    );
    let out = Command::new(preflight)
        .args(args)
        .arg(&results)
        .args(&guest_args)
        .current_dir(root)
        .output()
        .context("running preflight gate")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    let code = out.status.code();
    let mut ok = true;
    let mut say = |good: bool, what: String| {
        println!("  [{}] {what}", if good { "ok" } else { "FAIL" });
        ok &= good;
    };
    if code == Some(2) || code.is_none() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    // homelab.yaml is NO-GO on both kernels for the same reason (the 1.16 chart refuses its
    // `tunnel` and `kubeProxyReplacement: disabled`): nothing got worse, the gate passes.
    say(code == Some(0), format!("gate exit {code:?}, expected 0"));
    let mut releases = Vec::new();
    // No results directory (the gate refused its arguments): no report, said below.
    for entry in std::fs::read_dir(&results).into_iter().flatten().flatten() {
        let run = entry.path().join("run.json");
        if let Ok(text) = std::fs::read_to_string(&run) {
            let report: Value = serde_json::from_str(&text).unwrap_or_default();
            let release = entry.file_name().to_string_lossy().into_owned();
            let kernel = report
                .pointer("/node/kernel_release")
                .and_then(Value::as_str)
                .unwrap_or("");
            say(
                kernel == release,
                format!("{release}: the report is the guest's (kernel {kernel})"),
            );
            let sources = report.pointer("/target/value_sources").cloned();
            say(
                sources == Some(serde_json::json!(["/etc/preflight/values/1-homelab.yaml"]))
                    && report.pointer("/target/cilium_version") == Some(&Value::from("1.16.4")),
                format!("{release}: judged homelab.yaml for Cilium 1.16.4 ({sources:?})"),
            );
            let blocked = report
                .pointer("/verdict/capabilities")
                .and_then(Value::as_array)
                .and_then(|caps| caps.iter().find(|c| c["capability"] == "chart-values"))
                .is_some_and(|c| c["go"] == Value::Bool(false));
            say(
                blocked,
                format!("{release}: chart-values is NO-GO (the 1.16 chart refuses `tunnel`)"),
            );
            let base_go = report
                .pointer("/verdict/capabilities")
                .and_then(Value::as_array)
                .and_then(|caps| caps.iter().find(|c| c["capability"] == "base-datapath"))
                .is_some_and(|c| c["go"] == Value::Bool(true));
            say(
                base_go,
                format!("{release}: base-datapath is go on the real kernel"),
            );
            releases.push(release);
        }
    }
    releases.sort();
    let arch = guest.map_or(Arch::Amd64, |(arch, _)| arch).name();
    say(
        releases.len() == 2
            && releases[0].starts_with("6.1.")
            && releases[1].starts_with("6.12.")
            && releases.iter().all(|r| r.ends_with(&format!("-{arch}"))),
        format!("a report from each {arch} kernel: {releases:?}"),
    );
    Ok(ok)
}

fn short(s: &str) -> String {
    let line: String = s.chars().take(150).collect();
    if line.len() < s.len() {
        format!("{line}…")
    } else {
        line
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_node_and_compile_scenario_is_a_case() {
        let root = workspace_root();
        let cases = cases(&root).unwrap();
        let nodes = std::fs::read_dir(root.join("fixtures/nodes"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(
            cases.iter().filter(|c| c.args[0] == "run").count(),
            2 * nodes
        );
        assert!(
            cases
                .iter()
                .any(|c| c.name == "run --root fixtures/nodes/failed-cilium --host-kernel")
        );
        for fixture in ["clean", "missing-node-config", "stale-node-config"] {
            assert!(
                cases.iter().any(|c| c.args[0] == "compile"
                    && c.args.contains(&format!("fixtures/compile/{fixture}/root"))),
                "{fixture}"
            );
        }
    }

    #[test]
    fn the_verdict_of_a_run_names_the_summary_and_what_blocks() {
        let case = Case {
            name: "run".into(),
            args: vec!["run".into()],
            live: false,
        };
        let report = br#"{"verdict":{"summary":"NO-GO: x","capabilities":[
            {"capability":"base-datapath","go":false,"blocking":["kernel.config.bpf"]},
            {"capability":"hubble","go":true,"blocking":[]}]}}"#;
        assert_eq!(
            verdict_of(&case, report),
            "NO-GO: x [base-datapath=no(kernel.config.bpf) hubble=go]"
        );
        assert!(verdict_of(&case, b"").starts_with("(no JSON report"));
    }
}

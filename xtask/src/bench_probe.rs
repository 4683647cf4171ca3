//! `cargo xtask bench-probe`: preflight probe vs bpftool feature probe, side by side.
use std::{collections::BTreeMap, path::PathBuf, process::Command};

use anyhow::{Context, bail};
use preflight::probe::{
    Load, catalog,
    sys::{self, Insn},
};
use serde_json::Value;

use crate::measure::{self, median};

/// `BPF_F_SLEEPABLE` (include/uapi/linux/bpf.h).
const BPF_F_SLEEPABLE: u32 = 1 << 4;

#[derive(clap::Args)]
pub struct Args {
    /// Rounds per tool (alternating).
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// The preflight binary (default: build the release binary and use it).
    #[arg(long)]
    preflight: Option<PathBuf>,
    #[arg(long, default_value = "bpftool")]
    bpftool: String,
}

fn release_binary() -> anyhow::Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "preflight", "--quiet"])
        .status()?;
    anyhow::ensure!(status.success(), "cargo build --release failed");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    Ok(target.join("release/preflight"))
}

struct Series {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    rss: i64,
}

impl Series {
    fn new() -> Self {
        Self {
            wall: vec![],
            cpu: vec![],
            rss: 0,
        }
    }
    fn push(&mut self, s: &measure::Sample) {
        self.wall.push(s.wall_ms);
        self.cpu.push(s.cpu_ms);
        self.rss = self.rss.max(s.max_rss_kib);
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("bench-probe loads BPF programs: run it as root");
    }
    let preflight = match &args.preflight {
        Some(p) => p.clone(),
        None => release_binary()?,
    };
    let mut pf_all = Series::new();
    let mut pf_default = Series::new();
    let mut bt = Series::new();
    let (mut pf_json, mut bt_json) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Alternate which goes first so neither always runs on a warmer kernel.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            if which == 0 {
                let s = measure::run(
                    Command::new(&preflight).args(["probe", "--all", "--format", "json"]),
                )?;
                pf_all.push(&s);
                pf_json = s.stdout;
            } else {
                let s = measure::run(Command::new(&args.bpftool).args(["feature", "probe", "-j"]))
                    .with_context(|| format!("running {}", args.bpftool))?;
                bt.push(&s);
                bt_json = s.stdout;
            }
        }
        pf_default.push(&measure::run(
            Command::new(&preflight).args(["probe", "--format", "json"]),
        )?);
    }
    let bt_version = Command::new(&args.bpftool).arg("--version").output()?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    println!(
        "kernel {}; {}; {} rounds, alternating",
        kernel.trim(),
        String::from_utf8_lossy(&bt_version.stdout)
            .lines()
            .next()
            .unwrap_or("bpftool"),
        args.rounds
    );
    println!(
        "\n{:<44} {:>10} {:>10} {:>10}",
        "command", "wall ms", "cpu ms", "peak RSS"
    );
    for (name, s) in [
        ("preflight probe --all --format json", &pf_all),
        ("bpftool feature probe -j", &bt),
        ("preflight probe --format json (default)", &pf_default),
    ] {
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>7} KiB",
            name,
            median(s.wall.clone()),
            median(s.cpu.clone()),
            s.rss
        );
    }
    println!(
        "ratio preflight --all / bpftool: wall {:.2}, cpu {:.2}",
        median(pf_all.wall.clone()) / median(bt.wall.clone()),
        median(pf_all.cpu.clone()) / median(bt.cpu.clone())
    );
    let pf: Value = serde_json::from_slice(&pf_json)?;
    let bt: Value = serde_json::from_slice(&bt_json)?;
    agreement(&pf, &bt);
    Ok(())
}

#[derive(Default)]
struct Tally {
    compared: usize,
    agree: usize,
    /// explanation → items
    disagree: BTreeMap<String, Vec<String>>,
}

fn ours(v: &Value) -> Option<&str> {
    v.get("status").and_then(Value::as_str)
}

/// Compares every item both tools report; explains each disagreement.
fn agreement(pf: &Value, bt: &Value) {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for (kind, bt_key, suffix) in [
        ("program_types", "program_types", "_prog_type"),
        ("map_types", "map_types", "_map_type"),
    ] {
        let t = tallies.entry(kind).or_default();
        for (name, status) in pf[kind].as_object().into_iter().flatten() {
            let Some(theirs) = bt[bt_key]
                .get(format!("have_{name}{suffix}"))
                .and_then(Value::as_bool)
            else {
                t.disagree
                    .entry("bpftool 7.1 does not know this type (newer than its libbpf 1.1)".into())
                    .or_default()
                    .push(name.clone());
                continue;
            };
            t.compared += 1;
            match (ours(status), theirs) {
                (Some("available"), true) | (Some("unavailable"), false) => t.agree += 1,
                (Some("unknown"), false) => {
                    let reason = status["reason"].as_str().unwrap_or("");
                    t.disagree
                        .entry(format!(
                            "we say unknown ({reason}); bpftool collapses an errno into 'no'"
                        ))
                        .or_default()
                        .push(name.clone());
                }
                (ours, theirs) => {
                    t.disagree
                        .entry(format!("unexplained: preflight {ours:?}, bpftool {theirs}"))
                        .or_default()
                        .push(name.clone());
                }
            }
        }
    }
    let t = tallies.entry("helpers").or_default();
    for (prog, helpers) in pf["helpers"].as_object().into_iter().flatten() {
        let Some(list) = bt["helpers"]
            .get(format!("{prog}_available_helpers"))
            .and_then(Value::as_array)
        else {
            t.disagree
                .entry("program type unknown to bpftool 7.1".into())
                .or_default()
                .push(prog.clone());
            continue;
        };
        let theirs: std::collections::HashSet<&str> =
            list.iter().filter_map(Value::as_str).collect();
        let prog_num = catalog::program_type_number(prog);
        for (helper, status) in helpers.as_object().into_iter().flatten() {
            t.compared += 1;
            let bt_has = theirs.contains(format!("bpf_{helper}").as_str());
            match (ours(status), bt_has) {
                (Some("available"), true) | (Some("unavailable"), false) => t.agree += 1,
                (Some("unavailable"), true) => {
                    let attach = catalog::expected_attach_type(prog);
                    let why = prog_num
                        .map(|n| verifier_says(n, attach, helper))
                        .unwrap_or_default();
                    t.disagree
                        .entry(format!("bpftool says available, verifier says no: {why}"))
                        .or_default()
                        .push(format!("{prog}/{helper}"));
                }
                (_, false) if !bpftool_knows(bt, helper) => {
                    t.disagree.entry("bpftool 7.1 never probes it (newer than its headers, or noisy: trace_printk & co.)".into()).or_default().push(format!("{prog}/{helper}"));
                }
                (Some("unknown"), _) => {
                    let reason = status["reason"].as_str().unwrap_or("").to_string();
                    t.disagree
                        .entry(format!("we say unknown: {reason}"))
                        .or_default()
                        .push(format!("{prog}/{helper}"));
                }
                (ours, theirs) => {
                    t.disagree
                        .entry(format!("other: preflight {ours:?}, bpftool {theirs}"))
                        .or_default()
                        .push(format!("{prog}/{helper}"));
                }
            }
        }
    }
    println!("\nagreement with bpftool, item by item");
    println!(
        "{:<15} {:>9} {:>9} {:>10}",
        "kind", "compared", "agree", "disagree"
    );
    for (kind, t) in &tallies {
        let n: usize = t.disagree.values().map(Vec::len).sum();
        println!("{kind:<15} {:>9} {:>9} {:>10}", t.compared, t.agree, n);
    }
    for (kind, t) in &tallies {
        for (why, items) in &t.disagree {
            let sample: Vec<_> = items.iter().take(4).cloned().collect();
            println!(
                "  {kind}: {} × {why}\n      e.g. {}",
                items.len(),
                sample.join(", ")
            );
        }
    }
}

/// Whether bpftool lists the helper for any program type at all.
fn bpftool_knows(bt: &Value, helper: &str) -> bool {
    let name = format!("bpf_{helper}");
    bt["helpers"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(_, list)| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|h| h.as_str() == Some(name.as_str())))
        })
}

/// Loads `call helper; exit` as program type `prog` with a verifier log and quotes the verdict
/// line, to show why bpftool's answer is wrong.
fn verifier_says(prog: u32, attach: u32, helper: &str) -> String {
    let Some(id) = catalog::helper(helper) else {
        return String::new();
    };
    let insns = [Insn::call(id as i32), Insn::exit()];
    match sys::load(prog, attach, &insns) {
        Load::Rejected { errno, log } => {
            if log.contains("Syscall programs can only be sleepable") {
                // bpftool loads syscall programs without BPF_F_SLEEPABLE, so the kernel refuses
                // them whatever the helper and bpftool reads that as "no verdict, so available".
                // Loaded sleepable, as our probe does, the verifier judges the helper itself.
                match sys::load_with_flags(prog, attach, BPF_F_SLEEPABLE, &insns) {
                    Load::Rejected { log, .. } if log.contains("cannot use helper") => {
                        "bpftool loads syscall programs non-sleepable (the kernel refuses any); loaded sleepable, the verifier refuses this helper".into()
                    }
                    other => format!("syscall re-check loaded sleepable: {other:?}"),
                }
            } else if log.contains("program of this type cannot use helper") {
                "'program of this type cannot use helper' (6.10+ wording bpftool 7.1 does not match)".into()
            } else if log.contains("unknown func") || log.contains("invalid func") {
                "'unknown func'".into()
            } else {
                // The statistics footer ("processed N insns …") says nothing about why; quote
                // the last line before it, and the errno, which tells EINVAL from EPERM.
                let last = log
                    .lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| {
                        !l.is_empty()
                            && !l.starts_with("processed ")
                            && !l.starts_with("verification time")
                            && !l.starts_with("stack depth")
                    })
                    .unwrap_or("empty verifier log");
                let err = std::io::Error::from_raw_os_error(errno);
                format!("re-check said: {last} ({err})")
            }
        }
        Load::Loaded { .. } => "loaded on re-check (?)".into(),
    }
}

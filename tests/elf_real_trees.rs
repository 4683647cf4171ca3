//! Real Cilium trees (../shared/cilium: 1.16.15, 1.18.3, 1.20.0-dev, unmodified) through the
//! ELF loader into this kernel's verifier. Each tree is extracted to a temp dir and compiled the
//! way the agent compiles (compile/runner.rs: its flags, its include order) with the tree's
//! own dummy headers (the state dirs are empty, so every `<node_config.h>` falls through to the
//! one in the tree), clang-16 for 1.16 and clang-19 for 1.18+. bpf_sock.c defines no program
//! under the dummy headers, so it is also built with the tree's own Makefile options
//! (MAX_LB_OPTIONS, what Cilium's CI compiles), which gives the cgroup programs.
//!
//! Where ../shared is absent these tests are ignored (build.rs sets `shared_cilium_trees`).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use preflight::{
    compile::{
        elf::{LoadOptions, Loader, ObjectVerdict, Verdict},
        headers::StateLayout,
        profile,
        runner::{self, Inputs, Job},
        toolchain::Toolchain,
    },
    probe::{self, LiveKernel, Scope},
};

const TREES: &[(&str, u32)] = &[("1.16.15", 16), ("1.18.3", 19), ("1.20.0-dev", 19)];
const PROGRAMS: &[&str] = &["bpf_lxc", "bpf_host", "bpf_overlay", "bpf_sock", "bpf_xdp"];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(shared_cilium_trees)]
fn shared() -> PathBuf {
    PathBuf::from(env!("PREFLIGHT_SHARED_CILIUM"))
}

#[cfg(not(shared_cilium_trees))]
fn shared() -> PathBuf {
    panic!("needs ../shared/cilium (real Cilium trees, outside the repository)")
}

/// Extracts `bpf.tar.gz` (prefix `bpf/`) and returns the bpf dir.
fn extract(version: &str, into: &Path) -> PathBuf {
    let tgz = shared().join(version).join("bpf.tar.gz");
    let file = std::fs::File::open(&tgz).unwrap_or_else(|e| panic!("{}: {e}", tgz.display()));
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(into)
        .unwrap();
    into.join("bpf")
}

/// A variable of the tree's own Makefile (`include ../Makefile.defs` is satisfied by an empty
/// file beside the extracted tree, outside it).
fn makefile_var(bpf: &Path, var: &str) -> Vec<String> {
    let defs = bpf.parent().unwrap().join("Makefile.defs");
    if !defs.exists() {
        std::fs::write(&defs, "").unwrap();
    }
    let out = Command::new("make")
        .args([
            "-s",
            "--no-print-directory",
            "ROOT_DIR=..",
            "-f",
            "Makefile",
        ])
        .arg("--eval")
        .arg("print-%: ; @echo $($*)")
        .arg(format!("print-{var}"))
        .current_dir(bpf)
        .output()
        .expect("make runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The agent's command lines for a tree, over empty state dirs (so the dummies are used).
fn jobs(version: &str, clang: u32, bpf: &Path, scratch: &Path, extra: &[(&str, &str)]) -> Vec<Job> {
    let profile =
        profile::for_version(&preflight::cilium::CiliumVersion::parse(version).unwrap()).unwrap();
    let toolchain = Toolchain {
        clang: PathBuf::from(format!("/usr/bin/clang-{clang}")),
        major: clang,
        version: String::new(),
        llc: None,
    };
    let state = StateLayout {
        root: scratch.join("state"),
        template_hash: "dummy".into(),
    };
    std::fs::create_dir_all(state.globals()).unwrap();
    std::fs::create_dir_all(state.template_dir()).unwrap();
    let out = scratch.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let inputs = Inputs {
        profile: &profile,
        toolchain: &toolchain,
        mcpu: "v3",
        bpf_dir: bpf,
        state: &state,
        out_dir: &out,
        nr_cpus: 2,
    };
    // The agent's `-DCALLS_MAP=…` (bpf_overlay ≤ 1.17) goes with its generated node_config.h;
    // with the dummy one it collides (the very incident compile/explain.rs explains), so a
    // dummy-header build leaves it out, as the tree's own Makefile does.
    let job = |p: &str| {
        let mut j = runner::job(p, &inputs);
        j.clang_args.retain(|a| !a.starts_with("-DCALLS_MAP="));
        j
    };
    let mut jobs: Vec<Job> = PROGRAMS.iter().map(|p| job(p)).collect();
    // Variants with the tree's own Makefile options: (program, Makefile variable).
    for (program, var) in extra {
        let mut j = job(program);
        let opts = makefile_var(bpf, var);
        let at = j.clang_args.iter().position(|a| a == "-c").unwrap();
        j.clang_args.splice(at..at, opts);
        let renamed = out.join(format!("{program}.{var}.o"));
        let last = j.clang_args.len() - 1;
        j.clang_args[last] = renamed.display().to_string();
        j.output = renamed;
        j.program = format!("{program}.{var}");
        jobs.push(j);
    }
    jobs
}

fn compile(jobs: &[Job]) {
    for (job, o) in jobs
        .iter()
        .zip(runner::run_all(jobs, runner::default_workers(), false))
    {
        assert!(
            o.success,
            "{}: {}\n{}",
            job.program,
            job.command_line(),
            o.stderr
        );
    }
}

fn summary(version: &str, program: &str, v: &ObjectVerdict) -> String {
    let count = |f: fn(&Verdict) -> bool| v.programs.iter().filter(|p| f(&p.verdict)).count();
    let mut s = format!(
        "{version:<11} {program:<24} loaded {:>2}  rejected {}  unknown {}  pruned {:>2}  tail calls {:>2}  insns {:>7}  maps {:>2}  config {}  btf {}",
        count(|v| matches!(v, Verdict::Loaded)),
        count(|v| matches!(v, Verdict::Rejected { .. })),
        count(|v| matches!(v, Verdict::Unknown { .. })),
        v.pruned.len(),
        v.tail_calls.len(),
        v.programs
            .iter()
            .filter_map(|p| p.verified_insns)
            .sum::<u32>(),
        v.maps.len(),
        v.config.style,
        v.btf,
    );
    for p in &v.programs {
        if let Verdict::Rejected { log_tail, .. } = &p.verdict {
            let why = log_tail
                .lines()
                .rev()
                .find(|l| {
                    !l.starts_with("processed")
                        && !l.starts_with("verification")
                        && !l.starts_with("stack depth")
                })
                .unwrap_or("");
            s.push_str(&format!("\n    REJECTED {} ({}): {why}", p.name, p.section));
        }
    }
    s
}

/// Whether this kernel lets XDP programs call bpf_xdp_adjust_meta (Cilium's bpf_xdp does):
/// asked by the probe, independently of the loader.
fn xdp_adjust_meta() -> bool {
    probe::probe(&LiveKernel, Scope::Cilium)
        .helper("xdp", "xdp_adjust_meta")
        .is_some_and(|s| s.is_available())
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "needs ../shared/cilium (real Cilium trees, outside the repository)"
)]
fn every_real_object_parses_and_the_kernel_judges_every_program() {
    let adjust_meta = is_root() && xdp_adjust_meta();
    let mut report = Vec::new();
    for (version, clang) in TREES {
        let dir = tempfile::tempdir().unwrap();
        let bpf = extract(version, dir.path());
        let jobs = jobs(
            version,
            *clang,
            &bpf,
            dir.path(),
            &[("bpf_sock", "MAX_LB_OPTIONS")],
        );
        compile(&jobs);
        let legacy = preflight::cilium::CiliumVersion::parse(version)
            .unwrap()
            .minor
            < 18;
        // One loader per tree: one bpffs, as a node has, so global maps are shared.
        let loader = Loader::new();
        let mut shared_pins = 0;
        for job in &jobs {
            let v = loader.load_file(&job.output, &LoadOptions::default());
            report.push(summary(version, &job.program, &v));
            let ctx = || format!("{version} {}: {v:#?}", job.program);
            assert!(v.object_error.is_none(), "{}", ctx());
            assert!(v.unknown_sections.is_empty(), "{}", ctx());
            assert_eq!(
                v.config.style,
                if legacy { "inline" } else { "map" },
                "{}",
                ctx()
            );
            let want_type = match job.program.split('.').next().unwrap() {
                "bpf_xdp" => "xdp",
                "bpf_sock" => "cgroup",
                _ => "sched_cls",
            };
            for p in &v.programs {
                assert!(
                    p.prog_type.starts_with(want_type),
                    "{} {}: {}",
                    p.name,
                    p.prog_type,
                    ctx()
                );
            }
            for p in &v.pruned {
                assert!(
                    p.section.ends_with("/tail") || p.section.starts_with("2/"),
                    "{}",
                    ctx()
                );
            }
            shared_pins += v.maps.iter().filter(|m| m.pinning == "reused pin").count();
            // Each convention, as the version writes it.
            if job.program == "bpf_lxc" {
                let drop = v
                    .programs
                    .iter()
                    .find(|p| p.tail_call.as_ref().is_some_and(|t| t.slot == 1))
                    .unwrap_or_else(|| panic!("the drop-notify tail call in slot 1: {}", ctx()));
                if legacy {
                    assert_eq!(drop.section, "2/1");
                    assert_eq!(
                        drop.tail_call.as_ref().unwrap().map,
                        "test_cilium_calls_65535"
                    );
                    let policy = v.programs.iter().find(|p| p.section == "1/0xffff").unwrap();
                    assert_eq!(policy.tail_call.as_ref().unwrap().slot, 0xffff);
                } else {
                    assert_eq!(drop.section, "tc/tail");
                    assert_eq!(drop.tail_call.as_ref().unwrap().map, "cilium_calls");
                    assert!(v.programs.iter().any(|p| p.section == "tc/entry"));
                }
            }
            if job.program == "bpf_sock.MAX_LB_OPTIONS" {
                for (name, section, attach) in [
                    (
                        "cil_sock4_connect",
                        "cgroup/connect4",
                        "cgroup_inet4_connect",
                    ),
                    (
                        "cil_sock6_sendmsg",
                        "cgroup/sendmsg6",
                        "cgroup_udp6_sendmsg",
                    ),
                    (
                        "cil_sock4_post_bind",
                        "cgroup/post_bind4",
                        "cgroup_inet4_post_bind",
                    ),
                ] {
                    let p = v
                        .program(name)
                        .unwrap_or_else(|| panic!("{name}: {}", ctx()));
                    assert_eq!(
                        (p.section.as_str(), p.attach_type.as_deref()),
                        (section, Some(attach))
                    );
                }
            }
            // The kernel's answers (as root; otherwise "unknown", never a guess).
            for p in &v.programs {
                let want_loaded = !is_root()
                    || !job.program.starts_with("bpf_xdp")
                    || adjust_meta
                    || !matches!(&p.verdict, Verdict::Rejected { log_tail, .. } if log_tail.contains("bpf_xdp_adjust_meta"));
                match &p.verdict {
                    Verdict::Loaded => assert!(is_root()),
                    Verdict::Unknown { reason } => {
                        assert!(!is_root(), "{}: {reason}", p.name);
                        assert!(reason.contains("Operation not permitted"), "{reason}");
                    }
                    Verdict::Rejected { log_tail, .. } => {
                        assert!(
                            !want_loaded,
                            "{version} {} {} rejected:\n{log_tail}",
                            job.program, p.name
                        );
                    }
                }
            }
            if is_root() && job.program == "bpf_xdp" {
                let entry = v.program("cil_xdp_entry").unwrap();
                assert_eq!(
                    matches!(entry.verdict, Verdict::Loaded),
                    adjust_meta,
                    "cil_xdp_entry loads exactly when the probe says XDP may call bpf_xdp_adjust_meta: {}",
                    ctx()
                );
            }
            // Every tail call that loaded sits in its program array's slot.
            for p in v
                .programs
                .iter()
                .filter(|p| matches!(p.verdict, Verdict::Loaded))
            {
                if let Some(slot) = &p.tail_call {
                    assert!(
                        v.tail_calls.iter().any(|t| t.map == slot.map
                            && t.slot == slot.slot
                            && t.program == p.name),
                        "{} not wired: {}",
                        p.name,
                        ctx()
                    );
                }
            }
        }
        if is_root() {
            assert!(
                shared_pins > 0,
                "{version}: later objects reuse the maps pinned by earlier ones"
            );
        }
    }
    eprintln!("\n{}", report.join("\n"));
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "needs ../shared/cilium (real Cilium trees, outside the repository)"
)]
#[cfg_attr(
    shared_cilium_trees,
    ignore = "slow (about 5 minutes of clang on 2 cores): run with --ignored"
)]
fn maximal_builds_of_every_program_load() {
    let mut report = Vec::new();
    for (version, clang) in TREES {
        let dir = tempfile::tempdir().unwrap();
        let bpf = extract(version, dir.path());
        let extra = [
            ("bpf_lxc", "MAX_LXC_OPTIONS"),
            ("bpf_host", "MAX_HOST_OPTIONS"),
            ("bpf_overlay", "MAX_OVERLAY_OPTIONS"),
            ("bpf_sock", "MAX_LB_OPTIONS"),
            ("bpf_xdp", "MAX_XDP_OPTIONS"),
        ];
        let all = jobs(version, *clang, &bpf, dir.path(), &extra);
        let max: Vec<Job> = all
            .into_iter()
            .filter(|j| j.program.contains('.'))
            .collect();
        compile(&max);
        let loader = Loader::new();
        for job in &max {
            let v = loader.load_file(&job.output, &LoadOptions::default());
            report.push(summary(version, &job.program, &v));
            assert!(
                v.object_error.is_none() && v.unknown_sections.is_empty(),
                "{v:#?}"
            );
            if is_root() && !job.program.starts_with("bpf_xdp") {
                assert!(
                    v.all_loaded(),
                    "{version} {}: {}",
                    job.program,
                    report.last().unwrap()
                );
            }
        }
    }
    eprintln!("\n{}", report.join("\n"));
}

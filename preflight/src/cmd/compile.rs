//! `preflight compile`: the compile stage on its own, on the built-in templates or a real bpf
//! dir and state dir, with the findings and the verifier's answer. `--bench` adds the figures
//! the benchmark reports.
use std::{fmt::Write as _, time::Instant};

use crate::{
    cilium::{Target, TargetSpec},
    cmd::CompileArgs,
    compile::{CompileReport, Options, StateSource, elf::Verdict, runner},
    exit,
    probe::{self, LiveKernel, Scope},
    report::Format,
};

pub fn compile(args: &CompileArgs) -> anyhow::Result<u8> {
    // Values decide the tunnel protocol and port, monitor aggregation and the capabilities
    // (which programs matter); bad values are bad input, named with file and line (exit 2).
    let target = Target::build(&TargetSpec {
        cilium_version: args.cilium_version.clone(),
        value_files: args.values.clone(),
        sets: args.set.clone(),
        ..TargetSpec::default()
    })?;
    if let Some(note) = &target.version_note {
        eprintln!("preflight: warning: {note}");
    }
    let live = nix::unistd::geteuid().is_root();
    let mut opts = Options::new(target);
    // Kept alive until the stage is done: a --bpf-tar is unpacked in its scratch dir.
    let resolved =
        crate::compile::source::resolve(&args.tree.request(true)).map_err(anyhow::Error::msg)?;
    opts.use_source(&resolved);
    opts.state = match &args.state_dir {
        Some(dir) => StateSource::Existing(dir.clone()),
        None if args.as_node => StateSource::Predict(args.root.host(false)?),
        None => StateSource::Generate,
    };
    opts.emit_state = args.emit_state.clone();
    opts.libclang = args.libclang.clone();
    opts.verify = !args.no_verify;
    opts.progress = true;
    if let Some(j) = args.jobs {
        opts.workers = j.max(1);
    }
    if live {
        opts.probes = Some(probe::probe(&LiveKernel, Scope::Cilium));
    }
    if args.bench_diagnostics {
        // Before the stage runs, so the libclang load is measured cold.
        eprint!(
            "{}",
            bench_diagnostics(&opts).map_err(|e| anyhow::anyhow!(e))?
        );
    }
    let report = crate::compile::run(&opts).map_err(|e| anyhow::anyhow!(e))?;
    match args.format {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => crate::out!("{}", render(&report)),
        Format::JsonLine => crate::outln!("{}", serde_json::to_string(&report)?),
        Format::Junit | Format::Markdown => {
            anyhow::bail!(
                "`preflight compile` prints text or json; junit and markdown are for `run`"
            )
        }
    }
    if args.bench {
        let mut text = bench(&report);
        let mut again = opts.clone();
        again.verify = false;
        again.progress = false;
        again.emit_state = None;
        let mut ratios = Vec::new();
        for round in 1..=5 {
            // Alternate which goes first so page cache and machine load do not favour one side.
            let (seq, par, n) =
                sequential_vs_parallel(&again, round % 2 == 0).map_err(|e| anyhow::anyhow!(e))?;
            ratios.push(par / seq);
            let _ = writeln!(
                text,
                "round {round}: {n} clang invocations, parallel wall {par:.1} ms vs the same \
                 invocations one after another {seq:.1} ms: ratio {:.2}",
                par / seq
            );
        }
        ratios.sort_by(f64::total_cmp);
        let _ = writeln!(
            text,
            "median ratio {:.2} (target <= 0.6 on 2 cores; load average {})",
            ratios[ratios.len() / 2],
            std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into())
        );
        eprint!("{text}");
    }
    let ok = report.programs.iter().all(|p| {
        p.compiled
            && p.verify
                .as_ref()
                .is_none_or(|v| v.rejected().next().is_none() && v.object_error.is_none())
    });
    if !ok {
        return Ok(exit::NO_GO);
    }
    // Compiled, but the verifier was to be asked and could not be: that is not a pass.
    if opts.verify && !live {
        eprintln!(
            "preflight: undecided: the objects compiled, but the verifier was not asked (not \
             root: loading needs CAP_BPF); run as root, or pass --no-verify for the compile alone"
        );
        return Ok(exit::ERROR);
    }
    Ok(exit::GO)
}

pub fn render(r: &CompileReport) -> String {
    let mut out = String::new();
    let tc = &r.toolchain;
    let _ = writeln!(
        out,
        "Cilium {} (profile {}): clang {} at {} ({:?}, image bundles LLVM {}), -mcpu={} ({})",
        r.cilium_version,
        r.profile.label(),
        tc.toolchain.version,
        tc.toolchain.clang.display(),
        tc.fit,
        tc.wanted_major,
        r.mcpu,
        r.mcpu_reason
    );
    let _ = writeln!(
        out,
        "datapath: {}{}",
        r.features.summary(),
        if r.features_written {
            ""
        } else {
            "; feature headers: the bpf dir's own"
        }
    );
    if let Some(risk) = &tc.risk {
        let _ = writeln!(out, "  toolchain risk: {risk}");
    }
    let _ = writeln!(out, "tree: {}", r.tree.describe());
    if let Some(why) = r.tree.version_mismatch(&r.cilium_version) {
        let _ = writeln!(out, "  note: {why}");
    }
    if let Some(tc) = &r.image_toolchain {
        match (&tc.version, &tc.why_not) {
            (Some(v), _) if tc.used => {
                let _ = writeln!(out, "  compiled with the image's clang {v} ({})", tc.clang);
            }
            (_, Some(why)) => {
                let _ = writeln!(out, "  not the image's clang: {why}");
            }
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "bpf dir: {}\nstate dir: {} ({}; node_config.h {}; template {})",
        r.bpf_dir,
        r.state.dir,
        r.state.source,
        r.state.node_config,
        &r.state.template_hash[..r.state.template_hash.len().min(12)]
    );
    for b in &r.init_blockers {
        let _ = writeln!(
            out,
            "  datapath init will fail: {} [{}]",
            b.detail, b.evidence
        );
        let _ = writeln!(out, "    fix: {}", b.remedy);
    }
    for p in &r.programs {
        let status = if p.compiled { "compiled" } else { "FAILED" };
        let _ = writeln!(out, "\n{:<12} {status} in {:.0} ms", p.name, p.wall_ms);
        if !p.diagnostics.is_empty() || p.libclang_fallback.is_some() {
            let why = p
                .libclang_fallback
                .as_deref()
                .map(|w| format!(" (not libclang: {w})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  diagnostics from {}{why}", p.diagnostics_from);
        }
        if let Some(o) = &p.object {
            let insns: u64 = o.programs.iter().map(|x| x.insns).sum();
            let _ = writeln!(
                out,
                "  object: {} bytes, {} programs ({insns} insns), {} maps",
                o.size,
                o.programs.len(),
                o.maps.len()
            );
        }
        for f in &p.findings {
            let _ = writeln!(
                out,
                "  [{}] {}",
                f.kind,
                f.subject.as_deref().unwrap_or(&f.message)
            );
            for s in &f.sites {
                let _ = writeln!(out, "    at {s}");
            }
            let _ = writeln!(out, "    why: {}", f.explanation);
            let _ = writeln!(out, "    fix: {}", f.remedy);
        }
        match (&p.verify, &p.verify_skipped) {
            (Some(v), _) => {
                if let Some(e) = &v.object_error {
                    let _ = writeln!(out, "  verifier: object not loadable: {e}");
                }
                for pv in &v.programs {
                    let insns = pv
                        .verified_insns
                        .map(|n| format!(", {n} insns processed"))
                        .unwrap_or_default();
                    let what = format!("{} ({} {})", pv.name, pv.section, pv.prog_type);
                    match &pv.verdict {
                        Verdict::Loaded => {
                            let _ = writeln!(out, "  verifier: {what} loaded{insns}");
                        }
                        Verdict::Rejected { log_tail, error } => {
                            let _ = writeln!(out, "  verifier: {what} REJECTED ({error})");
                            for l in log_tail.lines() {
                                let _ = writeln!(out, "    | {l}");
                            }
                        }
                        Verdict::Unknown { reason } => {
                            let _ = writeln!(out, "  verifier: {what} unknown: {reason}");
                        }
                    }
                }
                if !v.tail_calls.is_empty() {
                    let _ = writeln!(out, "  tail calls filled: {}", v.tail_calls.len());
                }
                if !v.pruned.is_empty() {
                    let _ = writeln!(
                        out,
                        "  not loaded, as the agent prunes them (no entry point reaches them): {}",
                        v.pruned
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                for u in &v.unknown_sections {
                    let _ = writeln!(
                        out,
                        "  section {}: unknown program type, not loaded ({})",
                        u.section,
                        u.functions.join(", ")
                    );
                }
                for n in &v.notes {
                    let _ = writeln!(out, "  note: {n}");
                }
            }
            (None, Some(why)) if p.compiled => {
                let _ = writeln!(out, "  verifier: skipped ({why})");
            }
            _ => {}
        }
    }
    out
}

/// Peak resident set of this process and of its largest child, in KiB.
fn peak_rss_kib() -> (i64, i64) {
    let get = |who| {
        nix::sys::resource::getrusage(who)
            .map(|u| u.max_rss())
            .unwrap_or(0)
    };
    (
        get(nix::sys::resource::UsageWho::RUSAGE_SELF),
        get(nix::sys::resource::UsageWho::RUSAGE_CHILDREN),
    )
}

/// Benchmark figures: the stage's compile phase against the same clang invocations run one
/// after another in this process (re-run here, so both see the same machine state).
pub fn bench(r: &CompileReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n== compile stage benchmark ==");
    let _ = writeln!(
        out,
        "programs: {}  workers: {}",
        r.programs.len(),
        r.timings.workers
    );
    let _ = writeln!(
        out,
        "stage wall (unpack + headers + compile + explain + verify): {:.1} ms",
        r.timings.stage_ms
    );
    let _ = writeln!(
        out,
        "parallel compile phase wall:  {:.1} ms",
        r.timings.compile_ms
    );
    let _ = writeln!(
        out,
        "verify (kernel loads):        {:.1} ms",
        r.timings.verify_ms
    );
    let _ = writeln!(
        out,
        "prepare (clang --version per toolchain, unpack, headers): {:.1} ms",
        r.timings.prepare_ms
    );
    let from_libclang = r
        .programs
        .iter()
        .filter(|p| {
            matches!(
                p.diagnostics_from,
                crate::compile::libclang::Source::Libclang(_)
            )
        })
        .count();
    let _ = writeln!(
        out,
        "diagnostics: text parse {:.3} ms (all programs); libclang load {:.1} ms + parse {:.1} ms \
         ({from_libclang} programs failed or warned and were read through libclang)",
        r.timings.text_parse_ms, r.timings.libclang_load_ms, r.timings.libclang_parse_ms
    );
    let overhead = r.timings.stage_ms - r.timings.compile_ms - r.timings.verify_ms;
    let _ = writeln!(
        out,
        "tool overhead beyond clang and the kernel: {overhead:.1} ms"
    );
    let (rss_self, rss_child) = peak_rss_kib();
    let _ = writeln!(
        out,
        "peak RSS: preflight {:.1} MiB, largest clang {:.1} MiB",
        rss_self as f64 / 1024.0,
        rss_child as f64 / 1024.0
    );
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Resident set of this process now, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Diagnostics figures for each program that fails or warns: clang's compile, the text parse
/// of its output, and the libclang parse of the same translation unit; the libclang load; and
/// the resident set across repeated parses (a leak would grow it).
pub fn bench_diagnostics(opts: &Options) -> Result<String, String> {
    const TEXT_ROUNDS: u32 = 1000;
    const LIBCLANG_ROUNDS: usize = 5;
    const LEAK_ROUNDS: usize = 50;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== diagnostics benchmark: text parser vs libclang =="
    );
    let prepared = crate::compile::prepare(opts)?;
    let toolchain = &prepared.report.toolchain.toolchain;
    let t = Instant::now();
    let lib = crate::compile::libclang::open(&opts.libclang, toolchain);
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let lib = match lib {
        Ok(lib) => {
            let _ = writeln!(
                out,
                "libclang {} ({}) loaded in {load_ms:.1} ms (first use in this process)",
                lib.major,
                lib.path.display()
            );
            lib
        }
        Err(why) => {
            let _ = writeln!(out, "no libclang, nothing to compare: {why}");
            return Ok(out);
        }
    };
    let mut measured = None;
    for job in &prepared.jobs {
        let outcome = runner::run_one(job);
        let text = crate::compile::diag::parse(&outcome.stderr);
        if outcome.success && text.is_empty() {
            continue;
        }
        let t = Instant::now();
        for _ in 0..TEXT_ROUNDS {
            std::hint::black_box(crate::compile::diag::parse(std::hint::black_box(
                &outcome.stderr,
            )));
        }
        let text_ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(TEXT_ROUNDS);
        let mut rounds = Vec::new();
        let mut count = 0;
        for _ in 0..LIBCLANG_ROUNDS {
            let t = Instant::now();
            count = crate::compile::libclang::diagnostics(&lib, job)?.len();
            rounds.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let lib_ms = median(rounds);
        let _ = writeln!(
            out,
            "{:<12} clang {:.1} ms; text parse {:.4} ms ({} diagnostics, mean of {TEXT_ROUNDS}); \
             libclang parse {lib_ms:.1} ms ({count} diagnostics, median of {LIBCLANG_ROUNDS}): \
             {:.0}x the text parse, {:.0}% of the compile",
            job.program,
            outcome.wall_ms,
            text_ms,
            text.len(),
            lib_ms / text_ms.max(1e-9),
            100.0 * lib_ms / outcome.wall_ms.max(1e-9)
        );
        measured.get_or_insert(job);
    }
    let Some(job) = measured else {
        let _ = writeln!(
            out,
            "every program compiled without diagnostics: libclang is not used (try --as-node \
             --root fixtures/compile/missing-node-config/root)"
        );
        return Ok(out);
    };
    let before = rss_kib();
    for _ in 0..LEAK_ROUNDS {
        crate::compile::libclang::diagnostics(&lib, job)?;
    }
    let after = rss_kib();
    let _ = writeln!(
        out,
        "RSS across {LEAK_ROUNDS} more libclang parses of {}: {:.1} -> {:.1} MiB",
        job.program,
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    Ok(out)
}

/// Runs the same jobs in parallel and one after another; returns (sequential ms, parallel ms, jobs).
pub fn sequential_vs_parallel(
    opts: &Options,
    sequential_first: bool,
) -> Result<(f64, f64, usize), String> {
    let prepared = crate::compile::prepare(opts)?;
    let parallel = || {
        let t = Instant::now();
        let _ = runner::run_all(&prepared.jobs, opts.workers, false);
        t.elapsed().as_secs_f64() * 1e3
    };
    let sequential = || {
        let t = Instant::now();
        for job in &prepared.jobs {
            let _ = runner::run_one(job);
        }
        t.elapsed().as_secs_f64() * 1e3
    };
    let (seq, par) = if sequential_first {
        let s = sequential();
        (s, parallel())
    } else {
        let p = parallel();
        (sequential(), p)
    };
    Ok((seq, par, prepared.jobs.len()))
}

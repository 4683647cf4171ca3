//! One function per subcommand: parse nothing, print the result, return the exit code.
use std::{io::IsTerminal, time::Instant};

use crate::{
    checks,
    cilium::Target,
    cmd::{ProbeArgs, ProbeFormat, RunArgs},
    exit,
    facts::{Facts, GatherOptions},
    model::Readiness,
    probe::{self, LiveKernel},
    report::{self, Report, Timings},
    verdict,
};

/// Whether to colour output on stdout: `--color`, then NO_COLOR, then whether it is a terminal.
pub fn colour(choice: &str) -> bool {
    match choice {
        "always" => true,
        "never" => false,
        _ => std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
    }
}

pub fn run(args: &RunArgs, colour: bool) -> anyhow::Result<u8> {
    let start = Instant::now();
    let host = args.root.host(args.host_kernel)?;
    // Values errors (YAML line/column, bad --set) and unknown --ignore ids are input errors:
    // exit 2 before any probing.
    checks::validate_ignores(&args.ignore).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let target = Target::build(&args.target_spec())?;
    if let Some(note) = &target.version_note {
        eprintln!("preflight: warning: {note}");
    }
    let target_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut opts = GatherOptions {
        host: host.clone(),
        canaries: !args.no_canaries,
        compile: (!args.no_compile).then(|| target.clone()),
        tree: Default::default(),
    };
    // The tree is fetched only when the compile stage runs (not --no-compile; under --root
    // too: the agent's clang is its image's, not the node's); a bad --bpf-tar or an
    // unreachable --image is bad input, exit 2 before any probing.
    if opts.compile.is_some() {
        opts.tree = crate::compile::source::resolve(&args.tree.request(true))
            .map_err(anyhow::Error::msg)?;
    }
    let facts = Facts::gather(&opts);
    let t = Instant::now();
    let checks = checks::run_all(&facts, &target, &args.ignore);
    let mut verdict = verdict::decide(&target, &checks);
    verdict::refine(&mut verdict, &facts, &target, &checks, &args.ignore);
    // GO after plan needs the plan's steps, which only a NO-GO asks for.
    if verdict.readiness() == Readiness::NoGo {
        let steps = crate::cmd::plan::plan_fixes(&host, &target);
        verdict::after_plan(&mut verdict, &checks, &steps);
    }
    let mut timings = Timings::default();
    for (stage, ms) in &facts.timings {
        timings.stages_ms.insert(stage.clone(), *ms);
    }
    timings
        .stages_ms
        .insert("checks".into(), t.elapsed().as_secs_f64() * 1e3);
    timings.stages_ms.insert("target".into(), target_ms);
    timings.total_ms = start.elapsed().as_secs_f64() * 1e3;
    let report = Report {
        schema_version: report::SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        node: host.node(facts.live),
        target,
        checks,
        verdict,
        timings,
        cluster_facts: Some(facts.cluster_facts()),
    };
    crate::cmd::report::emit(&report, args.format, &args.files, args.quiet, colour)?;
    Ok(if report.verdict.go || args.exit_zero {
        exit::GO
    } else if report.verdict.decided {
        exit::NO_GO
    } else {
        exit::ERROR
    })
}

pub fn probe(args: &ProbeArgs) -> anyhow::Result<u8> {
    // Without the privilege every answer would be "could not tell": say so in one line.
    if let Err(why) = probe::live::bpf_privilege() {
        eprintln!("preflight: undecided: {why}; nothing was probed");
        return Ok(exit::ERROR);
    }
    let report = probe::probe(&LiveKernel, args.scope());
    let text = match args.format {
        ProbeFormat::Json => serde_json::to_string_pretty(&probe::ProbeJson::new(&report))? + "\n",
        ProbeFormat::Text => probe_text(&report),
    };
    crate::cmd::report::deliver(&text, args.output_file.as_deref(), None)?;
    Ok(exit::GO)
}

fn probe_text(report: &probe::ProbeReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let line = |out: &mut String, name: &str, s: &crate::model::Support| {
        let why = match s {
            crate::model::Support::Unknown { reason } => format!("  ({reason})"),
            crate::model::Support::Unavailable { reason: Some(r) } => format!("  ({r})"),
            _ => String::new(),
        };
        let _ = writeln!(out, "  {:<28} {}{}", name, s.label(), why);
    };
    let _ = writeln!(out, "Program types");
    for (n, s) in &report.program_types {
        line(&mut out, n, s);
    }
    let _ = writeln!(out, "Map types");
    for (n, s) in &report.map_types {
        line(&mut out, n, s);
    }
    for (prog, helpers) in &report.helpers {
        let available = helpers.values().filter(|s| s.is_available()).count();
        let _ = writeln!(
            out,
            "Helpers for {prog} ({available}/{} available)",
            helpers.len()
        );
        for (n, s) in helpers {
            line(&mut out, n, s);
        }
    }
    for (prog, why) in &report.helpers_not_probed {
        let _ = writeln!(out, "Helpers for {prog}: not probed ({why})");
    }
    let _ = writeln!(out, "Misc");
    for (n, s) in &report.misc {
        line(&mut out, n, s);
    }
    let _ = writeln!(out, "probed in {:.1} ms", report.elapsed_ms);
    out
}

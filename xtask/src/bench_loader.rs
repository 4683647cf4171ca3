//! `cargo xtask bench-loader [OBJECT.o ...]`: what the ELF loader (preflight/src/compile/elf)
//! costs next to the kernel's verifier. Runs the release build (it re-runs itself with
//! `--release` when built for debugging). Without objects it compiles the built-in templates
//! for the default target. Needs root: the loads are real.
use std::{path::PathBuf, process::Command};

use anyhow::bail;
use preflight::compile::{
    self,
    elf::{LoadOptions, Loader, read_object},
};

use crate::measure::median;

#[derive(clap::Args)]
pub struct Args {
    /// Rounds per object (a fresh scratch bpffs each round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Objects to load (default: the built-in templates, compiled here).
    objects: Vec<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        // The loader's own cost is what is measured: measure the optimised build.
        let status = Command::new(env!("CARGO"))
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "xtask",
                "--",
                "bench-loader",
            ])
            .arg(format!("--rounds={}", args.rounds))
            .args(&args.objects)
            .status()?;
        if !status.success() {
            bail!("bench-loader (release): {status}");
        }
        return Ok(());
    }
    if !nix_root() {
        bail!("bench-loader loads into the kernel: run it as root");
    }
    // Keep the template build alive while its objects are read.
    let mut _prepared = None;
    let objects = if args.objects.is_empty() {
        let opts = compile::Options::new(preflight::cilium::Target::default());
        let prepared = compile::prepare(&opts).map_err(anyhow::Error::msg)?;
        for (job, o) in prepared
            .jobs
            .iter()
            .zip(compile::runner::run_all(&prepared.jobs, 2, false))
        {
            if !o.success {
                bail!("{} did not compile:\n{}", job.program, o.stderr);
            }
        }
        let objects = prepared.jobs.iter().map(|j| j.output.clone()).collect();
        _prepared = Some(prepared);
        objects
    } else {
        args.objects.clone()
    };
    println!(
        "{:<44} {:>6} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10} {:>9} {:>7}",
        "object (median of rounds)",
        "progs",
        "parse ms",
        "link ms",
        "btf ms",
        "maps ms",
        "load ms",
        "verif. ms",
        "own ms",
        "own %"
    );
    let setup: Vec<f64> = (0..args.rounds)
        .map(|_| {
            let t = std::time::Instant::now();
            drop(Loader::new());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (mut own_sum, mut kernel_sum) = (0.0, 0.0);
    for path in &objects {
        let bytes = read_object(path).map_err(anyhow::Error::msg)?;
        let mut rows: Vec<[f64; 8]> = Vec::new();
        let mut programs = 0;
        for _ in 0..args.rounds {
            let loader = Loader::new();
            let v = loader.load(&bytes, &LoadOptions::default());
            if let Some(e) = &v.object_error {
                bail!("{}: {e}", path.display());
            }
            programs = v.programs.len();
            let t = &v.timings;
            // The loader's own work: everything but the kernel's map creation, BTF and
            // program loads (the verifier).
            let own = t.total_ms - t.maps_ms - t.prog_load_ms - t.btf_ms;
            rows.push([
                t.parse_ms,
                t.link_ms,
                t.btf_ms,
                t.maps_ms,
                t.prog_load_ms,
                t.verifier_ms,
                own,
                t.total_ms,
            ]);
        }
        let m = |i: usize| median(rows.iter().map(|r| r[i]).collect());
        let name = path
            .iter()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<PathBuf>();
        own_sum += m(6);
        kernel_sum += m(2) + m(3) + m(4);
        println!(
            "{:<44} {:>6} {:>9.2} {:>9.2} {:>8.2} {:>9.2} {:>10.2} {:>10.2} {:>9.2} {:>6.1}%",
            name.display(),
            programs,
            m(0),
            m(1),
            m(2),
            m(3),
            m(4),
            m(5),
            m(6),
            100.0 * m(6) / m(7).max(f64::EPSILON)
        );
    }
    println!(
        "all objects: loader's own work {own_sum:.1} ms, kernel (BTF, maps, verifier) {kernel_sum:.1} ms; \
         scratch bpffs (thread, private mount namespace, mount) {:.2} ms each (median)",
        median(setup)
    );
    Ok(())
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

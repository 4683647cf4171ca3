//! Project automation: `cargo xtask <task>`. Benchmarks print figures; they never assert timings.
mod bench_compile;
mod bench_probe;
mod measure;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "preflight project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// `preflight probe --all` against `bpftool feature probe`, alternating, same run: median wall
    /// and CPU time, ratio, peak RSS, and a per-item agreement table with every disagreement
    /// explained. Also times the default (Cilium-scope) probe. Needs root and bpftool.
    BenchProbe(bench_probe::Args),
    /// The datapath compile stage on the built-in templates (release build): stage wall time vs
    /// the same clang invocations run sequentially, tool overhead beyond clang, peak RSS.
    /// Extra arguments go to `preflight compile`, e.g. `-- --cilium-version 1.16`.
    BenchCompile(bench_compile::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::BenchProbe(args) => bench_probe::run(&args),
        Task::BenchCompile(args) => bench_compile::run(&args),
    }
}

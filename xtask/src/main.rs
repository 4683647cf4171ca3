//! Project automation: `cargo xtask <task>`. Benchmarks print figures; they never assert timings.
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::BenchProbe(args) => bench_probe::run(&args),
    }
}

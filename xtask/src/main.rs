//! Project automation: `cargo xtask <command>`. Each command prints what it did and the figures
//! it measured (benchmarks never assert timings); none needs more than scripts/setup.sh installs.
mod bench;
mod bench_compile;
mod bench_loader;
mod bench_probe;
mod chart_data;
mod dist;
mod dist_check;
mod measure;
mod vm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "preflight's build, release and test automation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the static, stripped release binary for each architecture
    /// (target/dist/<amd64|arm64>/preflight) and print its size.
    Dist(dist::DistArgs),
    /// Build each shipped artifact once (default amd64 and arm64) and the release build, run
    /// them all on every fixture node and compile fixture (arm64 under qemu-user): no crash,
    /// the release build's verdict. Prints the time of each step.
    DistCheck(dist_check::DistCheckArgs),
    /// Boot real Debian kernels in qemu (TCG) with the static preflight in an initramfs, bring
    /// the reports out and check them against what each kernel should have.
    VmTest(vm::VmTestArgs),
    /// Time `preflight aggregate` over generated node reports (default 10,000) and print the
    /// wall time, throughput and peak memory.
    BenchAggregate(bench::BenchArgs),
    /// `preflight probe --all` against `bpftool feature probe`, alternating, same run: median wall
    /// and CPU time, ratio, peak RSS, and a per-item agreement table with every disagreement
    /// explained. Also times the default probe (every program type, Cilium's maps and helpers). Needs root and bpftool.
    BenchProbe(bench_probe::Args),
    /// The datapath compile stage on the built-in templates (release build): stage wall time vs
    /// the same clang invocations run sequentially, tool overhead beyond clang, peak RSS.
    /// Extra arguments go to `preflight compile`, e.g. `-- --cilium-version 1.16`.
    BenchCompile(bench_compile::Args),
    /// The ELF loader next to the kernel's verifier (release build, root): per object the
    /// loader's own parse and link time against BTF, map creation and program loads. Objects as
    /// arguments, or the built-in templates.
    BenchLoader(bench_loader::Args),
    /// Regenerate preflight/src/cilium/charts/<version>.json from the real Cilium charts in
    /// shared/cilium (key set, validate.yaml rules, the defaults preflight reads, provenance).
    ChartData(chart_data::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dist(args) => dist::dist_command(&args).map(|_| true),
        Command::DistCheck(args) => dist_check::run_check(&args),
        Command::VmTest(args) => vm::vm_test(&args),
        Command::BenchAggregate(args) => bench::bench_aggregate(&args).map(|_| true),
        Command::BenchProbe(args) => bench_probe::run(&args).map(|_| true),
        Command::BenchCompile(args) => bench_compile::run(&args).map(|_| true),
        Command::BenchLoader(args) => bench_loader::run(&args).map(|_| true),
        Command::ChartData(args) => chart_data::run(&args).map(|_| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

//! Developer tasks: `cargo xtask <task>`.
//!
//! - `bench-compile [ARGS...]`: builds preflight in release mode and runs its compile stage
//!   with `--bench` (parallel vs sequential clang, tool overhead, peak RSS). Extra ARGS go to
//!   `preflight compile`, e.g. `--cilium-version 1.16`.
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("bench-compile") => bench_compile(args.collect()),
        other => bail!(
            "unknown task {:?}; tasks: bench-compile",
            other.unwrap_or("")
        ),
    }
}

fn bench_compile(extra: Vec<String>) -> anyhow::Result<ExitCode> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "preflight"])
        .current_dir(root)
        .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let status = Command::new(root.join("target/release/preflight"))
        .args(["compile", "--bench"])
        .args(&extra)
        .status()?;
    Ok(ExitCode::from(status.code().unwrap_or(2) as u8))
}

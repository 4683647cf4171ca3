//! `cargo xtask bench-compile`: builds preflight in release mode and runs `preflight compile
//! --bench`, then `--bench-diagnostics` on the missing-node_config.h scenario (text parser vs
//! libclang), which print the figures (the measuring lives next to the code it measures).
use std::process::Command;

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Passed to `preflight compile` (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    extra: Vec<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
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
        .args(&args.extra)
        .status()?;
    // 1 means a program did not compile or load: the figures are still printed.
    if status.code().is_none_or(|c| c > 1) {
        bail!("preflight compile --bench failed: {status}");
    }
    // Diagnostics: a scenario that fails (node_config.h missing), text parser vs libclang.
    let scenario = root.join("fixtures/compile/missing-node-config/root");
    let status = Command::new(root.join("target/release/preflight"))
        .args([
            "compile",
            "--bench-diagnostics",
            "--no-verify",
            "--as-node",
            "--root",
        ])
        .arg(&scenario)
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.code() != Some(1) {
        bail!("preflight compile --bench-diagnostics on the failing scenario: {status}");
    }
    Ok(())
}

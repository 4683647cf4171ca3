//! `cargo xtask bench-compile`: builds preflight in release mode and runs `preflight compile
//! --bench` on the built-in templates and on a real Cilium tree (`--tree`, by default the
//! 1.18.3 tree of $PREFLIGHT_SHARED when it is there, docs/compile.md#real-trees-for-the-tests), then `--bench-diagnostics` on the
//! missing-node_config.h scenario (text parser vs libclang). preflight prints the figures (the
//! measuring lives next to the code it measures).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct Args {
    /// A real Cilium tree to benchmark: a bpf dir or a `bpf.tar.gz` (leading `bpf/`). Default:
    /// $PREFLIGHT_SHARED/cilium/1.18.3/bpf.tar.gz when present (docs/compile.md).
    #[arg(long, value_name = "DIR|TAR")]
    tree: Option<PathBuf>,
    /// The tree's Cilium version.
    #[arg(long, default_value = "1.18.3")]
    tree_version: String,
    /// Passed to `preflight compile` (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    extra: Vec<String>,
}

/// The real trees: $PREFLIGHT_SHARED, else `shared/` beside (or two levels above) the workspace.
fn shared_tree(root: &Path, version: &str) -> Option<PathBuf> {
    std::env::var_os("PREFLIGHT_SHARED")
        .map(PathBuf::from)
        .into_iter()
        .chain([root.join("../shared"), root.join("../../shared")])
        .map(|d| d.join("cilium").join(version).join("bpf.tar.gz"))
        .find(|p| p.is_file())
}

/// A bpf dir for `tree`: itself, or the tarball extracted into `scratch`.
fn bpf_dir(tree: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    if tree.is_dir() {
        return Ok(tree.to_path_buf());
    }
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(tree)
        .arg("-C")
        .arg(scratch)
        .status()?;
    if !status.success() {
        bail!("tar -xzf {} failed: {status}", tree.display());
    }
    let dir = scratch.join("bpf");
    if !dir.is_dir() {
        bail!("{}: no bpf/ inside", tree.display());
    }
    Ok(dir)
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
    // The real tree: the agent's programs and headers, no verifier (its loader is separate).
    let tree = args
        .tree
        .clone()
        .or_else(|| shared_tree(root, &args.tree_version));
    match tree {
        Some(tree) => {
            let scratch =
                std::env::temp_dir().join(format!("preflight-bench.{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            let result = bpf_dir(&tree, &scratch).and_then(|dir| {
                eprintln!(
                    "\n== real tree: {} (Cilium {}) ==",
                    tree.display(),
                    args.tree_version
                );
                let status = Command::new(root.join("target/release/preflight"))
                    .args(["compile", "--bench", "--no-verify", "--cilium-version"])
                    .arg(&args.tree_version)
                    .arg("--bpf-dir")
                    .arg(&dir)
                    .args(&args.extra)
                    .stdout(std::process::Stdio::null())
                    .status()?;
                if status.code().is_none_or(|c| c > 1) {
                    bail!("preflight compile --bench --bpf-dir failed: {status}");
                }
                Ok(())
            });
            let _ = std::fs::remove_dir_all(&scratch);
            result?;
        }
        None => eprintln!(
            "\nno real tree (--tree DIR|TAR, or $PREFLIGHT_SHARED/cilium/{}/bpf.tar.gz): templates only",
            args.tree_version
        ),
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

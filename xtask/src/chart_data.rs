//! `cargo xtask chart-data`: what preflight knows of each real Cilium chart, regenerated from
//! the charts themselves (shared/cilium/<version>/chart.tar.gz) into
//! preflight/src/cilium/charts/<version>.json. The charts stay where they are; the data holds
//! their key names, validate.yaml rules, the defaults preflight reads and where they came from.
use std::path::PathBuf;

use anyhow::{Context, bail};
use preflight::cilium::chartdata;

#[derive(clap::Args)]
pub struct Args {
    /// The folder with <version>/chart.tar.gz (default: shared/cilium above the workspace).
    #[arg(long)]
    shared: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let shared = match &args.shared {
        Some(dir) => dir.clone(),
        None => chartdata::find_shared(&root)
            .context("no shared/cilium above the workspace; pass --shared DIR")?,
    };
    let readme = std::fs::read_to_string(shared.join("README.md")).ok();
    let charts = chartdata::shared_charts(&shared);
    if charts.is_empty() {
        bail!("{}: no <version>/chart.tar.gz", shared.display());
    }
    let out_dir = root.join("preflight/src/cilium/charts");
    std::fs::create_dir_all(&out_dir)?;
    for (version, tgz) in charts {
        let text = chartdata::generate(&tgz, readme.as_deref())
            .with_context(|| format!("{}", tgz.display()))?;
        let out = out_dir.join(format!("{version}.json"));
        let changed = std::fs::read_to_string(&out).ok().as_deref() != Some(text.as_str());
        std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
        println!(
            "{}: {} bytes{}",
            out.display(),
            text.len(),
            if changed { " (changed)" } else { "" }
        );
    }
    Ok(())
}

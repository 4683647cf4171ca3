//! `preflight schema`, `preflight diff`, and writing a rendered report to stdout or a file.
use std::path::Path;

use crate::{
    cmd::DiffArgs,
    exit,
    report::{Format, Report, diff, json_schema, read_json, render},
};

/// Prints the report (or writes it to `output`); with a file, the verdict line also goes to
/// stderr so a CI log still shows it.
pub fn emit(
    report: &Report,
    format: Format,
    output: Option<&Path>,
    colour: bool,
) -> anyhow::Result<()> {
    match output {
        None => crate::out!("{}", render(report, format, colour)),
        Some(path) => {
            std::fs::write(path, render(report, format, false))
                .map_err(|e| anyhow::anyhow!("--output {}: {e}", path.display()))?;
            eprintln!("{}", report.verdict.summary);
        }
    }
    Ok(())
}

pub fn schema() -> anyhow::Result<u8> {
    crate::outln!("{}", serde_json::to_string_pretty(&json_schema())?);
    Ok(exit::GO)
}

pub fn diff(args: &DiffArgs) -> anyhow::Result<u8> {
    let old = read_json(&args.old)?;
    let new = read_json(&args.new)?;
    let d = diff::diff(&old, &new);
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        crate::out!("{}", diff::render_diff_text(&d));
    }
    Ok(if d.gate_fails() {
        exit::NO_GO
    } else {
        exit::GO
    })
}

//! `preflight schema`, `preflight diff`, and writing a rendered report to stdout or a file.
use std::path::Path;

use crate::{
    cmd::{DiffArgs, ProbeFormat, ReportFiles, out},
    exit,
    report::{Format, Report, diff, json_schema, read_json, render},
};

/// Prints the report in `format` (wrapped to the terminal when it is text), or only the
/// verdict line with `quiet`; writes every file `files` names. With --output-file the report
/// goes there instead of stdout and the verdict line to stderr, so a CI log still shows it.
pub fn emit(
    report: &Report,
    format: Format,
    files: &ReportFiles,
    quiet: bool,
    colour: bool,
) -> anyhow::Result<()> {
    let extra = [
        ("--json-file", &files.json_file, Format::Json),
        ("--junit-file", &files.junit_file, Format::Junit),
        ("--markdown-file", &files.markdown_file, Format::Markdown),
    ];
    let main = files
        .output_file
        .as_ref()
        .map(|path| ("--output-file", path, format));
    for (flag, path, format) in extra
        .iter()
        .filter_map(|(flag, path, format)| path.as_ref().map(|p| (*flag, p, *format)))
        .chain(main)
    {
        write_file(flag, path, &render(report, format, false))?;
    }
    if quiet {
        crate::outln!("{}", report.verdict.summary);
    } else if files.output_file.is_some() {
        eprintln!("{}", report.verdict.summary);
    } else if format == Format::Text {
        crate::out!("{}", out::wrap_to_terminal(&render(report, format, colour)));
    } else {
        crate::out!("{}", render(report, format, colour));
    }
    Ok(())
}

/// `text` to stdout, or to the `--output-file` the operator named; with a file the `summary`
/// line (if any) goes to stderr, so a CI log still shows the verdict.
pub fn deliver(text: &str, file: Option<&Path>, summary: Option<&str>) -> anyhow::Result<()> {
    match file {
        None => crate::out!("{text}"),
        Some(path) => {
            write_file("--output-file", path, text)?;
            if let Some(line) = summary {
                eprintln!("{line}");
            }
        }
    }
    Ok(())
}

/// A file the operator named for output (not a node path): written as given; an error names the
/// flag and the file (exit 2).
fn write_file(flag: &str, path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
}

pub fn schema() -> anyhow::Result<u8> {
    crate::outln!("{}", serde_json::to_string_pretty(&json_schema())?);
    Ok(exit::GO)
}

pub fn diff(args: &DiffArgs) -> anyhow::Result<u8> {
    let old = read_json(&args.old)?;
    let new = read_json(&args.new)?;
    let d = diff::diff(&old, &new);
    let text = if args.json || args.format == ProbeFormat::Json {
        serde_json::to_string_pretty(&d)? + "\n"
    } else {
        diff::render_diff_text(&d)
    };
    deliver(&text, args.output_file.as_deref(), None)?;
    Ok(if d.gate_fails() {
        exit::NO_GO
    } else {
        exit::GO
    })
}

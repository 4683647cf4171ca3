//! `preflight checks` (the registry as a list), `completions` and `man`.
use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    checks::registry,
    cmd::{ChecksArgs, ChecksFormat, out},
    exit,
    model::{Area, Capability},
};

/// One check as `preflight checks -o json` lists it.
#[derive(Debug, Serialize)]
struct Listed {
    id: String,
    area: Area,
    title: String,
    /// Capabilities that fail when this check fails (empty: informational).
    needed_by: Vec<Capability>,
    /// What to do when it fails; a finding may give a more specific one in the report.
    remedy: Option<String>,
}

pub fn checks(args: &ChecksArgs) -> anyhow::Result<u8> {
    let listed: Vec<Listed> = registry()
        .into_iter()
        .filter(|c| args.area.is_none_or(|a| a == c.area))
        .map(|c| Listed {
            remedy: (!c.remedy.is_empty()).then_some(c.remedy),
            id: c.id,
            area: c.area,
            title: c.title,
            needed_by: c.needed_by,
        })
        .collect();
    match args.format {
        ChecksFormat::Json => crate::outln!("{}", serde_json::to_string_pretty(&listed)?),
        ChecksFormat::Text => crate::out!("{}", out::wrap_to_terminal(&render_text(&listed))),
    }
    Ok(exit::GO)
}

fn render_text(listed: &[Listed]) -> String {
    let mut out = String::new();
    let mut area = None;
    for c in listed {
        if area != Some(c.area) {
            area = Some(c.area);
            let _ = writeln!(
                out,
                "{}{}",
                if out.is_empty() { "" } else { "\n" },
                c.area.title()
            );
        }
        let needs = if c.needed_by.is_empty() {
            "informational".to_string()
        } else {
            let names: Vec<&str> = c.needed_by.iter().map(|n| n.as_str()).collect();
            format!("needed by {}", names.join(", "))
        };
        let _ = writeln!(out, "  {:<44} {} ({needs})", c.id, c.title);
        if let Some(remedy) = &c.remedy {
            let _ = writeln!(out, "       fix: {remedy}");
        }
    }
    let _ = writeln!(
        out,
        "\n{} checks; `--ignore` takes these ids, globs (kernel.config.*) or all",
        listed.len()
    );
    out
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "preflight", &mut buf);
    crate::out!("{}", String::from_utf8(buf)?);
    Ok(exit::GO)
}

pub fn man(dir: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let cmd = super::command();
    match dir {
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            crate::out!("{}", String::from_utf8(buf)?);
        }
        Some(dir) => {
            // A directory the operator names for output, not a node path: written as given.
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("--dir {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| anyhow::anyhow!("--dir {}: {e}", dir.display()))?;
        }
    }
    Ok(exit::GO)
}

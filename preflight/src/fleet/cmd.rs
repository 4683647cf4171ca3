//! The `aggregate` and `job` subcommands: parse nothing, print the result, return the exit code.
use std::io::Write as _;

use anyhow::Context;

use super::{
    aggregate::{self, Aggregator},
    job::{self, JobSpec},
    read,
};
use crate::{
    cli::{AggregateArgs, JobArgs},
    exit,
    report::Format,
};

pub fn aggregate(args: &AggregateArgs) -> anyhow::Result<u8> {
    let files = read::expand(&args.paths).context("listing the report paths")?;
    let mut agg = Aggregator::default();
    let mut stats = read::ReadStats::default();
    for file in &files {
        // Each report is folded as soon as it is read; none is kept.
        read::read_path(file, &mut stats, &mut |item| agg.add(item))
            .with_context(|| format!("reading {}", file.display()))?;
    }
    let verdict = agg.finish(stats);
    let mut stdout = std::io::stdout().lock();
    match args.format {
        Format::Text => write!(stdout, "{}", aggregate::render_text(&verdict))?,
        Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&verdict)?)?,
        Format::JsonLine => writeln!(stdout, "{}", serde_json::to_string(&verdict)?)?,
        Format::Junit | Format::Markdown => {
            anyhow::bail!("`preflight aggregate` prints text, json or json-line")
        }
    }
    Ok(if verdict.nodes == 0 || !verdict.refused.is_empty() {
        if verdict.nodes == 0 {
            eprintln!(
                "preflight: error: no node reports in {} ({} lines read)",
                args.paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                verdict.input_lines
            );
        } else {
            eprintln!(
                "preflight: error: {} reports refused; the cluster verdict is incomplete",
                verdict.refused.len()
            );
        }
        exit::ERROR
    } else if verdict.go {
        exit::GO
    } else {
        exit::NO_GO
    })
}

pub fn job(args: &JobArgs) -> anyhow::Result<u8> {
    // A typo would ignore nothing on every node: refuse it here, before any manifest is printed.
    crate::checks::validate_ignores(&args.ignore).map_err(anyhow::Error::msg)?;
    let mut run_args = Vec::new();
    for need in &args.need {
        run_args.extend(["--need".to_string(), need.as_str().to_string()]);
    }
    for id in &args.ignore {
        run_args.extend(["--ignore".to_string(), id.clone()]);
    }
    if args.no_canaries {
        run_args.push("--no-canaries".into());
    }
    run_args.extend(args.run_args.iter().cloned());
    let spec = JobSpec {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        image: args
            .image
            .clone()
            .unwrap_or_else(|| format!("preflight:{}", env!("CARGO_PKG_VERSION"))),
        pause_image: args.pause_image.clone(),
        run_args,
        create_namespace: !args.no_namespace,
    };
    print!("{}", job::render_yaml(&spec)?);
    Ok(exit::GO)
}

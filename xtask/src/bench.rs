//! `cargo xtask bench-aggregate`: times `preflight aggregate` (the release binary from `dist`)
//! over N generated node reports in the `kubectl logs --prefix` shape (a prefix, then one JSON
//! line per pod), and prints wall time, throughput and peak memory. Figures, not asserts.
use std::{
    fs,
    io::{BufWriter, Write},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::{dist, workspace_root};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How many node reports to aggregate.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Timed runs (the best and the median are printed).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub fn bench_aggregate(args: &BenchArgs) -> anyhow::Result<()> {
    let root = workspace_root();
    let preflight = dist::dist()?;
    let fixtures = root.join("fixtures/reports");
    let mut templates = Vec::new();
    for entry in fs::read_dir(&fixtures).with_context(|| format!("{}", fixtures.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path)?;
            let report: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            if report.get("schema_version") == Some(&Value::from(1)) {
                templates.push(report);
            }
        }
    }
    ensure!(
        !templates.is_empty(),
        "no schema-1 reports in {}",
        fixtures.display()
    );
    templates.sort_by_key(|t| t["node"]["hostname"].as_str().map(str::to_string));

    let dir = root.join("target/bench-aggregate");
    fs::create_dir_all(&dir)?;
    let input = dir.join(format!("{}-nodes.log", args.nodes));
    let mut out = BufWriter::new(fs::File::create(&input)?);
    for i in 0..args.nodes {
        let mut report = templates[i % templates.len()].clone();
        let hostname = format!("node-{i:05}");
        report["node"]["hostname"] = Value::String(hostname.clone());
        writeln!(
            out,
            "[pod/preflight-{i:05}/preflight] {}",
            serde_json::to_string(&report)?
        )?;
    }
    out.flush()?;
    drop(out);
    let bytes = fs::metadata(&input)?.len();
    println!(
        "bench-aggregate: {} reports, {:.1} MiB of kubectl-logs-shaped input ({} templates)",
        args.nodes,
        bytes as f64 / 1048576.0,
        templates.len()
    );

    let mut times = Vec::new();
    let mut peak_kib = 0;
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let child = Command::new(&preflight)
            .args(["aggregate", "--format", "json"])
            .arg(&input)
            .stdout(Stdio::null())
            .spawn()
            .context("running preflight aggregate")?;
        let (code, rss_kib) = wait_with_rusage(child)?;
        times.push(t.elapsed().as_secs_f64());
        peak_kib = peak_kib.max(rss_kib);
        // 0 (cluster go) and 1 (cluster no-go) are answers; 2 is an error.
        ensure!(
            matches!(code, Some(0 | 1)),
            "preflight aggregate failed: exit {code:?}"
        );
    }
    times.sort_by(f64::total_cmp);
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "bench-aggregate: best {:.3} s, median {:.3} s over {} runs; {:.0} reports/s, {:.0} MiB/s",
        best,
        median,
        times.len(),
        args.nodes as f64 / best,
        bytes as f64 / 1048576.0 / best
    );
    println!(
        "bench-aggregate: peak RSS of preflight aggregate {:.1} MiB (input {:.1} MiB)",
        peak_kib as f64 / 1024.0,
        bytes as f64 / 1048576.0
    );
    Ok(())
}

/// Waits for `child` and returns its exit code and peak resident set in KiB (wait4's rusage is
/// this child's alone, unlike RUSAGE_CHILDREN, which would include the cargo build).
fn wait_with_rusage(child: std::process::Child) -> anyhow::Result<(Option<i32>, i64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 writes only into the two out-parameters we own; the Child is forgotten so
    // std does not wait for the reaped pid again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    ensure!(rc == pid, "wait4: {}", std::io::Error::last_os_error());
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((code, usage.ru_maxrss))
}

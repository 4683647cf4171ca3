//! Runs the clang invocations: the agent's command line per program, in parallel bounded by the
//! cores, longest first, with a progress bar when stderr is a terminal.
use std::{
    io::{IsTerminal, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use super::{headers::StateLayout, profile::Profile, toolchain::Toolchain};

#[derive(Debug, Clone)]
pub struct Job {
    pub program: String,
    /// The directory clang runs in (the bpf dir, as the agent does).
    pub cwd: PathBuf,
    pub output: PathBuf,
    pub clang: PathBuf,
    pub clang_args: Vec<String>,
    /// `llc` and its arguments when clang's bitcode is piped through it (1.14).
    pub llc: Option<(PathBuf, Vec<String>)>,
    /// Scheduling weight (bigger runs first).
    pub weight: u64,
}

impl Job {
    /// The command line as a shell would show it.
    pub fn command_line(&self) -> String {
        let mut s = format!("{} {}", self.clang.display(), self.clang_args.join(" "));
        if let Some((llc, args)) = &self.llc {
            s.push_str(&format!(" | {} {}", llc.display(), args.join(" ")));
        }
        s
    }
}

#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub success: bool,
    pub stderr: String,
    pub wall_ms: f64,
}

pub struct Inputs<'a> {
    pub profile: &'a Profile,
    pub toolchain: &'a Toolchain,
    pub mcpu: &'a str,
    pub bpf_dir: &'a Path,
    pub state: &'a StateLayout,
    pub out_dir: &'a Path,
    pub nr_cpus: usize,
}

/// The include path for a program: generated dirs first, then the bpf dir with its dummies.
fn includes(program: &str, i: &Inputs) -> Vec<PathBuf> {
    let mut dirs = vec![i.state.globals()];
    match program {
        "bpf_lxc" => dirs.push(i.state.template_dir()),
        "bpf_host" => {
            dirs.push(i.state.template_dir());
            dirs.push(i.state.root.clone());
        }
        _ => dirs.push(i.state.root.clone()),
    }
    dirs.push(i.bpf_dir.to_path_buf());
    dirs.push(i.bpf_dir.join("include"));
    dirs
}

pub fn job(program: &str, i: &Inputs) -> Job {
    let p = i.profile;
    let source = format!("{program}.c");
    let output = i.out_dir.join(format!("{program}.o"));
    let mut args: Vec<String> = vec!["-O2".into(), "--target=bpf".into()];
    args.push(format!("-std={}", p.std));
    if p.trap_function {
        args.push("-ftrap-function=__undefined_trap".into());
    }
    args.push("-nostdinc".into());
    args.extend(p.warnings.iter().map(|w| w.to_string()));
    if p.nr_cpus {
        args.push(format!("-D__NR_CPUS__={}", i.nr_cpus));
    }
    if program == "bpf_overlay" && p.overlay_calls_map {
        args.push("-DCALLS_MAP=cilium_calls_overlay_2".into());
    }
    args.push("-g".into());
    // Stable, parseable diagnostics (../shared/ENVIRONMENT.md).
    args.push("-fno-color-diagnostics".into());
    args.push("-fno-caret-diagnostics".into());
    for dir in includes(program, i) {
        args.push(format!("-I{}", dir.display()));
    }
    let llc = if p.llc_pipeline {
        args.extend(["-emit-llvm".into(), "-c".into(), source.clone()]);
        args.extend(["-o".into(), "-".into()]);
        let llc = i
            .toolchain
            .llc
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("llc-{}", i.toolchain.major)));
        Some((
            llc,
            vec![
                "-march=bpf".into(),
                format!("-mcpu={}", i.mcpu),
                "-filetype=obj".into(),
                "-o".into(),
                output.display().to_string(),
            ],
        ))
    } else {
        args.push(format!("-mcpu={}", i.mcpu));
        args.extend(["-c".into(), source.clone()]);
        args.extend(["-o".into(), output.display().to_string()]);
        None
    };
    let weight = std::fs::metadata(i.bpf_dir.join(&source))
        .map(|m| m.len())
        .unwrap_or(0);
    Job {
        program: program.to_string(),
        cwd: i.bpf_dir.to_path_buf(),
        output,
        clang: i.toolchain.clang.clone(),
        clang_args: args,
        llc,
        weight,
    }
}

fn read_all(mut r: impl Read) -> String {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs one job to completion (clang alone, or clang | llc).
pub fn run_one(job: &Job) -> JobOutcome {
    let start = Instant::now();
    let spawn_err = |what: &Path, e: std::io::Error| JobOutcome {
        success: false,
        stderr: format!("error: cannot run {}: {e}", what.display()),
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    let mut clang = Command::new(&job.clang);
    clang
        .args(&job.clang_args)
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let Some((llc_path, llc_args)) = &job.llc else {
        let out = match clang.stdout(Stdio::null()).output() {
            Ok(o) => o,
            Err(e) => return spawn_err(&job.clang, e),
        };
        return JobOutcome {
            success: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            wall_ms: start.elapsed().as_secs_f64() * 1e3,
        };
    };
    let mut child = match clang.stdout(Stdio::piped()).spawn() {
        Ok(c) => c,
        Err(e) => return spawn_err(&job.clang, e),
    };
    let bitcode = child
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or(Stdio::null());
    let llc = Command::new(llc_path)
        .args(llc_args)
        .current_dir(&job.cwd)
        .stdin(bitcode)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let clang_err = child.stderr.take().map(read_all).unwrap_or_default();
    let clang_ok = child.wait().map(|s| s.success()).unwrap_or(false);
    let (llc_ok, llc_err) = match llc.and_then(|c| c.wait_with_output()) {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (
            false,
            format!("error: cannot run {}: {e}", llc_path.display()),
        ),
    };
    JobOutcome {
        success: clang_ok && llc_ok,
        stderr: clang_err + &llc_err,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    }
}

/// Runs every job, at most `workers` at a time, heaviest first. Outcomes come back in job order.
pub fn run_all(jobs: &[Job], workers: usize, progress: bool) -> Vec<JobOutcome> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(jobs[*i].weight));
    let bar = if progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(jobs.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("compiling {bar:30} {pos}/{len} {msg}")
        {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JobOutcome>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(n) else { break };
                    let outcome = run_one(&jobs[i]);
                    bar.set_message(jobs[i].program.clone());
                    bar.inc(1);
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(outcome);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            o.unwrap_or(JobOutcome {
                success: false,
                stderr: "error: compile job did not run".into(),
                wall_ms: 0.0,
            })
        })
        .collect()
}

/// Worker count: the cores we may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

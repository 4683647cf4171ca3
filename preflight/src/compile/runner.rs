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

use super::{
    agent_facts::ProgramKind, cache, headers::StateLayout, profile::Profile, toolchain::Toolchain,
};

#[derive(Debug, Clone)]
pub struct Job {
    pub program: String,
    pub kind: ProgramKind,
    /// The directory clang runs in (the bpf dir, as the agent does).
    pub cwd: PathBuf,
    pub output: PathBuf,
    pub clang: PathBuf,
    pub clang_args: Vec<String>,
    /// `llc` and its arguments when clang's bitcode is piped through it (1.14).
    pub llc: Option<(PathBuf, Vec<String>)>,
    /// Scheduling weight (bigger runs first).
    pub weight: u64,
    /// Object cache key (compile/cache.rs); None: not cached.
    pub cache_key: Option<String>,
    /// Run-specific path prefixes (scratch dir, state dir) and the placeholders the cache
    /// stores instead, so a cached diagnostic names this run's files.
    pub cache_paths: Vec<(String, String)>,
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
    /// Taken from the object cache: clang did not run.
    pub cached: bool,
    /// clang (and llc) ran to an exit status: the result may be cached. Not when a spawn
    /// failed or a signal killed the compiler.
    pub cacheable: bool,
}

pub struct Inputs<'a> {
    pub profile: &'a Profile,
    pub toolchain: &'a Toolchain,
    pub mcpu: &'a str,
    pub bpf_dir: &'a Path,
    pub state: &'a StateLayout,
    pub out_dir: &'a Path,
    pub nr_cpus: usize,
    /// The built-in templates' bpf_host also reads netdev_config.h from the state dir.
    pub host_reads_state_root: bool,
}

/// What to compile: a program, how the agent builds it, its per-program `-D` flags.
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: String,
    pub kind: ProgramKind,
    pub defines: Vec<String>,
}

/// The include path for a program, as the agent's `compile()` builds it: `-I<state>/globals`,
/// `-I<dir.State>` (the template dir for endpoints, the state dir for the rest), the bpf dir
/// with its dummies, its `include/`.
fn includes(kind: ProgramKind, i: &Inputs) -> Vec<PathBuf> {
    let mut dirs = vec![i.state.globals()];
    match kind {
        ProgramKind::Endpoint => dirs.push(i.state.template_dir()),
        ProgramKind::Host => {
            dirs.push(i.state.host_template_dir());
            if i.host_reads_state_root {
                dirs.push(i.state.root.clone());
            }
        }
        ProgramKind::Base | ProgramKind::AlignChecker => dirs.push(i.state.root.clone()),
    }
    dirs.push(i.bpf_dir.to_path_buf());
    dirs.push(i.bpf_dir.join("include"));
    dirs
}

pub fn job(spec: &Spec, i: &Inputs) -> Job {
    let program = spec.program.as_str();
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
    args.extend(spec.defines.iter().cloned());
    args.push("-g".into());
    // Stable, parseable diagnostics (docs/compile.md#clangs-diagnostics).
    args.push("-fno-color-diagnostics".into());
    args.push("-fno-caret-diagnostics".into());
    for dir in includes(spec.kind, i) {
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
        kind: spec.kind,
        cwd: i.bpf_dir.to_path_buf(),
        output,
        clang: i.toolchain.clang.clone(),
        clang_args: args,
        llc,
        weight,
        cache_key: None,
        cache_paths: Vec::new(),
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
        cached: false,
        cacheable: false,
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
            cached: false,
            cacheable: out.status.code().is_some(),
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
    let clang_status = child.wait().ok();
    let clang_ok = clang_status.is_some_and(|s| s.success());
    let (llc_ok, llc_exited, llc_err) = match llc.and_then(|c| c.wait_with_output()) {
        Ok(o) => (
            o.status.success(),
            o.status.code().is_some(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (
            false,
            false,
            format!("error: cannot run {}: {e}", llc_path.display()),
        ),
    };
    JobOutcome {
        success: clang_ok && llc_ok,
        stderr: clang_err + &llc_err,
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
        cached: false,
        cacheable: clang_status.is_some_and(|s| s.code().is_some()) && llc_exited,
    }
}

/// One job through the object cache: a hit writes the cached object where clang would have;
/// a miss compiles and stores what came out.
pub fn run_cached(job: &Job, cache_dir: Option<&Path>) -> JobOutcome {
    let (Some(dir), Some(key)) = (cache_dir, job.cache_key.as_deref()) else {
        return run_one(job);
    };
    let start = Instant::now();
    if let Some(mut hit) = cache::lookup(dir, key) {
        for (path, placeholder) in &job.cache_paths {
            hit.stderr = hit.stderr.replace(placeholder.as_str(), path);
        }
        let written = hit
            .object
            .as_ref()
            .is_none_or(|o| std::fs::write(&job.output, o).is_ok());
        if written {
            return JobOutcome {
                success: hit.success,
                stderr: hit.stderr,
                wall_ms: start.elapsed().as_secs_f64() * 1e3,
                cached: true,
                cacheable: true,
            };
        }
    }
    let outcome = run_one(job);
    if outcome.cacheable {
        let object = if outcome.success {
            std::fs::read(&job.output).ok()
        } else {
            None
        };
        if !outcome.success || object.is_some() {
            cache::store(
                dir,
                key,
                &cache::Entry {
                    success: outcome.success,
                    stderr: job
                        .cache_paths
                        .iter()
                        .fold(outcome.stderr.clone(), |text, (path, placeholder)| {
                            text.replace(path.as_str(), placeholder)
                        }),
                    object,
                },
            );
        }
    }
    outcome
}

/// Runs every job, at most `workers` at a time, heaviest first. Outcomes come back in job order.
pub fn run_all(jobs: &[Job], workers: usize, progress: bool) -> Vec<JobOutcome> {
    run_all_cached(jobs, workers, progress, None)
}

/// [`run_all`] through the object cache in `cache_dir`.
pub fn run_all_cached(
    jobs: &[Job],
    workers: usize,
    progress: bool,
    cache_dir: Option<&Path>,
) -> Vec<JobOutcome> {
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
                    let outcome = run_cached(&jobs[i], cache_dir);
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
                cached: false,
                cacheable: false,
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

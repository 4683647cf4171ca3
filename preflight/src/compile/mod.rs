//! The datapath compile preflight: compile a Cilium-like datapath the way cilium-agent does
//! (its flags, include order, generated-vs-dummy header layout, a clang matching its bundled
//! LLVM), turn clang's diagnostics into root causes, and load the objects so the verifier has
//! its say. See docs/compile.md.
//!
//! Flow: [`source`] finds the real tree (dir, tar, image) or [`tree`] unpacks the templates → [`headers`] writes the state dir (or [`nodeinit`]
//! predicts what a node's state will look like) → [`toolchain`] picks clang → [`runner`]
//! compiles in parallel → [`diag`] + [`explain`] → [`elf`] (inspect the objects, load them into
//! the verifier).
pub mod diag;
pub mod elf;
pub mod explain;
pub mod features;
pub mod headers;
pub mod libclang;
pub mod nodeinit;
pub mod profile;
pub mod runner;
pub mod source;
pub mod toolchain;
pub mod tree;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use crate::{cilium::Target, host::HostRoot, probe::ProbeReport};

/// Where the state dir's headers come from.
#[derive(Debug, Clone)]
pub enum StateSource {
    /// Generated from the target: a node whose datapath init succeeds.
    Generate,
    /// As the agent would find it on this node: generated, except that globals/node_config.h
    /// is left missing (or the node's leftover copy is used) when datapath init will fail.
    Predict(HostRoot),
    /// A real state dir, used as is (replay).
    Existing(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// A real bpf dir; None compiles the built-in templates.
    pub bpf_dir: Option<PathBuf>,
    pub state: StateSource,
    pub clang: Option<PathBuf>,
    /// Live probe results, for -mcpu, the feature headers and the host-routing fallback.
    pub probes: Option<ProbeReport>,
    pub verify: bool,
    pub progress: bool,
    pub workers: usize,
    /// Copy the state dir used here into this directory for inspection and replay.
    pub emit_state: Option<PathBuf>,
    /// Which libclang reads the diagnostics of failed or warning compiles.
    pub libclang: libclang::Mode,
    /// Where `bpf_dir` came from, for the report (a dir when unset and `bpf_dir` is given).
    pub tree: source::TreeOrigin,
    /// The image's own clang, with `--clang-from-image`.
    pub image_toolchain: Option<source::ImageToolchain>,
    /// How each program's object is loaded (by program, e.g. `bpf_lxc`): the load-time
    /// configuration and map renames the agent would use. A program not listed loads with the
    /// object's own defaults.
    pub load: BTreeMap<String, elf::LoadOptions>,
}

impl Options {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            bpf_dir: None,
            state: StateSource::Generate,
            clang: None,
            probes: None,
            verify: true,
            progress: false,
            workers: runner::default_workers(),
            emit_state: None,
            libclang: libclang::Mode::Auto,
            tree: source::TreeOrigin::Templates,
            image_toolchain: None,
            load: BTreeMap::new(),
        }
    }

    /// Compiles the tree `resolved` found (the caller keeps `resolved` alive: a `--bpf-tar`
    /// lives in its scratch dir), with its clang when it chose one.
    pub fn use_source(&mut self, resolved: &source::Resolved) {
        self.bpf_dir = resolved.bpf_dir.clone();
        if resolved.clang.is_some() {
            self.clang = resolved.clang.clone();
        }
        self.tree = resolved.origin.clone();
        self.image_toolchain = resolved.image_toolchain.clone();
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateInfo {
    pub dir: String,
    /// generated | predicted | existing.
    pub source: String,
    pub template_hash: String,
    /// present | missing | stale (from 1.x).
    pub node_config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramResult {
    pub name: String,
    pub compiled: bool,
    pub command: String,
    pub wall_ms: f64,
    pub findings: Vec<explain::Finding>,
    pub diagnostics: Vec<diag::Diagnostic>,
    /// `libclang 19` (structured, same major as the clang) or `clang text output` (parsed).
    pub diagnostics_from: libclang::Source,
    /// Why libclang was not used for a failed or warning compile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub libclang_fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<elf::ObjectInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<elf::ObjectVerdict>,
    /// Why the object was not loaded (not compiled, not root, --no-verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_skipped: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompileReport {
    pub cilium_version: String,
    pub profile: profile::Profile,
    pub mcpu: String,
    pub mcpu_reason: String,
    /// Kernel feature macros and datapath modes, decided as the agent would.
    pub features: features::Features,
    /// Whether the feature headers were written into the bpf dir (built-in templates) or the
    /// bpf dir's own were used (`--bpf-dir`).
    pub features_written: bool,
    pub toolchain: toolchain::Choice,
    pub bpf_dir: String,
    /// Which tree was judged: the target's own (a dir, a tar, an image by digest) or the
    /// built-in templates, the labelled fallback.
    pub tree: source::TreeOrigin,
    /// The image's own clang (`--clang-from-image`): whether it runs here and was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_toolchain: Option<source::ImageToolchain>,
    pub state: StateInfo,
    pub init_blockers: Vec<nodeinit::InitBlocker>,
    pub programs: Vec<ProgramResult>,
    pub timings: Timings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// The whole stage: unpack, headers, compiles, diagnostics, verification.
    pub stage_ms: f64,
    /// The parallel compile phase.
    pub compile_ms: f64,
    /// Sum of every clang invocation's wall time (what a sequential run would roughly take).
    pub clang_sum_ms: f64,
    pub verify_ms: f64,
    /// Toolchain discovery (`clang --version` per binary), unpacking, headers, command lines.
    pub prepare_ms: f64,
    /// Parsing clang's text diagnostics, every program.
    pub text_parse_ms: f64,
    /// Finding and loading libclang (0 when no compile failed or warned).
    pub libclang_load_ms: f64,
    /// libclang parses of the programs that failed or warned.
    pub libclang_parse_ms: f64,
    pub workers: usize,
}

impl CompileReport {
    pub fn program(&self, name: &str) -> Option<&ProgramResult> {
        self.programs.iter().find(|p| p.name == name)
    }
    pub fn all_findings(&self) -> impl Iterator<Item = &explain::Finding> {
        self.programs.iter().flat_map(|p| &p.findings)
    }
}

/// Number of possible CPUs (what the agent passes as __NR_CPUS__).
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| {
            let last = s.trim().rsplit(['-', ',']).next()?.parse::<usize>().ok()?;
            Some(last + 1)
        })
        .unwrap_or_else(runner::default_workers)
}

/// The template hash dir already in an existing state dir, if any.
fn existing_template_hash(state: &Path) -> Option<String> {
    std::fs::read_dir(state.join("templates"))
        .ok()?
        .flatten()
        .find(|e| e.path().join("ep_config.h").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

const SCRATCH_PREFIX: &str = "preflight-compile.";

/// Removes scratch dirs left by runs that were killed before they could clean up (their pid is
/// in the name and no longer running). A killed run leaves nothing else: objects were loaded
/// by fd, and pinned only in a bpffs of a private mount namespace that died with the process
/// (compile/elf/bpffs.rs).
pub fn sweep_scratch(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SCRATCH_PREFIX)
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The node's own state dir (the agent's host path).
pub const NODE_STATE_DIR: &str = "/var/run/cilium/state";

/// The prepared inputs: profile, unpacked tree, state dir, toolchain, jobs.
pub struct Prepared {
    pub report: CompileReport,
    pub jobs: Vec<runner::Job>,
    /// Keeps the scratch dirs alive while the jobs run.
    _scratch: tempfile::TempDir,
    pub bpf_dir: PathBuf,
    pub layout: headers::StateLayout,
    /// Scratch path prefixes and the node paths they stand for, for findings (see relabel).
    pub shown_as: Vec<(String, String)>,
}

/// Where the image keeps the datapath sources (FACTS §1): what our unpacked copy stands for.
const IMAGE_BPF_DIR: &str = "/var/lib/cilium/bpf";

/// Everything up to the compile: resolves the profile and toolchain, unpacks the tree, writes
/// or locates the state dir, builds the command lines. Errors are bad input or a missing clang.
pub fn prepare(opts: &Options) -> Result<Prepared, String> {
    let start = Instant::now();
    let profile = profile::for_release(opts.target.release());
    let choice = toolchain::choose(toolchain::discover(), &profile, opts.clang.as_deref())?;
    let (mcpu, mcpu_reason) = profile::choose_mcpu(&profile, opts.probes.as_ref());
    sweep_scratch(&std::env::temp_dir());
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}.", std::process::id()))
        .tempdir()
        .map_err(|e| format!("scratch dir: {e}"))?;
    let bpf_dir = match &opts.bpf_dir {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(format!("--bpf-dir {}: not a directory", dir.display()));
            }
            dir.canonicalize()
                .map_err(|e| format!("{}: {e}", dir.display()))?
        }
        None => {
            let dir = scratch.path().join("bpf");
            tree::unpack(&dir, profile.minor).map_err(|e| format!("unpack templates: {e}"))?;
            dir
        }
    };
    let generated = headers::generate(&profile, &opts.target, opts.probes.as_ref());
    // The agent writes the feature headers into its own bpf dir at startup, before datapath
    // init can fail. A user's --bpf-dir is never written to: it keeps the headers it has.
    let features_written = opts.bpf_dir.is_none();
    if features_written {
        generated
            .features
            .write(&bpf_dir)
            .map_err(|e| format!("write feature headers: {e}"))?;
    }
    let mut blockers = Vec::new();
    let (layout, source) = match &opts.state {
        StateSource::Existing(dir) => {
            if !dir.is_dir() {
                return Err(format!("--state-dir {}: not a directory", dir.display()));
            }
            let hash = existing_template_hash(dir).unwrap_or(generated.template_hash.clone());
            let layout = headers::StateLayout {
                root: dir.clone(),
                template_hash: hash,
            };
            (layout, "existing")
        }
        StateSource::Generate => {
            let layout = generated
                .write(&scratch.path().join("state"), false)
                .map_err(|e| format!("write state: {e}"))?;
            (layout, "generated")
        }
        StateSource::Predict(root) => {
            blockers = nodeinit::blockers(root, &opts.target);
            let init_fails = !blockers.is_empty();
            let layout = generated
                .write(&scratch.path().join("state"), init_fails)
                .map_err(|e| format!("write state: {e}"))?;
            // The node's leftover header, read through the root-confined API (a symlink out of
            // the root is not followed, a FIFO or device not opened), into our scratch dir.
            let leftover = format!("{NODE_STATE_DIR}/globals/node_config.h");
            if init_fails {
                match root.read_bytes(&leftover) {
                    Ok(bytes) => std::fs::write(layout.node_config(), bytes)
                        .map_err(|e| format!("{}: {e}", layout.node_config().display()))?,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            (layout, "predicted")
        }
    };
    if let Some(dest) = &opts.emit_state {
        copy_dir(&layout.root, dest)
            .map_err(|e| format!("--emit-state {}: {e}", dest.display()))?;
    }
    let node_config = match std::fs::read_to_string(layout.node_config()) {
        Err(_) => "missing".to_string(),
        Ok(text) => match headers::judge_version(&text) {
            Some(v) if v != profile.label() => format!("stale (written by {v})"),
            _ => "present".to_string(),
        },
    };
    let out_dir = scratch.path().join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("scratch dir: {e}"))?;
    let nr_cpus = possible_cpus();
    let inputs = runner::Inputs {
        profile: &profile,
        toolchain: &choice.toolchain,
        mcpu: &mcpu,
        bpf_dir: &bpf_dir,
        state: &layout,
        out_dir: &out_dir,
        nr_cpus,
    };
    let programs = tree::programs_in(&bpf_dir);
    if programs.is_empty() {
        return Err(format!(
            "{}: no bpf_*.c programs (expected e.g. bpf_lxc.c)",
            bpf_dir.display()
        ));
    }
    let jobs: Vec<runner::Job> = programs.iter().map(|p| runner::job(p, &inputs)).collect();
    let report = CompileReport {
        cilium_version: opts.target.cilium_version.to_string(),
        mcpu,
        mcpu_reason,
        features: generated.features.clone(),
        features_written,
        toolchain: choice,
        bpf_dir: match &opts.bpf_dir {
            Some(d) => d.display().to_string(),
            None => "built-in templates".into(),
        },
        tree: match (&opts.bpf_dir, &opts.tree) {
            (None, _) => source::TreeOrigin::Templates,
            (Some(d), source::TreeOrigin::Templates) => source::TreeOrigin::Dir {
                path: d.display().to_string(),
            },
            (Some(_), origin) => origin.clone(),
        },
        image_toolchain: opts.image_toolchain.clone(),
        state: StateInfo {
            dir: layout.root.display().to_string(),
            source: source.into(),
            template_hash: layout.template_hash.clone(),
            node_config,
        },
        init_blockers: blockers,
        programs: Vec::new(),
        profile,
        timings: Timings {
            stage_ms: start.elapsed().as_secs_f64() * 1e3,
            workers: opts.workers,
            ..Timings::default()
        },
    };
    // Scratch copies stand for the node's files; user-given dirs are shown as they are.
    let mut shown_as = Vec::new();
    // A tree taken out of an image is what the agent sees at /var/lib/cilium/bpf; a tar's
    // scratch copy is named by the file it came from.
    match &report.tree {
        source::TreeOrigin::Templates | source::TreeOrigin::Image { .. } => {
            shown_as.push((bpf_dir.display().to_string(), IMAGE_BPF_DIR.to_string()))
        }
        source::TreeOrigin::Tar { file, inner } => shown_as.push((
            bpf_dir.display().to_string(),
            format!("{file}:{inner}").trim_end_matches(':').to_string(),
        )),
        source::TreeOrigin::Dir { .. } => {}
    }
    match &opts.state {
        StateSource::Predict(root) => shown_as.push((
            layout.root.display().to_string(),
            root.display(NODE_STATE_DIR),
        )),
        StateSource::Generate => shown_as.push((
            layout.root.display().to_string(),
            NODE_STATE_DIR.to_string(),
        )),
        StateSource::Existing(_) => {}
    }
    Ok(Prepared {
        report,
        jobs,
        _scratch: scratch,
        bpf_dir,
        layout,
        shown_as,
    })
}

/// Runs the whole stage.
pub fn run(opts: &Options) -> Result<CompileReport, String> {
    let start = Instant::now();
    let prepared = prepare(opts)?;
    let mut report = prepared.report;
    report.timings.prepare_ms = start.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let outcomes = runner::run_all(&prepared.jobs, opts.workers, opts.progress);
    report.timings.compile_ms = t.elapsed().as_secs_f64() * 1e3;
    report.timings.clang_sum_ms = outcomes.iter().map(|o| o.wall_ms).sum();
    let ctx = explain::Context {
        bpf_dir: &prepared.bpf_dir,
        state: &prepared.layout,
        profile: &report.profile,
        clang_major: report.toolchain.toolchain.major,
        blockers: &report.init_blockers,
    };
    let root_ok = nix::unistd::geteuid().is_root();
    let mut verify_ms = 0.0;
    // One scratch bpffs for the whole run, as a node has one /sys/fs/bpf: maps pinned by
    // name by one object are reused by the next.
    let loader = (opts.verify && root_ok).then(elf::Loader::new);
    // libclang only when something failed or warned: loading it costs tens of milliseconds.
    let t = Instant::now();
    let library = outcomes
        .iter()
        .any(|o| !o.success || !o.stderr.trim().is_empty())
        .then(|| libclang::open(&opts.libclang, &report.toolchain.toolchain));
    report.timings.libclang_load_ms = t.elapsed().as_secs_f64() * 1e3;
    for (job, outcome) in prepared.jobs.iter().zip(outcomes) {
        let t = Instant::now();
        let text = diag::parse(&outcome.stderr);
        report.timings.text_parse_ms += t.elapsed().as_secs_f64() * 1e3;
        let chosen = libclang::choose(library.as_ref(), job, outcome.success, text);
        report.timings.libclang_parse_ms += chosen.libclang_ms;
        let diagnostics = chosen.diagnostics;
        let mut findings = explain::findings(&ctx, &job.program, &diagnostics);
        if !outcome.success && findings.is_empty() {
            // clang failed without a parseable error (crash, killed, llc failure).
            let d = diag::Diagnostic {
                severity: diag::Severity::Error,
                location: None,
                message: outcome
                    .stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("compiler failed without output")
                    .to_string(),
                flag: None,
                included_from: Vec::new(),
                notes: Vec::new(),
            };
            findings = explain::findings(&ctx, &job.program, &[d]);
        }
        for f in &mut findings {
            for (from, to) in &prepared.shown_as {
                f.relabel(from, to);
            }
        }
        let bytes = outcome
            .success
            .then(|| std::fs::read(&job.output).ok())
            .flatten();
        let object = bytes.as_deref().and_then(|b| elf::inspect(b).ok());
        let (verify, verify_skipped) = match (&bytes, &object, &loader) {
            (Some(b), Some(_), Some(loader)) => {
                let t = Instant::now();
                let load = opts.load.get(&job.program).cloned().unwrap_or_default();
                let v = loader.load(b, &load);
                verify_ms += t.elapsed().as_secs_f64() * 1e3;
                (Some(v), None)
            }
            (Some(_), Some(_), _) if !opts.verify => (None, Some("verification disabled".into())),
            (Some(_), Some(_), _) => (None, Some("not root: the kernel was not asked".into())),
            _ => (None, Some("not compiled".into())),
        };
        report.programs.push(ProgramResult {
            name: job.program.clone(),
            compiled: outcome.success,
            command: job.command_line(),
            wall_ms: outcome.wall_ms,
            findings,
            diagnostics,
            diagnostics_from: chosen.from,
            libclang_fallback: chosen.fallback,
            object,
            verify,
            verify_skipped,
        });
    }
    report.timings.verify_ms = verify_ms;
    report.timings.stage_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_only_dirs_of_dead_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp
            .path()
            .join(format!("{SCRATCH_PREFIX}{}.abc", u32::MAX - 1));
        let alive = tmp
            .path()
            .join(format!("{SCRATCH_PREFIX}{}.abc", std::process::id()));
        let other = tmp.path().join("preflight-compile-notes");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir_all(d.join("bpf")).unwrap();
        }
        sweep_scratch(tmp.path());
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }
}

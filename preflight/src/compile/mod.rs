//! The datapath compile preflight: compile Cilium's datapath the way cilium-agent does (its
//! flags, include order, generated-vs-dummy header layout, a clang matching its bundled LLVM),
//! turn clang's diagnostics into root causes, and load the objects so the verifier has its say.
//! See docs/compile.md.
//!
//! Two trees: the target's own Cilium tree ([`source`]: a dir, a tar, an image), for which
//! [`tree_scan`] + [`agent_state`] write the headers that version's agent writes for these
//! values, and the built-in templates (a labelled fallback model, [`headers`], unpacked by
//! [`tree`]). Flow: the tree is linked or unpacked into a scratch dir → the state dir is written
//! (or [`nodeinit`] predicts what the node's will look like) → [`toolchain`] picks clang →
//! [`runner`] compiles in parallel through the object [`cache`] → [`diag`] + [`explain`] →
//! [`elf`] (inspect the objects, load them into the verifier with their [`load_config`]).
pub mod agent_facts;
pub mod agent_options;
pub mod agent_state;
pub mod cache;
pub mod diag;
pub mod dummy;
pub mod elf;
pub mod explain;
pub mod features;
pub mod headers;
pub mod libclang;
pub mod load_config;
pub mod nodeinit;
pub mod profile;
pub mod runner;
pub mod source;
pub mod toolchain;
pub mod tree;
pub mod tree_scan;
pub mod version_guess;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use self::agent_facts::ProgramKind;
use crate::{
    cilium::Target,
    host::{HostRoot, state::macros},
    probe::ProbeReport,
};

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
    /// Why the objects are not loaded when `verify` is false (shown in the report).
    pub verify_skipped: Option<String>,
    pub progress: bool,
    pub workers: usize,
    /// Copy the state dir used here into this directory for inspection and replay.
    pub emit_state: Option<PathBuf>,
    /// Which libclang reads the diagnostics of failed or warning compiles.
    pub libclang: libclang::Mode,
    /// The object cache (compile/cache.rs).
    pub cache: cache::CacheMode,
    /// Where `bpf_dir` came from, for the report (a dir when unset and `bpf_dir` is given).
    pub tree: source::TreeOrigin,
    /// The image's own clang, with `--clang-from-image`.
    pub image_toolchain: Option<source::ImageToolchain>,
    /// How each program's object is loaded (by program, e.g. `bpf_lxc`), over what the
    /// target's agent would use (compile/load_config.rs): entries given here win.
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
            verify_skipped: None,
            progress: false,
            workers: runner::default_workers(),
            emit_state: None,
            libclang: libclang::Mode::Auto,
            cache: cache::CacheMode::Default,
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

/// How the node_config.h in the state dir compares with what the target's agent writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeConfigState {
    /// present | missing | stale.
    pub status: String,
    /// Which agent wrote it, when that can be told (version_guess.rs / the templates' table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_by: Option<String>,
    /// Macros the target's agent writes for this tree, that the sources use, and that it lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lacks: Vec<String>,
    /// Macros it defines that the target's agent does not write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// The file is the node's own (a leftover, or a replayed state dir), not generated here.
    pub from_node: bool,
}

impl NodeConfigState {
    pub fn is_stale(&self) -> bool {
        self.status == "stale"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateInfo {
    pub dir: String,
    /// generated | predicted | existing.
    pub source: String,
    pub template_hash: String,
    /// The host endpoint's template (bpf_host); equal to `template_hash` for the templates.
    pub host_template_hash: String,
    /// present | missing | stale (written by 1.x).
    pub node_config: String,
    pub node_config_state: NodeConfigState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramResult {
    pub name: String,
    /// How the agent builds it: endpoint, host, base, align-checker.
    pub kind: ProgramKind,
    pub compiled: bool,
    pub command: String,
    pub wall_ms: f64,
    /// Taken from the object cache (clang did not run).
    pub cached: bool,
    pub findings: Vec<explain::Finding>,
    pub diagnostics: Vec<diag::Diagnostic>,
    /// `libclang 19` (structured, same major as the clang) or `clang text output` (parsed).
    pub diagnostics_from: libclang::Source,
    /// Why libclang was not used for a failed or warning compile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub libclang_fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<elf::ObjectInfo>,
    /// What the agent sets at load time (1.18+ objects): handed to the loader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_config: Option<load_config::LoadConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<elf::ObjectVerdict>,
    /// Why the object was not loaded (not compiled, not root, --no-verify).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_skipped: Option<String>,
}

/// A program in the tree that the agent does not compile for this target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotBuilt {
    pub name: String,
    pub why: String,
}

/// Which tree was compiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeInfo {
    /// `bpf dir` (a real Cilium tree) or `built-in templates` (preflight's model).
    pub kind: String,
    /// sha256 of the sources scanned (the object cache's tree key).
    pub digest: String,
    pub files: usize,
    /// `HAVE_*` macros the sources test that preflight has no probe for (left undefined).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features_unknown: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompileReport {
    pub cilium_version: String,
    pub profile: profile::Profile,
    pub mcpu: String,
    pub mcpu_reason: String,
    /// Kernel feature macros and datapath modes, decided as the agent would.
    pub features: features::Features,
    /// Whether the feature headers were written into the bpf dir compiled (the scratch copy of
    /// a real tree, or the unpacked templates): always, as the agent does at startup.
    pub features_written: bool,
    pub toolchain: toolchain::Choice,
    pub bpf_dir: String,
    /// Which tree was judged: the target's own (a dir, a tar, an image by digest) or the
    /// built-in templates, the labelled fallback.
    pub tree: source::TreeOrigin,
    /// What the scan of the compiled tree found (digest, files, unknown feature macros).
    pub tree_scan: TreeInfo,
    /// The image's own clang (`--clang-from-image`): whether it runs here and was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_toolchain: Option<source::ImageToolchain>,
    pub state: StateInfo,
    pub init_blockers: Vec<nodeinit::InitBlocker>,
    pub programs: Vec<ProgramResult>,
    /// Programs in the tree the agent does not build here (not used, or not reached).
    pub not_built: Vec<NotBuilt>,
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
    /// Programs whose object came from the cache.
    pub cached: usize,
    /// Parts of `prepare_ms`: finding clang (`--version` per binary, remembered across runs
    /// next to the object cache), copying and scanning the tree (or unpacking the
    /// templates), writing the state.
    pub toolchain_ms: f64,
    pub tree_ms: f64,
    pub state_ms: f64,
}

impl CompileReport {
    pub fn program(&self, name: &str) -> Option<&ProgramResult> {
        self.programs.iter().find(|p| p.name == name)
    }
    pub fn all_findings(&self) -> impl Iterator<Item = &explain::Finding> {
        self.programs.iter().flat_map(|p| &p.findings)
    }
    /// The macros whose redefinition a missing generated header causes in `program` (the
    /// incident's signature), sorted.
    pub fn missing_header_macros(&self, program: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .program(program)
            .into_iter()
            .flat_map(|p| &p.findings)
            .filter(|f| matches!(f.cause, explain::Cause::GeneratedHeaderMissing { .. }))
            .filter(|f| f.kind == "macro-redefined")
            .filter_map(|f| f.subject.clone())
            .collect();
        out.sort();
        out.dedup();
        out
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

/// The template dirs of an existing state dir: (endpoint template, host endpoint), told
/// apart by the host's `HOST_ENDPOINT` define.
fn existing_templates(state: &Path) -> (Option<String>, Option<String>) {
    let Ok(entries) = std::fs::read_dir(state.join("templates")) else {
        return (None, None);
    };
    let (mut lxc, mut host) = (None, None);
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path().join("ep_config.h")) else {
            continue;
        };
        let name = e.file_name().to_string_lossy().into_owned();
        if macros(&text).contains("HOST_ENDPOINT") {
            host.get_or_insert(name);
        } else {
            lxc.get_or_insert(name);
        }
    }
    (lxc, host)
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

/// Every file under a state dir, as (relative path, bytes), sorted: part of the cache key.
fn state_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if meta.is_dir() && depth < 4 {
                walk(root, &e.path(), depth + 1, out);
            } else if meta.is_file() && meta.len() < (4 << 20) {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap_or(&e.path())
                    .display()
                    .to_string();
                if let Ok(bytes) = std::fs::read(e.path()) {
                    out.push((rel, bytes));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, 0, &mut out);
    out.sort();
    out
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

/// How preflight's own state dir is named in findings: it is not a file on any node.
pub const GENERATED_STATE_LABEL: &str = "<state generated by preflight>";
/// How the unpacked built-in templates are named in findings.
pub const TEMPLATES_LABEL: &str = "<built-in templates>";
/// Where the image keeps the datapath sources (docs/upstream.md#datapath-compile): how a tree taken
/// out of an image is named (the image's files, not the node's).
const IMAGE_BPF_DIR: &str = "/var/lib/cilium/bpf";

/// The tree being compiled and what was derived from it.
pub enum TreeModel {
    Templates(headers::Generated),
    Real {
        scan: Box<tree_scan::TreeScan>,
        state: Box<agent_state::AgentState>,
    },
}

/// The prepared inputs: profile, copied tree, state dir, toolchain, jobs.
pub struct Prepared {
    pub report: CompileReport,
    pub jobs: Vec<runner::Job>,
    /// Keeps the scratch dirs alive while the jobs run.
    _scratch: tempfile::TempDir,
    pub bpf_dir: PathBuf,
    pub layout: headers::StateLayout,
    pub model: TreeModel,
    /// Macro names the target's agent writes into node_config.h for this tree.
    pub node_macros: BTreeSet<String>,
    /// Scratch path prefixes and how findings name them (see relabel).
    pub shown_as: Vec<(String, String)>,
    pub agent_options: Option<agent_options::AgentOptions>,
    pub cache_dir: Option<PathBuf>,
}

/// Writes the agent-faithful state for a real tree; `skip_node_config` as with the templates.
fn write_agent_state(
    root: &Path,
    st: &agent_state::AgentState,
    skip_node_config: bool,
) -> std::io::Result<headers::StateLayout> {
    let layout = headers::StateLayout {
        root: root.to_path_buf(),
        template_hash: st.lxc_hash.clone(),
        host_template_hash: st.host_hash.clone(),
    };
    std::fs::create_dir_all(layout.globals())?;
    std::fs::create_dir_all(layout.template_dir())?;
    std::fs::create_dir_all(layout.host_template_dir())?;
    std::fs::write(layout.ep_config(), &st.ep_lxc)?;
    std::fs::write(layout.host_ep_config(), &st.ep_host)?;
    // Datapath init writes node_config.h, then netdev_config.h and filter_config.h: a failed
    // init leaves all three unwritten (the endpoints' templates are still written when they
    // regenerate).
    if !skip_node_config {
        std::fs::write(layout.node_config(), &st.node_config)?;
        std::fs::write(layout.netdev_config(), &st.netdev_config)?;
        if let Some(filter) = &st.filter_config {
            std::fs::write(layout.filter_config(), filter)?;
        }
    }
    Ok(layout)
}

/// Judges the node_config.h in the state dir against what the target's agent writes.
fn judge_node_config(
    layout: &headers::StateLayout,
    model: &TreeModel,
    profile: &profile::Profile,
    target_minor: u32,
    expected: &BTreeSet<String>,
    from_node: bool,
) -> NodeConfigState {
    let Ok(text) = std::fs::read_to_string(layout.node_config()) else {
        return NodeConfigState {
            status: "missing".into(),
            from_node,
            ..Default::default()
        };
    };
    let found = macros(&text);
    let (generated_text, references): (&str, Option<&tree_scan::TreeScan>) = match model {
        TreeModel::Templates(g) => (&g.node_config, None),
        TreeModel::Real { scan, state } => (&state.node_config, Some(scan)),
    };
    if text == generated_text {
        return NodeConfigState {
            status: "present".into(),
            from_node,
            ..Default::default()
        };
    }
    let lacks: Vec<String> = expected
        .difference(&found)
        .filter(|n| references.is_none_or(|t| t.references(n)))
        .cloned()
        .collect();
    let extra: Vec<String> = found.difference(expected).cloned().collect();
    let (written_by, other_version) = match model {
        TreeModel::Templates(_) => match headers::judge_version(&text) {
            Some(v) => {
                let other = v != profile.label();
                (Some(format!("Cilium {v}")), other)
            }
            None => (None, false),
        },
        TreeModel::Real { .. } => match version_guess::judge(&text) {
            Some(g) => (Some(g.label()), !g.contains(target_minor)),
            None => (None, false),
        },
    };
    // Another agent's header is stale; so is one no agent can be placed for that lacks what
    // these sources use (truncated, hand-made). A header placed at the target's own version is
    // not, even if it lacks names preflight's model writes (the dummy's, which the real agent
    // may not: compile errors would still name it).
    let stale = other_version || (written_by.is_none() && !lacks.is_empty());
    NodeConfigState {
        status: if stale { "stale" } else { "present" }.into(),
        written_by,
        lacks,
        extra,
        from_node,
    }
}

/// Everything up to the compile: resolves the profile and toolchain, copies or unpacks the
/// tree, writes or locates the state dir, builds the command lines. Errors are bad input or a
/// missing clang.
pub fn prepare(opts: &Options) -> Result<Prepared, String> {
    let start = Instant::now();
    let profile = profile::for_release(opts.target.release());
    // The agent's own facts (headers, per-program flags, load-time config) follow the target's
    // minor; the profile's `minor` is its compile generation (18 for 1.18 and later).
    let target_minor = opts.target.release().minor;
    let cache_dir = opts.cache.dir();
    // Remembered clang versions are not objects: kept even when objects are not (--no-cache).
    toolchain::versions::set_dir(
        cache_dir
            .clone()
            .or_else(|| cache::CacheMode::Default.dir()),
    );
    let t = Instant::now();
    let choice = toolchain::choose(toolchain::discover(), &profile, opts.clang.as_deref())?;
    let toolchain_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mcpu, mcpu_reason) = profile::choose_mcpu(&profile, opts.probes.as_ref());
    sweep_scratch(&std::env::temp_dir());
    let scratch = tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}.", std::process::id()))
        .tempdir()
        .map_err(|e| format!("scratch dir: {e}"))?;
    let bpf_dir = scratch.path().join("bpf");
    let t = Instant::now();
    let mut features = features::derive(&profile, &opts.target, opts.probes.as_ref());
    let mut agent_options = None;
    if let Some(dir) = &opts.bpf_dir
        && !dir.is_dir()
    {
        return Err(format!("--bpf-dir {}: not a directory", dir.display()));
    }
    let builtin_layout = opts.bpf_dir.as_deref().is_some_and(tree::is_builtin_layout);
    let model = match &opts.bpf_dir {
        Some(dir) if !builtin_layout => {
            // The agent writes its feature headers into its own bpf dir at startup; the
            // user's tree is never written to, so the stage compiles a copy.
            let scan = tree_scan::scan(dir, Some(&bpf_dir))?;
            if scan.programs.is_empty() {
                return Err(format!(
                    "{}: no bpf_*.c programs (expected e.g. bpf_lxc.c)",
                    dir.display()
                ));
            }
            let options = agent_options::AgentOptions::new(target_minor, &opts.target, &features);
            let state = agent_state::generate(&scan, &options, opts.probes.as_ref());
            let include_bpf = bpf_dir.join("include/bpf");
            std::fs::create_dir_all(&include_bpf).map_err(|e| format!("scratch dir: {e}"))?;
            for (file, text) in &state.feature_headers {
                tree_scan::replace_file(&include_bpf.join(file), text)
                    .map_err(|e| format!("write feature headers: {e}"))?;
            }
            features.have = state.have.clone();
            agent_options = Some(options);
            TreeModel::Real {
                scan: Box::new(scan),
                state: Box::new(state),
            }
        }
        _ => {
            match &opts.bpf_dir {
                // An edited copy of the templates: compiled as the templates, from a copy.
                Some(dir) => {
                    tree_scan::scan(dir, Some(&bpf_dir))?;
                }
                None => tree::unpack(&bpf_dir, profile.minor)
                    .map_err(|e| format!("unpack templates: {e}"))?,
            }
            let generated = headers::generate(&profile, &opts.target, opts.probes.as_ref());
            generated
                .features
                .write(&bpf_dir)
                .map_err(|e| format!("write feature headers: {e}"))?;
            TreeModel::Templates(generated)
        }
    };
    let tree_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let node_macros: BTreeSet<String> = match &model {
        TreeModel::Templates(g) => {
            let mut m = macros(&g.node_config);
            m.extend(headers::versioned_node_macros());
            m
        }
        TreeModel::Real { state, .. } => macros(&state.node_config),
    };
    let write = |root: &Path, skip_node: bool| -> Result<headers::StateLayout, String> {
        match &model {
            TreeModel::Templates(g) => g.write(root, skip_node),
            TreeModel::Real { state, .. } => write_agent_state(root, state, skip_node),
        }
        .map_err(|e| format!("write state: {e}"))
    };
    let mut blockers = Vec::new();
    let mut init_fails = false;
    let (layout, source, from_node) = match &opts.state {
        StateSource::Existing(dir) => {
            if !dir.is_dir() {
                return Err(format!("--state-dir {}: not a directory", dir.display()));
            }
            let (lxc, host) = existing_templates(dir);
            let (lxc_default, host_default) = match &model {
                TreeModel::Templates(g) => (g.template_hash.clone(), g.template_hash.clone()),
                TreeModel::Real { state, .. } => (state.lxc_hash.clone(), state.host_hash.clone()),
            };
            let lxc = lxc.unwrap_or(lxc_default);
            // The built-in templates share one template dir for both endpoints.
            let host = match &model {
                TreeModel::Templates(_) => host.unwrap_or_else(|| lxc.clone()),
                TreeModel::Real { .. } => host.unwrap_or(host_default),
            };
            let layout = headers::StateLayout {
                root: dir.clone(),
                template_hash: lxc,
                host_template_hash: host,
            };
            (layout, "existing", true)
        }
        StateSource::Generate => (
            write(&scratch.path().join("state"), false)?,
            "generated",
            false,
        ),
        StateSource::Predict(root) => {
            blockers = nodeinit::blockers(root, &opts.target);
            init_fails = !blockers.is_empty();
            let layout = write(&scratch.path().join("state"), init_fails)?;
            // The node's leftover header, read through the root-confined API (a symlink out of
            // the root is not followed, a FIFO or device not opened), into our scratch dir.
            let leftover = format!("{NODE_STATE_DIR}/globals/node_config.h");
            let mut from_node = false;
            if init_fails {
                match root.read_bytes(&leftover) {
                    Ok(bytes) => {
                        std::fs::write(layout.node_config(), bytes)
                            .map_err(|e| format!("{}: {e}", layout.node_config().display()))?;
                        from_node = true;
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            (layout, "predicted", from_node)
        }
    };
    if let Some(dest) = &opts.emit_state {
        copy_dir(&layout.root, dest)
            .map_err(|e| format!("--emit-state {}: {e}", dest.display()))?;
    }
    let node_config_state = judge_node_config(
        &layout,
        &model,
        &profile,
        target_minor,
        &node_macros,
        from_node,
    );
    let node_config = match (&node_config_state.status[..], &node_config_state.written_by) {
        ("stale", Some(by)) => format!("stale (written by {by})"),
        ("stale", None) => "stale (written by a version that cannot be told)".into(),
        (status, _) => status.to_string(),
    };
    let state_ms = t.elapsed().as_secs_f64() * 1e3;
    let out_dir = scratch.path().join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("scratch dir: {e}"))?;
    let inputs = runner::Inputs {
        profile: &profile,
        toolchain: &choice.toolchain,
        mcpu: &mcpu,
        bpf_dir: &bpf_dir,
        state: &layout,
        out_dir: &out_dir,
        nr_cpus: possible_cpus(),
        host_reads_state_root: matches!(model, TreeModel::Templates(_)),
    };
    let mut not_built = Vec::new();
    let specs: Vec<runner::Spec> = match &model {
        TreeModel::Templates(_) => {
            let programs = tree::programs_in(&bpf_dir);
            if programs.is_empty() {
                return Err(format!(
                    "{}: no bpf_*.c programs (expected e.g. bpf_lxc.c)",
                    bpf_dir.display()
                ));
            }
            programs
                .iter()
                .map(|p| runner::Spec {
                    program: p.clone(),
                    kind: match p.as_str() {
                        "bpf_lxc" => ProgramKind::Endpoint,
                        "bpf_host" => ProgramKind::Host,
                        _ => ProgramKind::Base,
                    },
                    defines: if p == "bpf_overlay" && profile.overlay_calls_map {
                        vec!["-DCALLS_MAP=cilium_calls_overlay_2".into()]
                    } else {
                        vec![]
                    },
                })
                .collect()
        }
        TreeModel::Real { state, .. } => {
            not_built.extend(state.not_built.iter().map(|(name, why)| NotBuilt {
                name: name.clone(),
                why: why.clone(),
            }));
            let mut specs = Vec::new();
            for p in &state.programs {
                // Datapath init compiles these after writing node_config.h: when init fails
                // first, the agent never gets to them (endpoints are still regenerated).
                let base = matches!(p.kind, ProgramKind::Base | ProgramKind::AlignChecker);
                if init_fails && base {
                    not_built.push(NotBuilt {
                        name: p.name.clone(),
                        why: "not reached: datapath init fails before it compiles the base \
                              programs (see compile.init); endpoints are still regenerated"
                            .into(),
                    });
                    continue;
                }
                specs.push(runner::Spec {
                    program: p.name.clone(),
                    kind: p.kind,
                    defines: p.defines.clone(),
                });
            }
            specs
        }
    };
    let mut jobs: Vec<runner::Job> = specs.iter().map(|s| runner::job(s, &inputs)).collect();
    let (tree_info, tree_digest) = match &model {
        TreeModel::Templates(_) => {
            let scan = tree_scan::scan(&bpf_dir, None)?;
            (
                TreeInfo {
                    kind: "built-in templates".into(),
                    digest: scan.digest.clone(),
                    files: scan.files,
                    features_unknown: Vec::new(),
                },
                scan.digest,
            )
        }
        TreeModel::Real { scan, state } => {
            // The key covers the feature headers written into the copy after the scan.
            let features: String = state.feature_headers.values().cloned().collect();
            (
                TreeInfo {
                    kind: "bpf dir".into(),
                    digest: scan.digest.clone(),
                    files: scan.files,
                    features_unknown: state.have_unknown.clone(),
                },
                format!("{}{features}", scan.digest),
            )
        }
    };
    if cache_dir.is_some() {
        let compiler = cache::compiler_identity(&choice.toolchain.clang, &choice.toolchain.version);
        let mut state_key = Vec::new();
        for (rel, bytes) in state_files(&layout.root) {
            state_key.extend_from_slice(rel.as_bytes());
            state_key.push(0);
            state_key.extend_from_slice(&bytes);
        }
        let scratch_root = scratch.path().display().to_string();
        let state_root = layout.root.display().to_string();
        for job in &mut jobs {
            let args = job
                .command_line()
                .replace(&state_root, "<state>")
                .replace(&scratch_root, "<scratch>");
            job.cache_key = Some(cache::key(&[
                tree_digest.as_bytes(),
                &state_key,
                compiler.as_bytes(),
                args.as_bytes(),
            ]));
            // The state dir first: a replayed one may sit inside the scratch dir's parent.
            job.cache_paths = vec![
                (state_root.clone(), "<preflight-cache:state>".into()),
                (scratch_root.clone(), "<preflight-cache:scratch>".into()),
            ];
        }
    }
    let report = CompileReport {
        cilium_version: opts.target.cilium_version.to_string(),
        mcpu,
        mcpu_reason,
        features,
        features_written: true,
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
        tree_scan: tree_info,
        image_toolchain: opts.image_toolchain.clone(),
        state: StateInfo {
            dir: layout.root.display().to_string(),
            source: source.into(),
            template_hash: layout.template_hash.clone(),
            host_template_hash: layout.host_template_hash.clone(),
            node_config,
            node_config_state,
        },
        init_blockers: blockers,
        programs: Vec::new(),
        not_built,
        profile,
        timings: Timings {
            stage_ms: start.elapsed().as_secs_f64() * 1e3,
            workers: opts.workers,
            toolchain_ms,
            tree_ms,
            state_ms,
            ..Timings::default()
        },
    };
    // Scratch copies are never shown as node files: the copied tree as the user's dir, the
    // templates and preflight's own state by a label; in a prediction the node_config.h
    // path is the node's (it is the node's file, missing or left over).
    let mut shown_as = Vec::new();
    // A tree taken out of an image is what the agent sees at /var/lib/cilium/bpf (named so,
    // it is the image's file, not the node's); a tar's copy is named by the file it came from.
    match (&opts.bpf_dir, &report.tree) {
        (None, _) => shown_as.push((bpf_dir.display().to_string(), TEMPLATES_LABEL.to_string())),
        (Some(_), source::TreeOrigin::Image { .. }) => {
            shown_as.push((bpf_dir.display().to_string(), IMAGE_BPF_DIR.to_string()))
        }
        (Some(_), source::TreeOrigin::Tar { file, inner }) => shown_as.push((
            bpf_dir.display().to_string(),
            format!("{file}:{inner}").trim_end_matches(':').to_string(),
        )),
        (Some(dir), _) => shown_as.push((
            bpf_dir.display().to_string(),
            dir.canonicalize()
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string(),
        )),
    }
    match &opts.state {
        StateSource::Predict(root) => {
            shown_as.push((
                layout.node_config().display().to_string(),
                root.display(&format!("{NODE_STATE_DIR}/globals/node_config.h")),
            ));
            shown_as.push((
                layout.root.display().to_string(),
                GENERATED_STATE_LABEL.to_string(),
            ));
        }
        StateSource::Generate => shown_as.push((
            layout.root.display().to_string(),
            GENERATED_STATE_LABEL.to_string(),
        )),
        StateSource::Existing(_) => {}
    }
    Ok(Prepared {
        report,
        jobs,
        _scratch: scratch,
        bpf_dir,
        layout,
        model,
        node_macros,
        shown_as,
        agent_options,
        cache_dir,
    })
}

/// Runs the whole stage.
pub fn run(opts: &Options) -> Result<CompileReport, String> {
    let start = Instant::now();
    let prepared = prepare(opts)?;
    let mut report = prepared.report;
    report.timings.prepare_ms = start.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let outcomes = runner::run_all_cached(
        &prepared.jobs,
        opts.workers,
        opts.progress,
        prepared.cache_dir.as_deref(),
    );
    report.timings.compile_ms = t.elapsed().as_secs_f64() * 1e3;
    report.timings.clang_sum_ms = outcomes
        .iter()
        .filter(|o| !o.cached)
        .map(|o| o.wall_ms)
        .sum();
    report.timings.cached = outcomes.iter().filter(|o| o.cached).count();
    let ctx = explain::Context {
        bpf_dir: &prepared.bpf_dir,
        state: &prepared.layout,
        profile: &report.profile,
        target: opts.target.cilium_version.minor_label(),
        clang_major: report.toolchain.toolchain.major,
        blockers: &report.init_blockers,
        node_macros: &prepared.node_macros,
        node_config: &report.state.node_config_state,
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
    let mut results = Vec::new();
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
        let load_config = match (&prepared.model, &prepared.agent_options, &bytes, &object) {
            // Up to 1.17 the `.rodata.config` variables are the template's static data, which
            // the loader patches per endpoint (`ELFVariableSubstitutions`), not configuration.
            (TreeModel::Real { .. }, Some(o), Some(b), Some(info)) if o.load_time_config => {
                let values = agent_facts::load_time_values(o, &job.program);
                let renames = agent_facts::map_renames(o, &job.program);
                load_config::for_object(b, &values, &renames, &info.maps)
                    .ok()
                    .filter(|c| !c.is_empty() || !c.defaults_kept.is_empty())
            }
            _ => None,
        };
        let (verify, verify_skipped) = match (&bytes, &object, &loader) {
            (Some(_), Some(_), _) if job.kind == ProgramKind::AlignChecker => (
                None,
                Some("never loaded: the agent only checks its struct layouts against it".into()),
            ),
            (Some(b), Some(_), Some(loader)) => {
                let t = Instant::now();
                // The agent's load-time values and renames, then the caller's own on top.
                let mut load = elf::LoadOptions::default();
                if let Some(c) = &load_config {
                    load.config = c.variables.clone();
                    load.map_renames = c.map_renames.clone();
                }
                if let Some(given) = opts.load.get(&job.program) {
                    load.config.extend(given.config.clone());
                    load.map_renames.extend(given.map_renames.clone());
                    load.pin_dir = given.pin_dir.clone();
                    load.log_lines = given.log_lines;
                    load.verbose_log_bytes = given.verbose_log_bytes;
                }
                let v = loader.load(b, &load);
                verify_ms += t.elapsed().as_secs_f64() * 1e3;
                (Some(v), None)
            }
            (Some(_), Some(_), _) if !opts.verify => (
                None,
                Some(
                    opts.verify_skipped
                        .clone()
                        .unwrap_or_else(|| "verification disabled".into()),
                ),
            ),
            (Some(_), Some(_), _) => (None, Some("not root: the kernel was not asked".into())),
            _ => (None, Some("not compiled".into())),
        };
        results.push(ProgramResult {
            name: job.program.clone(),
            kind: job.kind,
            compiled: outcome.success,
            command: job.command_line(),
            wall_ms: outcome.wall_ms,
            cached: outcome.cached,
            findings,
            diagnostics,
            diagnostics_from: chosen.from,
            libclang_fallback: chosen.fallback,
            object,
            load_config,
            verify,
            verify_skipped,
        });
    }
    report.programs = results;
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

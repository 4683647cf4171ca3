//! Command line. Every subcommand's help says what it does, what it touches and how it exits.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{probe::Scope, report::Format, target::Capability};

const EXIT_CODES: &str = "\
Exit codes:
  0  go: every capability the target needs is available
  1  no-go: at least one needed check failed (the report says which and how to fix it)
  2  error: bad input (file and line named), an internal error, or undecided: a needed
     capability could not be checked at all (e.g. not root, so bpf() was refused)";

#[derive(Debug, Parser)]
#[command(
    name = "preflight",
    version,
    about = "Will Cilium come up on this node? Checks the kernel's eBPF support, attaches real \
             canary programs, and (in later stages) compiles a Cilium-like datapath, before you \
             migrate from flannel.",
    long_about = None,
    after_help = EXIT_CODES,
)]
pub struct Cli {
    /// More logging on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour: auto (terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every check for a Cilium target on this node and give a go / no-go verdict.
    ///
    /// Gathers facts (live bpf() probes, attach canaries in a scratch network namespace),
    /// evaluates the checks the target needs, prints the report and exits 0 (go), 1 (no-go)
    /// or 2 (error). Needs root for the live probes; without it they report "unknown".
    /// Nothing on the node is changed: canaries run in private namespaces and clean up even
    /// when killed.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// Probe which eBPF program types, map types and helpers this kernel supports.
    ///
    /// Loads minimal programs through bpf() and reads the verifier's answer. Each item is
    /// available, unavailable, or unknown (with the reason, e.g. EPERM). The default scope is
    /// what Cilium uses; --all probes everything (bpftool feature probe's scope). Exits 0 when
    /// the probe ran, 2 on error.
    Probe(ProbeArgs),
    /// Compile a Cilium-like datapath the way cilium-agent would, explain failures, load the
    /// objects into the kernel (verifier) without attaching them.
    ///
    /// By default compiles the built-in templates with headers generated for the target in a
    /// scratch state dir; --bpf-dir/--state-dir replay a real tree and a real node's state.
    /// Exits 0 when every program compiled and loaded, 1 when one did not (findings say why),
    /// 2 on bad input or when no clang is found.
    #[command(after_help = EXIT_CODES)]
    Compile(CompileArgs),
    #[command(name = "__canary-worker", hide = true)]
    CanaryWorker,
    #[command(name = "__canary-janitor", hide = true)]
    CanaryJanitor { pid: i32, dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The node's root filesystem. Live probes (bpf(), canaries) only run when this is /.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Skip the attach canaries (they need root and take ~100 ms).
    #[arg(long)]
    pub no_canaries: bool,
    /// Treat this check id as passed (repeatable); it stays visible, marked [ignored].
    #[arg(long = "ignore", value_name = "CHECK_ID")]
    pub ignore: Vec<String>,
    /// Skip the datapath compile stage (clang + verifier; about a second on 2 cores).
    #[arg(long)]
    pub no_compile: bool,
    /// Add a capability to the target's needs (repeatable), e.g. --need socket-lb.
    #[arg(long = "need", value_enum, value_name = "CAPABILITY")]
    pub need: Vec<Capability>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe every program type, map type and helper, not just Cilium's.
    #[arg(long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

impl ProbeArgs {
    pub fn scope(&self) -> Scope {
        if self.all { Scope::All } else { Scope::Cilium }
    }
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// A Cilium bpf dir (e.g. copied out of the image's /var/lib/cilium/bpf) instead of the
    /// built-in templates.
    #[arg(long, value_name = "DIR")]
    pub bpf_dir: Option<PathBuf>,
    /// A state dir shaped like /var/run/cilium/state, used as is (replay a node). Default: a
    /// scratch dir with headers generated for the target.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Predict this node's state dir instead: leave node_config.h out (or use the node's
    /// leftover) when datapath init would fail here (flannel.1 on the tunnel port, bpffs, rp_filter).
    #[arg(long, conflicts_with = "state_dir")]
    pub as_node: bool,
    /// The node's root filesystem for --as-node (a Job's /host, a fixture tree).
    #[arg(long, default_value = "/", requires = "as_node")]
    pub root: PathBuf,
    /// Target Cilium version (selects flags, include layout and the clang to match).
    #[arg(long, default_value = crate::target::DEFAULT_CILIUM_VERSION)]
    pub cilium_version: String,
    /// Helm values file. Not read yet: the values stage is not merged, the chart defaults apply.
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// Use this clang instead of the one matching the target's bundled LLVM.
    #[arg(long, value_name = "PATH")]
    pub clang: Option<PathBuf>,
    /// Copy the state dir used (generated headers) here for inspection and later --state-dir.
    #[arg(long, value_name = "DIR")]
    pub emit_state: Option<PathBuf>,
    /// Do not load the objects into the kernel.
    #[arg(long)]
    pub no_verify: bool,
    /// Parallel clang invocations (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print benchmark figures on stderr (parallel vs sequential, overhead, peak RSS).
    #[arg(long)]
    pub bench: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

//! Command line. Every subcommand's help says what it does, what it touches and how it exits.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{probe::Scope, report::Format, target::Capability};

const EXIT_CODES: &str = "\
Exit codes:
  0  go: every capability the target needs is available
  1  no-go: at least one needed check failed (the report says which and how to fix it)
  2  error: bad input (file and line named) or an internal error";

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
    /// The cluster verdict from many node reports (files, directories, `-` for stdin).
    ///
    /// Reads `preflight run --format json` / `json-line` reports and `kubectl logs` output
    /// (a report per line, log noise and `--prefix`/`--timestamps` prefixes skipped), one report
    /// at a time. A capability is go only if every node is go for it; nodes are grouped by the
    /// checks that block them. Reports of another schema_version are refused by file and line.
    /// Exits 0 (every node go), 1 (some node no-go) or 2 (no reports, refused reports, I/O).
    #[command(after_help = EXIT_CODES)]
    Aggregate(AggregateArgs),
    /// Print Kubernetes manifests that run preflight once on every node (a DaemonSet).
    ///
    /// Each pod runs `preflight run --root /host` in an init container with the host's / mounted
    /// read-only, /sys/fs/bpf and /sys/fs/cgroup writable, hostPID/hostNetwork, and the
    /// capabilities BPF, PERFMON, NET_ADMIN, SYS_ADMIN, SYS_RESOURCE instead of privileged. The
    /// report is one JSON line in the pod's log: feed `kubectl logs` to `preflight aggregate`.
    /// Prints YAML on stdout; touches nothing. See docs/fleet.md.
    Job(JobArgs),
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
    /// Add a capability to the target's needs (repeatable), e.g. --need socket-lb.
    #[arg(long = "need", value_enum, value_name = "CAPABILITY")]
    pub need: Vec<Capability>,
    /// --root is the node this kernel runs (a pod with the host's / at /host): run the live
    /// probes and canaries anyway. `preflight job` sets it.
    #[arg(long)]
    pub host_kernel: bool,
    /// Exit 0 whatever the verdict (errors still exit 2); the verdict stays in the report. For
    /// the DaemonSet's init container, which Kubernetes would restart on exit 1.
    #[arg(long)]
    pub exit_zero: bool,
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Report files, directories (read recursively) or `-` (stdin).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// Namespace for the DaemonSet (created unless --no-namespace).
    #[arg(long, short = 'n', default_value = "preflight")]
    pub namespace: String,
    /// Do not emit the Namespace object (it exists already).
    #[arg(long)]
    pub no_namespace: bool,
    /// The preflight image (see the Dockerfile); default preflight:<this version>.
    #[arg(long)]
    pub image: Option<String>,
    /// The image that holds each pod after the check (DaemonSet pods must keep running).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pause_image: String,
    /// Name of the DaemonSet and its label.
    #[arg(long, default_value = "preflight")]
    pub name: String,
    /// Target flag for the run on each node: add a capability (repeatable).
    #[arg(long = "need", value_enum, value_name = "CAPABILITY")]
    pub need: Vec<Capability>,
    /// Target flag for the run on each node: treat this check id as passed (repeatable).
    #[arg(long = "ignore", value_name = "CHECK_ID")]
    pub ignore: Vec<String>,
    /// Skip the attach canaries on the nodes.
    #[arg(long)]
    pub no_canaries: bool,
    /// Further `preflight run` flags for the nodes, after `--`.
    #[arg(last = true, value_name = "RUN_ARGS")]
    pub run_args: Vec<String>,
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

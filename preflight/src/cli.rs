//! Command line. Every subcommand's help says what it does, what it touches and how it exits.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{
    plan::cmd::{FallbackTo, InstallArgs, PlanArgs, RollbackArgs},
    probe::Scope,
    report::Format,
    target::Capability,
};

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
    /// Print the migration plan for this k3s node: every step, what it changes, why, and how
    /// it is undone. Changes nothing (with --emit-gitops it writes the values file and an Argo CD
    /// Application into that directory). Exits 0, or 2 on bad input.
    Plan(PlanArgs),
    /// Run the preflight, then carry out the plan under a journal: k3s drop-in, leftovers moved
    /// aside, k3s restart, helm upgrade --install, waits, post-checks. Any failure rolls back
    /// automatically. Exits 0 installed, 1 refused or failed-and-rolled-back, 2 error.
    Install(InstallArgs),
    /// Undo everything the journal records, newest first, byte for byte. Idempotent; finishes an
    /// install or rollback that was killed. Exits 0 restored, 2 when some undo failed.
    Rollback(RollbackArgs),
    /// Give the node back to a CNI other than Cilium.
    #[command(subcommand)]
    Fallback(FallbackTo),
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

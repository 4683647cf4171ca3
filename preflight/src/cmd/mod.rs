//! Command line. Every subcommand's help says what it does, what it touches and how it exits.
pub mod checks;
pub mod cluster;
pub mod compile;
pub mod fleet;
pub mod gate;
pub mod out;
pub mod plan;
pub mod report;
pub mod run;
pub mod tree;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use self::plan::{FallbackTo, InstallArgs, PlanArgs, RollbackArgs};
use crate::{host::HostRoot, model::Capability, probe::Scope, report::Format};

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  GO: every capability the target needs is available
  1  not go as the node stands: NO-GO (something only a person can change), or GO after
     plan (every blocking finding is fixed by a step of `preflight plan`; the verdict line
     and the JSON's verdict.readiness tell them apart) — the report says which and how to fix it;
     for `diff`: the verdict went from go to no-go/undecided, or something the target needs
     went from pass to fail/unknown/skip/absent
  2  error: bad input (file and line named, e.g. a YAML error in a values file), an internal
     error, or undecided: a needed capability could not be checked at all (e.g. not root)"
    };
}

macro_rules! compile_exit_codes {
    () => {
        "\
Exit codes:
  0  every program compiled and the kernel's verifier loaded it
  1  a program did not compile or load (the findings say why and what to change)
  2  error: bad input (file and line named), no usable clang, or an internal error"
    };
}

macro_rules! diff_exit_codes {
    () => {
        "\
Exit codes:
  0  nothing the new run's target needs got worse
  1  the verdict went from go to no-go/undecided, or a needed check went from pass to
     fail/unknown/skip/absent
  2  error: an unreadable report (file and line named) or another schema_version"
    };
}

macro_rules! gate_exit_codes {
    () => {
        "\
Exit codes (as `diff`'s, from each kernel to the next):
  0  nothing the target needs got worse
  1  the verdict went from go to no-go/undecided, or a needed check went from pass to
     fail/unknown/skip/absent
  2  bad input, a kernel that could not be fetched or booted, or a guest without a report"
    };
}

macro_rules! aggregate_exit_codes {
    () => {
        "\
Exit codes:
  0  every node is go
  1  some node is no-go (the groups say which checks block which nodes)
  2  error: no reports, a refused report (file and line named), or I/O"
    };
}

/// `--version`: the version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PREFLIGHT_GIT_COMMIT"),
    ")"
);

/// The command line as `main`, `completions` and `man` see it: [`Cli`] with a `--version` that
/// also names the Cilium releases this build knows (a run-time list, hence not in the derive).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let releases = crate::cilium::releases::BUILTIN;
    let long = format!(
        "{VERSION}\nCilium releases known: {}\ndefault target: Cilium {}",
        releases.known(),
        releases.default_version()
    );
    Cli::command().long_version(long)
}

#[derive(Debug, Parser)]
#[command(
    name = "preflight",
    version = VERSION,
    about = "Will Cilium come up on this node? Before you migrate from flannel: probes the \
             kernel's eBPF support, attaches real canary programs, reads the node's config, \
             compiles a Cilium-like datapath with this node's clang and loads it into the \
             verifier. Then installs Cilium under a journal, or hardens flannel, and can undo \
             either.",
    long_about = None,
    after_help = concat!(
        "Examples:\n  preflight run                      # will Cilium come up on this node?\n  \
         preflight checks                   # every check id and its fix\n  \
         preflight plan                     # what the migration would change\n  \
         preflight install -f values.yaml   # carry it out, under a journal\n\n",
        exit_codes!()
    ),
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
    #[command(after_help = concat!("Examples:\n  preflight run\n  preflight run -f values.yaml --set kubeProxyReplacement=true -o json --output-file report.json\n  preflight run --root /host --host-kernel -o json-line          # in a pod, as `preflight job` does\n  preflight run -q --junit-file preflight.xml --markdown-file \"$GITHUB_STEP_SUMMARY\"\n  preflight run --ignore 'kernel.config.*,k3s.network-policy' --cilium-version 1.18", "\n\n", exit_codes!()))]
    Run(RunArgs),
    /// Probe which eBPF program types, map types and helpers this kernel supports.
    ///
    /// Loads minimal programs through bpf() and reads the verifier's answer. Each item is
    /// available, unavailable, or unknown (with the reason, e.g. EPERM). By default: every
    /// program type, and the map types and helpers Cilium uses; --all probes every map type and
    /// helper too (bpftool feature probe's scope). Exits 0 when the probe ran, 2 on error.
    #[command(
        after_help = "Examples:\n  preflight probe\n  preflight probe --all -o json --output-file probe.json"
    )]
    Probe(ProbeArgs),
    /// Compile a Cilium-like datapath the way cilium-agent would, explain failures, load the
    /// objects into the kernel (verifier) without attaching them.
    ///
    /// By default compiles the built-in templates with headers generated for the target in a
    /// scratch state dir; --bpf-dir/--state-dir replay a real tree and a real node's state.
    /// Exits 0 when every program compiled and loaded, 1 when one did not (findings say why),
    /// 2 on bad input or when no clang is found.
    #[command(after_help = concat!("Examples:\n  preflight compile\n  preflight compile --cilium-version 1.18.3 --image quay.io/cilium/cilium:v1.18.3 -o json\n  preflight compile --as-node --root fixtures/compile/missing-node-config/root", "\n\n", compile_exit_codes!()))]
    Compile(CompileArgs),
    /// Print the JSON Schema of the report that `run --format json` writes.
    #[command(after_help = "Examples:\n  preflight schema > report.schema.json")]
    Schema,
    /// Compare two JSON reports (e.g. before and after a kernel upgrade): the kernel-upgrade gate.
    ///
    /// Lists every check whose status changed and warns when the two targets differ. Exits 1
    /// when the verdict went from go to no-go/undecided or a check the new run's target needs
    /// went from pass to fail, unknown, skip or absent; 0 otherwise; 2 on unreadable input or a
    /// report of another schema_version.
    #[command(after_help = concat!("Examples:\n  preflight diff before.json after.json\n  preflight diff before.json after.json -o json --output-file changes.json", "\n\n", diff_exit_codes!()))]
    Diff(DiffArgs),
    /// Print the migration plan for this k3s node: every step, what it changes, why, and how
    /// it is undone. Changes nothing (with --emit-gitops it writes the values file and an Argo CD
    /// Application into that directory). Exits 0, or 2 on bad input.
    #[command(
        after_help = "Examples:\n  preflight plan\n  preflight plan -f values.yaml --kube-proxy-replacement\n  preflight plan --emit-gitops ./cilium-gitops"
    )]
    Plan(PlanArgs),
    /// Run the preflight, then carry out the plan under a journal: k3s drop-in, leftovers moved
    /// aside, k3s restart, helm upgrade --install, waits, post-checks. Any failure rolls back
    /// automatically. Exits 0 installed, 1 refused or failed-and-rolled-back, 2 error.
    #[command(
        after_help = "Examples:\n  preflight install -f values.yaml\n  preflight install --yes --restart-pods"
    )]
    Install(InstallArgs),
    /// Undo everything the journal records, newest first, byte for byte. Idempotent; finishes an
    /// install or rollback that was killed. Exits 0 restored, 2 when some undo failed.
    #[command(after_help = "Examples:\n  preflight rollback")]
    Rollback(RollbackArgs),
    /// Give the node back to a CNI other than Cilium.
    #[command(subcommand)]
    Fallback(FallbackTo),
    /// The cluster verdict from many node reports (files, directories, `-` for stdin).
    ///
    /// Reads `preflight run --format json` / `json-line` reports and `kubectl logs` output
    /// (a report per line, log noise and `--prefix`/`--timestamps` prefixes skipped), one report
    /// at a time. A capability is go only if every node is go for it; nodes are grouped by the
    /// checks that block them. Reports of another schema_version are refused by file and line.
    /// Exits 0 (every node go), 1 (some node no-go) or 2 (no reports, refused reports, I/O).
    #[command(after_help = concat!("Examples:\n  kubectl -n preflight logs ds/preflight -c preflight --prefix | preflight aggregate -\n  preflight aggregate reports/ -o json --output-file cluster.json", "\n\n", aggregate_exit_codes!()))]
    Aggregate(AggregateArgs),
    /// Print Kubernetes manifests that run preflight once on every node (a DaemonSet).
    ///
    /// Each pod runs `preflight run --root /host` in an init container with the host's / mounted
    /// read-only, /sys/fs/bpf and /sys/fs/cgroup writable, hostPID/hostNetwork, and the
    /// capabilities BPF, PERFMON, NET_ADMIN, SYS_ADMIN, SYS_RESOURCE instead of privileged. The
    /// report is one JSON line in the pod's log: feed `kubectl logs` to `preflight aggregate`.
    /// --values files go to the nodes in a ConfigMap. The flags for the nodes are checked here
    /// as `run` would check them (exit 2). Prints YAML on stdout; touches nothing. See
    /// docs/fleet.md.
    #[command(
        after_help = "Examples:\n  preflight job -f values.yaml | kubectl apply -f -\n  preflight job --cilium-version 1.18.3 --image registry.example/preflight:0.1.0 -- --no-compile"
    )]
    Job(JobArgs),
    /// The kernel-upgrade gate: boot each kernel under qemu with this (static) preflight, judge
    /// the target there, and compare each kernel's report with the next as `diff` does.
    ///
    /// Kernels: Debian packages (apt-get download, cached), .deb files, or kernels on disk.
    /// Needs qemu-system and busybox-static. Reports go to --results. See docs/fleet.md.
    #[command(after_help = concat!("Examples:\n  preflight gate --kernel linux-image-6.1.0-28-amd64 --kernel linux-image-6.12.12+bpo-amd64 -f values.yaml", "\n\n", gate_exit_codes!()))]
    Gate(gate::GateArgs),
    /// List every check: its id (for --ignore, diff and aggregate), area, the capabilities that
    /// need it, and what to do when it fails. Exits 0.
    #[command(
        after_help = "Examples:\n  preflight checks\n  preflight checks -o json | jq -r '.[].id'\n  preflight checks --area kernel"
    )]
    Checks(ChecksArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(
        after_help = "Examples:\n  preflight completions bash > /etc/bash_completion.d/preflight\n  preflight completions zsh > \"${fpath[1]}/_preflight\"\n  preflight completions fish > ~/.config/fish/completions/preflight.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout, or with --dir write one page per subcommand there.
    #[command(
        after_help = "Examples:\n  preflight man | man -l -\n  preflight man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write preflight.1 and preflight-SUBCOMMAND.1 into DIR (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    #[command(name = "__canary-worker", hide = true)]
    CanaryWorker,
    #[command(name = "__canary-janitor", hide = true)]
    CanaryJanitor { pid: i32, dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output format, as kubectl's and cilium-cli's -o: text, json, junit (CI test results),
    /// markdown (CI job summary), json-line (the JSON on one line, as the fleet Job's pods print
    /// it). --format is the same flag.
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: Format,
    #[command(flatten)]
    pub files: ReportFiles,
    /// Print only the verdict line on stdout (files given with --output-file, --json-file,
    /// --junit-file and --markdown-file are still written in full).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub target: TargetFlags,
    #[command(flatten)]
    pub root: RootArg,
    /// Skip the attach canaries (they need root and take ~100 ms).
    #[arg(long)]
    pub no_canaries: bool,
    /// Treat these checks as passed; they stay visible, marked [ignored]. A comma-separated list
    /// (repeatable) of check ids, globs (`kernel.config.*`) or `all` (`preflight checks` lists
    /// the ids). An id or glob that matches no check is refused (exit 2) with the closest id.
    #[arg(long = "ignore", value_name = "ID,GLOB,all", value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Skip the datapath compile stage (clang + verifier; about a second on 2 cores).
    #[arg(long)]
    pub no_compile: bool,
    /// Where the compile stage's datapath sources come from (cmd/tree.rs).
    #[command(flatten)]
    pub tree: tree::TreeArgs,
    /// --root is the node this kernel runs (a pod with the host's / at /host): run the live
    /// probes and canaries anyway. `preflight job` sets it.
    #[arg(long)]
    pub host_kernel: bool,
    /// Exit 0 whatever the verdict (errors still exit 2); the verdict stays in the report. For
    /// the DaemonSet's init container, which Kubernetes would restart on exit 1.
    #[arg(long)]
    pub exit_zero: bool,
}

/// Where a report goes besides stdout: one file in the -o format, or one file per format in the
/// same run (CI keeps a JUnit file and the JSON for `diff`). Errors name the flag and the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ReportFiles {
    /// Write the report (in the -o format) to FILE instead of stdout; the verdict line goes to
    /// stderr so a CI log still shows it.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Also write the JSON report to FILE (for `diff` and `aggregate`).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
    /// Also write JUnit XML to FILE (CI test results).
    #[arg(long, value_name = "FILE")]
    pub junit_file: Option<PathBuf>,
    /// Also write Markdown to FILE (a CI job summary, e.g. $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FILE")]
    pub markdown_file: Option<PathBuf>,
}

/// `--root`, declared once for every command that reads or changes a node, and parsed once into
/// a [`HostRoot`].
#[derive(Debug, Clone, Args)]
pub struct RootArg {
    /// The node's root filesystem: `/` on the node, the host's `/` mounted in a pod (`/host`), or
    /// a fixture tree. Live probes (bpf(), canaries) only run when this is /.
    #[arg(long = "root", id = "root", value_name = "ROOT", default_value = "/")]
    pub path: PathBuf,
}

impl RootArg {
    /// The node's root: a directory (else exit 2, naming it), live when it is `/` or, with
    /// `host_kernel` (`run --host-kernel`), another view of the node this kernel runs.
    pub fn host(&self, host_kernel: bool) -> anyhow::Result<HostRoot> {
        Ok(HostRoot::from_flag(&self.path)
            .map_err(anyhow::Error::msg)?
            .with_host_kernel(host_kernel))
    }
}

/// The target flags `run`, `plan`, `install` and `job` share: which Cilium, with which Helm
/// values.
#[derive(Debug, Args)]
pub struct TargetFlags {
    /// Cilium version, e.g. 1.20 or 1.16.4 (default: --chart's version, else the newest release
    /// preflight knows; a minor is its newest known patch). A minor preflight does not know is
    /// refused with the known ones (exit 2); a newer patch is judged with a warning.
    #[arg(long, value_name = "VERSION", value_parser = crate::cilium::CiliumVersion::parse)]
    pub cilium_version: Option<crate::cilium::CiliumVersion>,
    /// Helm values file (repeatable; later files win, maps merge deeply as in Helm; `-` is
    /// stdin).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Helm --set: key=value[,key=value], dotted keys, lists as {a,b} (repeatable). As in Helm,
    /// after the -f files come --set-json, --set, --set-string, then --set-file.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Helm --set-string: as --set, but every value is a string (`--set-string tag=010`).
    #[arg(long = "set-string", value_name = "KEY=VALUE")]
    pub set_string: Vec<String>,
    /// Helm --set-json: key=JSON[,key=JSON] (`--set-json 'ipam.operator.clusterPoolIPv4PodCIDRList=["10.42.0.0/16"]'`).
    #[arg(long = "set-json", value_name = "KEY=JSON")]
    pub set_json: Vec<String>,
    /// Helm --set-file: key=FILE, the value is the file's content (`-` is stdin).
    #[arg(long = "set-file", value_name = "KEY=FILE")]
    pub set_file: Vec<String>,
    /// The Cilium chart (directory or .tgz): validate the values against its values.schema.json.
    #[arg(long, value_name = "DIR|TGZ")]
    pub chart: Option<PathBuf>,
    /// Add a capability to the target's needs (repeatable), e.g. --need socket-lb.
    #[arg(long = "need", value_enum, value_name = "CAPABILITY")]
    pub need: Vec<Capability>,
    /// The Cilium chart's values are under this key of the values files (an umbrella chart's
    /// `cilium:`); found by itself when the files look like that (values.umbrella).
    #[arg(long, value_name = "KEY")]
    pub values_path: Option<String>,
}

impl TargetFlags {
    /// The target these flags describe (the version resolves in `Target::build`: the flag, else
    /// the chart's, else the newest release).
    pub fn spec(&self) -> crate::cilium::TargetSpec {
        crate::cilium::TargetSpec {
            cilium_version: self.cilium_version.clone(),
            value_files: self.values.clone(),
            sets: self.set.clone(),
            set_json: self.set_json.clone(),
            set_string: self.set_string.clone(),
            set_file: self.set_file.clone(),
            chart: self.chart.clone(),
            need: self.need.clone(),
            values_path: self.values_path.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ChecksArgs {
    /// Output format: text (grouped by area) or json (an array of {id, area, title, needed_by,
    /// remedy}).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: ChecksFormat,
    /// Only the checks of this area (e.g. kernel, k3s, values).
    #[arg(long, value_parser = parse_area)]
    pub area: Option<crate::model::Area>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksFormat {
    /// Grouped by area, each check with what needs it and its fix.
    Text,
    /// A JSON array, one object per check.
    Json,
}

fn parse_area(s: &str) -> Result<crate::model::Area, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        "not an area: bpf, attach, kernel, modules, mounts, sysctl, network, cni, k3s, state, \
         distro, compile, values"
            .to_string()
    })
}

#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Report files, directories (read recursively) or `-` (stdin).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Output format (--format is the same flag).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: DataFormat,
    /// Write the cluster verdict to FILE instead of stdout; its summary line goes to stderr.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// Namespace for the DaemonSet (created unless --no-namespace); a DNS-1123 label.
    #[arg(long, short = 'n', default_value = "preflight",
          value_parser = crate::model::parse_dns1123_label)]
    pub namespace: String,
    /// Do not emit the Namespace object (it exists already).
    #[arg(long)]
    pub no_namespace: bool,
    /// The preflight image (see the Dockerfile); default preflight:<this version>.
    #[arg(long)]
    pub image: Option<String>,
    /// The Cilium image whose datapath the nodes compile (an init container copies its
    /// /var/lib/cilium/bpf and clang into an emptyDir); default quay.io/cilium/cilium:v<target
    /// version> when the target names a patch release, e.g. --cilium-version 1.18.3.
    #[arg(long, value_name = "REF")]
    pub cilium_image: Option<String>,
    /// The image that holds each pod after the check (DaemonSet pods must keep running).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pause_image: String,
    /// Name of the DaemonSet and its label (the values ConfigMap is NAME-values); a DNS-1123 label.
    #[arg(long, default_value = "preflight", value_parser = crate::model::parse_dns1123_label)]
    pub name: String,
    /// `run`'s target flags, for the run on each node. -f/--values files are read here,
    /// shipped in a ConfigMap and passed as `-f /etc/preflight/values/<name>`; --chart is a
    /// path on the nodes, under /host (the image holds no chart).
    #[command(flatten)]
    pub target: TargetFlags,
    /// Target flag for the run on each node: treat these checks as passed (ids, globs or `all`,
    /// comma-separated, repeatable; as `run --ignore`).
    #[arg(long = "ignore", value_name = "ID,GLOB,all", value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Skip the attach canaries on the nodes.
    #[arg(long)]
    pub no_canaries: bool,
    /// Further `preflight run` flags for the nodes, after `--` (parsed here as `run` parses
    /// them; a path in them is a path in the pod, so -f/--chart must be under /host).
    #[arg(last = true, value_name = "RUN_ARGS")]
    pub run_args: Vec<String>,
}

impl RunArgs {
    pub fn target_spec(&self) -> crate::cilium::TargetSpec {
        self.target.spec()
    }
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier report (`run --format json`).
    pub old: PathBuf,
    /// The later report.
    pub new: PathBuf,
    /// Output format (--format is the same flag).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: ProbeFormat,
    /// Print the changes as JSON: the same as `-o json`.
    #[arg(long)]
    pub json: bool,
    /// Write the changes to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe every map type and helper too, not just Cilium's (program types are always all).
    #[arg(long)]
    pub all: bool,
    /// Output format (--format is the same flag).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: ProbeFormat,
    /// Write the result to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// The probe and diff have no checks, so the report formats built on them (junit, markdown) do
/// not apply; their own enum makes clap refuse them (exit 2) instead of printing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    /// One line per item, grouped by kind.
    Text,
    /// JSON (the probe's has its own `schema_version`, see docs/probe.md).
    Json,
}

impl ProbeArgs {
    pub fn scope(&self) -> Scope {
        if self.all {
            Scope::All
        } else {
            Scope::Overview
        }
    }
}

#[derive(Debug, Args)]
#[command(mut_arg("root", |a| a
    .requires("as_node")
    .help("The node's root filesystem for --as-node (a Job's /host, a fixture tree)")))]
pub struct CompileArgs {
    /// Where the datapath sources come from (cmd/tree.rs).
    #[command(flatten)]
    pub tree: tree::TreeArgs,
    /// A state dir shaped like /var/run/cilium/state, used as is (replay a node). Default: a
    /// scratch dir with headers generated for the target.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Predict this node's state dir instead: leave node_config.h out (or use the node's
    /// leftover) when datapath init would fail here (flannel.1 on the tunnel port, bpffs, rp_filter).
    #[arg(long, conflicts_with = "state_dir")]
    pub as_node: bool,
    #[command(flatten)]
    pub root: RootArg,
    /// Target Cilium version (selects flags, include layout and the clang to match); default:
    /// the newest release preflight knows.
    #[arg(long, value_name = "VERSION", value_parser = crate::cilium::CiliumVersion::parse)]
    pub cilium_version: Option<crate::cilium::CiliumVersion>,
    /// Helm values file(s), applied in order (tunnel protocol and port, monitor aggregation,
    /// which programs the target needs).
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Helm --set expressions, applied after the files.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Copy the state dir used (generated headers) here for inspection and later --state-dir.
    #[arg(long, value_name = "DIR")]
    pub emit_state: Option<PathBuf>,
    /// Do not load the objects into the kernel.
    #[arg(long)]
    pub no_verify: bool,
    /// Compile everything again instead of reusing objects from the cache
    /// ($PREFLIGHT_CACHE_DIR, $XDG_CACHE_HOME/preflight/objects, or /var/cache/preflight/objects
    /// as root).
    #[arg(long)]
    pub no_cache: bool,
    /// Parallel clang invocations (default: the number of cores).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Print benchmark figures on stderr (parallel vs sequential, overhead, peak RSS).
    #[arg(long)]
    pub bench: bool,
    /// Print only the diagnostics figures on stderr: text parse vs libclang parse per program
    /// that failed or warned (use with a failing scenario, e.g. --as-node --root
    /// fixtures/compile/missing-node-config/root).
    #[arg(long)]
    pub bench_diagnostics: bool,
    /// Which libclang reads the diagnostics of failed or warning compiles: auto (the one with
    /// the compiling clang's major), off (parse clang's text output), or a library file.
    #[arg(
        long,
        env = "PREFLIGHT_LIBCLANG",
        default_value = "auto",
        value_name = "auto|off|PATH"
    )]
    pub libclang: crate::compile::libclang::Mode,
    /// Output format (--format is the same flag).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub format: DataFormat,
    /// Write the result to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// The formats of the commands whose result is not a node report (`aggregate`, `compile`):
/// JUnit and Markdown are built on a report's checks and are not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFormat {
    /// For people.
    Text,
    /// JSON with a schema_version.
    Json,
    /// The same JSON on one line.
    JsonLine,
}

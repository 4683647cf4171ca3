//! The `plan`, `install`, `rollback` and `fallback flannel` subcommands.
use std::{
    collections::BTreeMap,
    io::{BufRead, IsTerminal},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::plan::{
    PlanOptions, exec, fallback, gitops,
    journal::Journal,
    lock::Lock,
    node::NodeState,
    runner::{Runner, Tool},
};
use crate::{
    checks,
    cilium::Target,
    cmd::{RootArg, TargetFlags},
    exit,
    facts::{Facts, GatherOptions},
    host::HostRoot,
    verdict,
};

#[derive(Debug, Args)]
pub struct ToolArgs {
    /// helm to run (default: PREFLIGHT_HELM, then PATH).
    #[arg(long, value_name = "PATH")]
    pub helm: Option<PathBuf>,
    /// kubectl to run (default: PREFLIGHT_KUBECTL, then PATH).
    #[arg(long, value_name = "PATH")]
    pub kubectl: Option<PathBuf>,
    /// systemctl to run (default: PREFLIGHT_SYSTEMCTL, then PATH).
    #[arg(long, value_name = "PATH")]
    pub systemctl: Option<PathBuf>,
    /// ip (iproute2) to run (default: PREFLIGHT_IP, then PATH). mount, sysctl, modprobe and
    /// firewall-cmd take PREFLIGHT_MOUNT, PREFLIGHT_SYSCTL, PREFLIGHT_MODPROBE, PREFLIGHT_FIREWALL_CMD.
    #[arg(long, value_name = "PATH")]
    pub ip: Option<PathBuf>,
    /// Seconds any one external command may take before it is killed.
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub command_timeout: u64,
}

impl ToolArgs {
    pub fn runner(&self) -> Runner {
        let mut o = BTreeMap::new();
        for (tool, path) in [
            (Tool::Helm, &self.helm),
            (Tool::Kubectl, &self.kubectl),
            (Tool::Systemctl, &self.systemctl),
            (Tool::Ip, &self.ip),
        ] {
            if let Some(p) = path {
                o.insert(tool, p.clone());
            }
        }
        Runner::new(&o, Duration::from_secs(self.command_timeout))
    }
}

/// Which Helm release the migration installs, upgrades, rolls back or uninstalls, and which
/// kubeconfig context helm and kubectl use: one set of flags for the node migration and for
/// `--cluster` (the one `--kubeconfig` is the command's own: TargetArgs or RollbackArgs).
#[derive(Debug, Args, Clone, Default)]
pub struct ReleaseArgs {
    /// kubeconfig context for helm (`--kube-context`) and kubectl (`--context`) (default: the
    /// kubeconfig's current context).
    #[arg(long, value_name = "NAME", value_parser = crate::model::parse_context_name)]
    pub context: Option<String>,
    /// Namespace of the Cilium Helm release and its DaemonSet (default: kube-system); a
    /// DNS-1123 label.
    #[arg(long, value_name = "NS", value_parser = crate::model::parse_dns1123_label)]
    pub namespace: Option<String>,
    /// Name of the Cilium Helm release (default: cilium); a DNS-1123 label of at most 53
    /// characters, as Helm requires.
    #[arg(long, value_name = "NAME", value_parser = crate::model::parse_release_name)]
    pub release_name: Option<String>,
}

impl ReleaseArgs {
    /// The release's namespace: --namespace, else kube-system.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| PlanOptions::default().namespace)
    }

    /// The release's name: --release-name, else cilium.
    pub fn release(&self) -> String {
        self.release_name
            .clone()
            .unwrap_or_else(|| PlanOptions::default().release)
    }

    /// The plan options with this release, namespace and context.
    pub fn options(&self, opts: PlanOptions) -> PlanOptions {
        PlanOptions {
            release: self.release(),
            namespace: self.namespace(),
            context: self.context.clone(),
            ..opts
        }
    }
}

/// What to install: `run`'s target flags (version, -f, --set, --chart, --need) plus what only
/// an install needs. Without --cilium-version or --chart the chart release is the newest release
/// preflight knows, the default of every command.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub flags: TargetFlags,
    /// Replace kube-proxy: k3s gets disable-kube-proxy, the values kubeProxyReplacement=true
    /// (also implied by kubeProxyReplacement: true in your values).
    #[arg(long)]
    pub kube_proxy_replacement: bool,
    /// API server address the agent uses without kube-proxy (default: your values'
    /// k8sServiceHost, else the k3s `server:` URL).
    #[arg(long, value_name = "HOST")]
    pub k8s_service_host: Option<String>,
    #[arg(long, default_value_t = 6443, value_name = "PORT")]
    pub k8s_service_port: u16,
    /// The kubeconfig helm and kubectl use (default: the node's /etc/rancher/k3s/k3s.yaml under
    /// --root; with --cluster: KUBECONFIG, then ~/.kube/config, then the in-cluster service
    /// account). A file that is not there is refused (exit 2).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds to wait for the Cilium DaemonSet and CoreDNS.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub wait_timeout: u64,
    /// Image of the DNS post-check pod; `none` skips that check.
    #[arg(long, default_value = "busybox:1.36", value_name = "IMAGE")]
    pub dns_check_image: String,
    /// After Cilium is up, delete every pod that is not hostNetwork and has a controller, so
    /// that it is recreated with a Cilium-managed IP (CoreDNS is always restarted). Pods
    /// without a controller are listed, never deleted.
    #[arg(long)]
    pub restart_pods: bool,
}

impl TargetArgs {
    /// The target the flags describe. Values errors name the file and line (exit 2).
    pub(super) fn target(&self) -> anyhow::Result<Target> {
        let target = Target::build(&self.flags.spec())?;
        if let Some(note) = &target.version_note {
            eprintln!("preflight: warning: {note}");
        }
        Ok(target)
    }

    fn options(&self, target: &Target, release: &ReleaseArgs) -> PlanOptions {
        release.options(PlanOptions {
            // Helm installs an exact release: `1.19` is the newest 1.19 preflight knows.
            cilium_version: target.install_version().to_string(),
            kube_proxy_replacement: self.kube_proxy_replacement
                || crate::plan::wants_kube_proxy_replacement(&target.values),
            k8s_service_host: self.k8s_service_host.clone(),
            k8s_service_port: self.k8s_service_port,
            wait_timeout_s: self.wait_timeout,
            dns_check_image: (self.dns_check_image != "none").then(|| self.dns_check_image.clone()),
            user_values: target.values.clone(),
            restart_pods: self.restart_pods,
            // Absolute: helm must find it whatever its working directory. Target::build has
            // loaded it already, so canonicalize fails only on a race; the path as given then.
            chart: self
                .flags
                .chart
                .as_ref()
                .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())),
            ..PlanOptions::default()
        })
    }
}

/// The plan for the target, judged: the checks run on the target with the plan's values, and
/// the verdict's value fixes go into the values file.
struct Judged {
    node: NodeState,
    plan: crate::plan::Plan,
    /// The checks and verdict for the values file as written (value fixes included).
    results: Vec<crate::model::CheckResult>,
    verdict: crate::model::Verdict,
    /// The verdict's value fixes that went into the values file, and what they fix.
    value_fixes: Option<(serde_json::Value, Vec<String>)>,
    /// Cheaper settings the verdict suggests for a capability: printed, not applied.
    advice: Vec<crate::model::Recommendation>,
}

/// `full`: the whole preflight (canaries, the datapath compile), for an install on the live node;
/// else node files and read-only queries only.
fn judge(
    host: &HostRoot,
    runner: &Runner,
    t: &TargetArgs,
    release: &ReleaseArgs,
    full: bool,
) -> anyhow::Result<Judged> {
    let target = t.target()?;
    let mut node = NodeState::read(host, runner)?;
    if let Some(file) = &t.kubeconfig {
        // The operator's own file, not a node path: absolute, so helm and kubectl find it
        // whatever their working directory.
        let path = file
            .canonicalize()
            .ok()
            .filter(|p| p.is_file())
            .with_context(|| format!("--kubeconfig {}: no such file", file.display()))?;
        // An install journaled with this file outside the root is one the operator made.
        if node.installed.is_none() {
            node.installed = crate::plan::node::installed_by_preflight(host, Some(&path));
        }
        node.kubeconfig = Some(path);
    }
    let root = host.root();
    let mut opts = t.options(&target, release);
    let plan = crate::plan::build_install(&node, &opts)?;
    // Judge what will be installed: the user's values with the node's requirements.
    let installed = target.with_patch(plan.values.as_ref().unwrap_or(&serde_json::Value::Null));
    eprintln!(
        "preflight: checking this node for Cilium {} with the planned values ({})…",
        installed.cilium_version,
        if full {
            "kernel probes, attach canaries, a datapath compile: some seconds"
        } else {
            "node files and read-only queries; no canaries, no compile"
        }
    );
    let facts = Facts::gather(&GatherOptions {
        host: HostRoot::new(root),
        canaries: full,
        // The incident this tool exists for is a datapath that does not compile: check it.
        compile: full.then(|| installed.clone()),
        tree: Default::default(),
    });
    let results = checks::run_all(&facts, &installed, &[]);
    let mut v = verdict::decide(&installed, &results);
    verdict::refine(&mut v, &facts, &installed, &results, &[]);
    // Fixes of values the chart or node rejects (a check id) go into the file. Cheaper settings
    // for a capability (kubeProxyReplacement: false instead of true…) would change what the
    // user asked for: they are printed as advice, not applied.
    let (applied, advice): (Vec<_>, Vec<_>) = v
        .recommendations
        .iter()
        .cloned()
        .partition(|r| r.fixes.contains('.'));
    let fix = (!applied.is_empty()).then(|| {
        let mut patch = serde_json::json!({});
        for r in &applied {
            crate::cilium::values::merge(&mut patch, r.patch.clone());
        }
        patch
    });
    let Some(fix) = fix else {
        return Ok(Judged {
            node,
            plan,
            results,
            verdict: v,
            value_fixes: None,
            advice,
        });
    };
    // The value fixes go into the values file; judge that file again (checks are pure).
    opts.values_fix = Some(fix.clone());
    let plan = crate::plan::build_install(&node, &opts)?;
    let installed = target.with_patch(plan.values.as_ref().unwrap_or(&serde_json::Value::Null));
    let results = checks::run_all(&facts, &installed, &[]);
    let fixed = applied.iter().map(|r| r.fixes.clone()).collect();
    Ok(Judged {
        node,
        plan,
        verdict: verdict::decide(&installed, &results),
        results,
        value_fixes: Some((fix, fixed)),
        advice,
    })
}

/// The preflight's verdict, and for each blocking finding the step that fixes it. Returns the
/// findings no step fixes.
fn print_verdict(j: &Judged) -> Vec<String> {
    if let Some((fix, fixed)) = &j.value_fixes {
        let step = j.plan.steps.iter().position(|s| s.id == "helm.values");
        crate::outln!(
            "\nValue fixes from the preflight, written into the values file{}: {} (they fix {})",
            step.map(|i| format!(" (step {})", i + 1))
                .unwrap_or_default(),
            serde_json::to_string(fix).unwrap_or_default(),
            fixed.join(", ")
        );
    }
    crate::outln!(
        "\nPreflight of the values file as written: {}",
        j.verdict.summary
    );
    for r in &j.advice {
        crate::outln!(
            "  suggestion, not applied (it changes what you asked for): {} — {}; to take it: -f with {}",
            r.fixes,
            r.why,
            serde_json::to_string(&r.patch).unwrap_or_default()
        );
    }
    let mut open = Vec::new();
    for r in j.results.iter().filter(|r| r.blocks()) {
        match j.plan.steps.iter().position(|s| s.fixes.contains(&r.id)) {
            Some(i) => crate::outln!(
                "  fixed by step {} ({}): {}: {}",
                i + 1,
                j.plan.steps[i].id,
                r.id,
                r.detail
            ),
            None => {
                crate::outln!("  blocking: {}: {}", r.id, r.detail);
                open.push(r.id.clone());
            }
        }
    }
    open
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub root: RootArg,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub tools: ToolArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Instead of a Helm step: write cilium-values.yaml and cilium-application.yaml (an Argo CD
    /// Application) into DIR. With --cluster: every stage's manifests for an Argo CD
    /// app-of-apps (stage-1-install, stage-2-node-config, stage-3-final) and runbook.txt.
    #[arg(long, value_name = "DIR")]
    pub emit_gitops: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: super::cluster::ClusterPlanArgs,
    #[command(flatten)]
    pub access: super::cluster::ClusterAccessArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub root: RootArg,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub tools: ToolArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Install even when the preflight says no-go.
    #[arg(long)]
    pub force: bool,
    /// Only this stage of a whole-cluster migration, on this node (prepare, cilium-cni,
    /// flannel-off), as `install --cluster` starts it on each node: no preflight, no Helm.
    #[arg(long, value_name = "STAGE", value_parser = crate::plan::stages::STAGES)]
    pub migration_stage: Option<String>,
    #[command(flatten)]
    pub cluster: super::cluster::ClusterPlanArgs,
    #[command(flatten)]
    pub access: super::cluster::ClusterAccessArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub root: RootArg,
    #[command(flatten)]
    pub tools: ToolArgs,
    /// Undo what the journal recorded: its release, namespace and context. Given here, they
    /// must match the journal's (a mismatch is refused, exit 2); with --cluster, --context is
    /// the API server's context.
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Undo only this stage of a whole-cluster migration on this node.
    #[arg(long, value_name = "STAGE", value_parser = crate::plan::stages::STAGES)]
    pub migration_stage: Option<String>,
    /// Undo a whole-cluster migration from its cluster journal (in --state-dir), newest step
    /// first: cluster steps through the API, node stages with `rollback --migration-stage` on
    /// each node.
    #[arg(long = "cluster", conflicts_with = "migration_stage")]
    pub cluster: bool,
    /// With --cluster: the kubeconfig for the API server (default: KUBECONFIG, then
    /// ~/.kube/config, then the in-cluster service account). A node's rollback uses what its
    /// journal recorded; give the --kubeconfig you gave install when it is outside --root (the
    /// journal is trusted with no other file outside the root).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub access: super::cluster::ClusterAccessArgs,
}

#[derive(Debug, Subcommand)]
pub enum FallbackTo {
    /// Roll back Cilium (if installed by preflight), give the node back to flannel, harden it.
    #[command(
        after_help = "Examples:\n  preflight fallback flannel\n  preflight fallback flannel --yes"
    )]
    Flannel(FallbackArgs),
}

#[derive(Debug, Args)]
pub struct FallbackArgs {
    #[command(flatten)]
    pub root: RootArg,
    #[command(flatten)]
    pub tools: ToolArgs,
    /// The Cilium release to uninstall when one is there (default: cilium in kube-system).
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The node's root as an absolute path (it ends up in command lines: helm --values,
/// --kubeconfig), opened once: every access of the command goes through this directory fd.
pub(super) fn node_root(arg: &RootArg) -> anyhow::Result<HostRoot> {
    let given = arg.host(false)?;
    let path = given
        .root()
        .canonicalize()
        .with_context(|| format!("--root {}", arg.path.display()))?;
    Ok(HostRoot::open(path)?)
}

/// Print the fault-point count when the test hooks are on, so tests know the matrix size.
pub(super) fn report_fault_points() {
    if std::env::var_os("PREFLIGHT_FAULT_AT").is_some()
        || std::env::var_os("PREFLIGHT_KILL_AT").is_some()
    {
        eprintln!(
            "preflight: test hook: {} fault points passed",
            crate::plan::fault::passed()
        );
    }
}

pub fn plan(args: &PlanArgs) -> anyhow::Result<u8> {
    if !args.cluster.reports.is_empty() {
        return super::cluster::plan(
            &args.cluster,
            &args.access,
            &args.release,
            &args.target,
            args.emit_gitops.as_deref(),
        );
    }
    let host = node_root(&args.root)?;
    let runner = args.tools.runner();
    let j = judge(&host, &runner, &args.target, &args.release, false)?;
    let mut plan = j.plan.clone();
    if let Some(dir) = &args.emit_gitops {
        let values = plan.values.clone().context("plan has no values")?;
        // A directory the operator names for the output, not a node path: written as given.
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let version = plan
            .steps
            .iter()
            .find_map(|s| match &s.action {
                crate::plan::Action::Helm { version, .. } => Some(version.clone()),
                _ => None,
            })
            .unwrap_or_else(|| {
                crate::cilium::releases::BUILTIN
                    .default_version()
                    .to_string()
            });
        let app = gitops::application(
            &version,
            &args.release.release(),
            &args.release.namespace(),
            &values,
        );
        let values_path = dir.join("cilium-values.yaml");
        let app_path = dir.join("cilium-application.yaml");
        std::fs::write(&values_path, gitops::values_yaml(&values))
            .with_context(|| format!("writing {}", values_path.display()))?;
        std::fs::write(&app_path, serde_norway::to_string(&app)?)
            .with_context(|| format!("writing {}", app_path.display()))?;
        plan.steps.retain(|s| !s.id.starts_with("helm."));
        plan.notes.push(format!(
            "GitOps: commit {} (Argo CD Application, argoproj.io/v1alpha1) and {}; sync it after the \
             node steps above instead of running helm",
            app_path.display(),
            values_path.display()
        ));
    }
    crate::out!("{}", crate::plan::render(&plan, &runner));
    print_verdict(&Judged { plan, ..j });
    Ok(exit::GO)
}

/// Before any change: every tool the plan runs must be there, and helm and kubectl must answer
/// (`kubectl version` also reaches the API server). Err lists every problem: exit 2, nothing
/// changed.
pub(super) fn check_tools(
    runner: &Runner,
    plan: &crate::plan::Plan,
    node: &NodeState,
    context: Option<&str>,
) -> anyhow::Result<()> {
    let tools = crate::plan::tools_needed(plan);
    let mut problems: Vec<String> = tools
        .iter()
        .filter_map(|t| runner.unavailable(*t))
        .collect();
    if problems.is_empty() {
        for (tool, what) in [(Tool::Helm, "version"), (Tool::Kubectl, "version")] {
            if !tools.contains(&tool) {
                continue;
            }
            let mut argv = if tool == Tool::Kubectl {
                crate::plan::kube_args(node, context, tool)
            } else {
                Vec::new()
            };
            argv.push(what.into());
            match runner.run(tool, &argv) {
                Ok(o) if o.success() => {}
                Ok(o) => problems.push(format!(
                    "{} {}: {}",
                    runner.display(tool, &argv),
                    o.describe(),
                    o.stderr.trim()
                )),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!(
        "the plan needs tools that are missing or do not answer; nothing was changed:\n  {}",
        problems.join("\n  ")
    )
}

pub(super) fn confirm(yes: bool, what: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: stdin is not a terminal, so nobody can confirm: pass --yes");
    }
    crate::out!("{what}: proceed? [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn install(args: &InstallArgs) -> anyhow::Result<u8> {
    if let Some(stage) = &args.migration_stage {
        return super::cluster::install_stage(args, stage);
    }
    if !args.cluster.reports.is_empty() {
        return super::cluster::install(args);
    }
    let host = node_root(&args.root)?;
    let runner = args.tools.runner();
    // Before anything is read: the plan must not be made from a node another run is changing.
    let lock = Lock::acquire(&host, "install")?;
    // The preflight: refuse on no-go, except for what the plan itself fixes.
    let j = judge(&host, &runner, &args.target, &args.release, host.is_live())?;
    let (node, plan) = (&j.node, &j.plan);
    crate::out!("{}", crate::plan::render(plan, &runner));
    let blocking = print_verdict(&j);
    if blocking.is_empty() {
        if !j.verdict.go {
            crate::outln!("Every blocking finding is fixed by a step of the plan: proceeding.");
        }
    } else if args.force {
        eprintln!(
            "preflight: WARNING: --force: installing despite {} blocking findings the plan does not fix",
            blocking.len()
        );
    } else {
        crate::outln!(
            "Refusing to install: the plan does not fix {} (see `blocking:` above). --force overrides.",
            blocking.join(", ")
        );
        return Ok(exit::NO_GO);
    }
    check_tools(&runner, plan, node, args.release.context.as_deref())?;
    if !confirm(args.yes, "Install Cilium with the plan above")? {
        crate::outln!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }

    // The operator's own --kubeconfig (absolute): the journal may name it outside the root.
    let trusted = args
        .target
        .kubeconfig
        .as_ref()
        .and(node.kubeconfig.as_deref());
    let journal = Journal::begin(&host, "install", &lock.created, trusted)?;
    crate::outln!(
        "\nExecuting (journal: {})",
        host.display(crate::plan::journal::JOURNAL_DIR)
    );
    let result = exec::run_to_completion(
        &host,
        &runner,
        journal,
        plan,
        Box::new(|l| crate::outln!("{l}")),
    );
    match result {
        Ok(()) => {
            report_fault_points();
            crate::outln!(
                "\n{} done. `preflight rollback` undoes everything.",
                plan.title
            );
            Ok(exit::GO)
        }
        Err(failure) => {
            crate::outln!(
                "\nINSTALL FAILED at step {} ({}): {:#}",
                failure.index + 1,
                failure.step,
                failure.error
            );
            let evidence = collect_evidence(&runner, node, &args.release, plan, failure.index);
            if !evidence.is_empty() {
                crate::outln!("Evidence:");
                for e in &evidence {
                    crate::outln!("  {e}");
                }
            }
            crate::outln!("\nRolling back automatically…");
            let code = print_rollback(exec::rollback(&host, &runner, trusted)?);
            report_fault_points();
            Ok(if code == exit::GO { exit::NO_GO } else { code })
        }
    }
}

/// After a failure past the Helm step: the agent's log lines that explain it.
fn collect_evidence(
    runner: &Runner,
    node: &NodeState,
    release: &ReleaseArgs,
    plan: &crate::plan::Plan,
    failed: usize,
) -> Vec<String> {
    let helm_ran = plan.steps[..failed].iter().any(|s| s.id == "helm.install");
    if !helm_ran {
        return Vec::new();
    }
    let mut args: Vec<String> =
        crate::plan::kube_args(node, release.context.as_deref(), Tool::Kubectl);
    args.extend(["-n".to_string(), release.namespace()]);
    args.extend(["logs", "ds/cilium", "-c", "cilium-agent", "--tail=500"].map(String::from));
    let Ok(out) = runner.run(Tool::Kubectl, &args) else {
        return vec!["could not fetch the agent log (kubectl failed to run)".into()];
    };
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .filter(|l| {
            [
                "macro redefined",
                "Failed to compile",
                "level=error",
                "level=fatal",
                "address already in use",
            ]
            .iter()
            .any(|p| l.contains(p))
        })
        .take(20)
        .map(|l| format!("agent log: {}", l.trim()))
        .collect();
    if lines.iter().any(|l| l.contains("macro redefined")) {
        lines.push(
            "diagnosis: the agent compiled endpoints against the dummy node_config.h (its own was \
             never written or is stale: docs/compile.md): look for the earlier datapath init error above, \
             often flannel.1 holding UDP 8472"
                .into(),
        );
    }
    lines
}

/// The lines every rollback prints: what it undid, what it left as is, what it kept aside
/// (`warn`: the kept files also on stderr), and what failed.
pub(super) fn print_undone(r: &exec::RollbackReport, warn: bool) {
    for u in &r.undone {
        crate::outln!("  undone: {u}");
    }
    for n in &r.notes {
        crate::outln!("  left as is: {n}");
    }
    for k in &r.kept {
        crate::outln!("  WARNING: {k}");
        if warn {
            eprintln!("preflight: WARNING: {k}");
        }
    }
    for f in &r.failed {
        crate::outln!("  FAILED: {f}");
    }
}

pub(super) fn print_rollback(r: exec::RollbackReport) -> u8 {
    if r.nothing_to_do {
        crate::outln!("Nothing to roll back (no journal).");
        return exit::GO;
    }
    print_undone(&r, true);
    if r.failed.is_empty() {
        if r.kept.is_empty() {
            crate::outln!("Rollback complete: the node is as it was before.");
        } else {
            crate::outln!(
                "Rollback complete: the node is as it was before, plus the {} edited file(s) kept \
                 aside above (compare them with the restored originals, then delete them).",
                r.kept.len()
            );
        }
        exit::GO
    } else {
        crate::outln!(
            "Rollback incomplete: fix the above and run `preflight rollback` again (the journal is kept)."
        );
        exit::ERROR
    }
}

pub fn rollback(args: &RollbackArgs) -> anyhow::Result<u8> {
    if args.cluster {
        return super::cluster::rollback(args);
    }
    let host = node_root(&args.root)?;
    let runner = args.tools.runner();
    let _lock = Lock::acquire(&host, "rollback")?;
    let trusted = args
        .kubeconfig
        .as_ref()
        .map(|file| {
            file.canonicalize()
                .ok()
                .filter(|p| p.is_file())
                .with_context(|| format!("--kubeconfig {}: no such file", file.display()))
        })
        .transpose()?;
    let trusted = trusted.as_deref();
    if let Some(journal) = Journal::load_trusting(&host, trusted)? {
        same_release_as_journal(&args.release, &journal)?;
    }
    let code = match &args.migration_stage {
        Some(stage) => super::cluster::print_stage_rollback(
            exec::rollback_stage(&host, &runner, stage)?,
            stage,
            &host,
        ),
        None => print_rollback(exec::rollback(&host, &runner, trusted)?),
    };
    report_fault_points();
    Ok(code)
}

/// `rollback --namespace/--release-name/--context`: the journal decides what is undone; flags
/// that name another release than the one it recorded are refused (exit 2) rather than
/// silently ignored.
fn same_release_as_journal(given: &ReleaseArgs, journal: &Journal) -> anyhow::Result<()> {
    use crate::plan::journal::Undo;
    for e in &journal.file.entries {
        let (release, namespace, extra) = match &e.undo {
            Undo::Helm {
                release,
                namespace,
                extra_args,
                ..
            }
            | Undo::HelmUninstalled {
                release,
                namespace,
                extra_args,
                ..
            } => (release, namespace, extra_args),
            _ => continue,
        };
        let context = extra
            .windows(2)
            .find(|w| w[0] == "--kube-context")
            .map(|w| w[1].as_str());
        let mismatch = [
            (
                "--release-name",
                given.release_name.as_deref(),
                Some(release.as_str()),
            ),
            (
                "--namespace",
                given.namespace.as_deref(),
                Some(namespace.as_str()),
            ),
            ("--context", given.context.as_deref(), context),
        ]
        .into_iter()
        .find(|(_, g, j)| g.is_some() && g != j);
        if let Some((flag, g, j)) = mismatch {
            bail!(
                "{flag} {}: the journal ({}) recorded the release {namespace}/{release}{}; \
                 rollback undoes what the journal recorded: drop {flag} or give the journal's",
                g.unwrap_or_default(),
                crate::plan::journal::JOURNAL_FILE,
                j.filter(|_| flag == "--context")
                    .map(|c| format!(" in context {c}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub fn fallback(to: &FallbackTo) -> anyhow::Result<u8> {
    let FallbackTo::Flannel(args) = to;
    let host = node_root(&args.root)?;
    let root = host.root().to_path_buf();
    let runner = args.tools.runner();
    let lock = Lock::acquire(&host, "fallback")?;
    if let Some(j) = Journal::load(&host)? {
        if j.file.runs.iter().any(|r| r == "fallback-flannel") {
            crate::outln!(
                "A flannel fallback is already journaled; running it again changes only what drifted."
            );
        } else {
            crate::outln!(
                "Rolling back the Cilium install first (restores conflists, removes the drop-in, restarts k3s):"
            );
            let code = print_rollback(exec::rollback(&host, &runner, None)?);
            if code != exit::GO {
                return Ok(code);
            }
        }
    }
    let node = NodeState::read(&host, &runner)?;
    // Our flannel drop-in wins over config.yaml and drop-ins that sort before it; one that
    // sorts after it would keep flannel off: say exactly what to change instead.
    if let Some(k3s) = &node.k3s
        && k3s.flannel_backend.as_deref() == Some("none")
        && let Some(from) = &k3s.flannel_backend_from
        && Path::new(from).parent()
            == Some(&root.join(crate::plan::node::K3S_CONFIG_D.trim_start_matches('/')))
        && Path::new(from)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            > Path::new(crate::plan::node::FLANNEL_DROP_IN)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
    {
        crate::outln!(
            "Cannot turn flannel back on: {from} sets flannel-backend: none and sorts after \
             preflight's drop-in {}, so it would win. Remove that line (or set \
             flannel-backend: vxlan there), then run `preflight fallback flannel` again; nothing \
             was changed.",
            crate::plan::node::FLANNEL_DROP_IN
        );
        return Ok(exit::NO_GO);
    }
    let opts = args.release.options(PlanOptions::default());
    let plan = fallback::build(&node, runner.path(Tool::Helm).is_ok(), &opts);
    crate::out!("{}", crate::plan::render(&plan, &runner));
    check_tools(&runner, &plan, &node, opts.context.as_deref())?;
    if !confirm(args.yes, "Apply the flannel hardening above")? {
        crate::outln!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }
    let journal = Journal::begin(&host, "fallback-flannel", &lock.created, None)?;
    let result = exec::run_to_completion(
        &host,
        &runner,
        journal,
        &plan,
        Box::new(|l| crate::outln!("{l}")),
    );
    match result {
        Ok(()) => {
            report_fault_points();
            crate::outln!("\nflannel fallback applied. `preflight rollback` undoes the hardening.");
            Ok(exit::GO)
        }
        Err(failure) => {
            crate::outln!(
                "\nFALLBACK FAILED at step {} ({}): {:#}\nRolling back…",
                failure.index + 1,
                failure.step,
                failure.error
            );
            let code = print_rollback(exec::rollback(&host, &runner, None)?);
            report_fault_points();
            Ok(if code == exit::GO { exit::NO_GO } else { code })
        }
    }
}

/// The steps `preflight plan` would carry out on this node for `target`, each with the check
/// ids it fixes: what `run` needs to tell GO after plan from NO-GO. Read-only (node files, and
/// `ip` for flannel's links as `plan` queries them). Empty when the node is not one preflight
/// plans migrations for (no k3s) or its plan cannot be built; the reason is logged (-v).
pub fn plan_fixes(host: &HostRoot, target: &Target) -> Vec<crate::model::PlanFix> {
    let runner = ToolArgs {
        helm: None,
        kubectl: None,
        systemctl: None,
        ip: None,
        command_timeout: 10,
    }
    .runner();
    let opts = PlanOptions {
        cilium_version: target.install_version().to_string(),
        kube_proxy_replacement: crate::plan::wants_kube_proxy_replacement(&target.values),
        user_values: target.values.clone(),
        ..PlanOptions::default()
    };
    let plan =
        NodeState::read(host, &runner).and_then(|node| crate::plan::build_install(&node, &opts));
    match plan {
        Ok(plan) => plan
            .steps
            .into_iter()
            .map(|s| crate::model::PlanFix {
                step: s.id,
                title: s.title,
                fixes: s.fixes,
            })
            .collect(),
        Err(e) => {
            tracing::info!("no plan for this node, so no GO after plan: {e:#}");
            Vec::new()
        }
    }
}

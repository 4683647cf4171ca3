//! The `plan`, `install`, `rollback` and `fallback flannel` subcommands.
use std::{
    collections::BTreeMap,
    io::{BufRead, IsTerminal, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{
    PlanOptions, exec, fallback, gitops,
    journal::Journal,
    node::NodeState,
    runner::{Runner, Tool},
};
use crate::{
    checks, exit,
    facts::{Facts, GatherOptions},
    target::Target,
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

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Cilium version (chart version) to install.
    #[arg(long, default_value = super::DEFAULT_CHART_VERSION)]
    pub cilium_version: String,
    /// Replace kube-proxy: k3s gets disable-kube-proxy, the values kubeProxyReplacement=true.
    #[arg(long)]
    pub kube_proxy_replacement: bool,
    /// API server address the agent uses without kube-proxy (default: k3s `server:` URL).
    #[arg(long, value_name = "HOST")]
    pub k8s_service_host: Option<String>,
    #[arg(long, default_value_t = 6443, value_name = "PORT")]
    pub k8s_service_port: u16,
    /// Seconds to wait for the Cilium DaemonSet and CoreDNS.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub wait_timeout: u64,
    /// Image of the DNS post-check pod; `none` skips that check.
    #[arg(long, default_value = "busybox:1.36", value_name = "IMAGE")]
    pub dns_check_image: String,
}

impl TargetArgs {
    fn options(&self) -> PlanOptions {
        PlanOptions {
            cilium_version: self.cilium_version.clone(),
            kube_proxy_replacement: self.kube_proxy_replacement,
            k8s_service_host: self.k8s_service_host.clone(),
            k8s_service_port: self.k8s_service_port,
            wait_timeout_s: self.wait_timeout,
            dns_check_image: (self.dns_check_image != "none").then(|| self.dns_check_image.clone()),
            ..PlanOptions::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The node's root filesystem (a fixture tree in tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub tools: ToolArgs,
    /// Instead of a Helm step: write values.yaml and an Argo CD Application into DIR.
    #[arg(long, value_name = "DIR")]
    pub emit_gitops: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub tools: ToolArgs,
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Install even when the preflight says no-go.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub tools: ToolArgs,
}

#[derive(Debug, Subcommand)]
pub enum FallbackTo {
    /// Roll back Cilium (if installed by preflight), give the node back to flannel, harden it.
    Flannel(FallbackArgs),
}

#[derive(Debug, Args)]
pub struct FallbackArgs {
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub tools: ToolArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The root as an absolute path: it ends up in command lines (helm --values, --kubeconfig).
fn check_root(root: &Path) -> anyhow::Result<PathBuf> {
    if !root.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    root.canonicalize()
        .with_context(|| format!("--root {}", root.display()))
}

/// Print the fault-point count when the test hooks are on, so tests know the matrix size.
fn report_fault_points() {
    if std::env::var_os("PREFLIGHT_FAULT_AT").is_some()
        || std::env::var_os("PREFLIGHT_KILL_AT").is_some()
    {
        eprintln!(
            "preflight: test hook: {} fault points passed",
            super::fault::passed()
        );
    }
}

pub fn plan(args: &PlanArgs) -> anyhow::Result<u8> {
    let root = check_root(&args.root)?;
    let runner = args.tools.runner();
    let node = NodeState::read(&root, &runner)?;
    let mut plan = super::build_install(&node, &args.target.options())?;
    if let Some(dir) = &args.emit_gitops {
        let values = plan.values.clone().context("plan has no values")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let app = gitops::application(
            &args.target.cilium_version,
            "cilium",
            "kube-system",
            &values,
        );
        let values_path = dir.join("cilium-values.yaml");
        let app_path = dir.join("cilium-application.yaml");
        std::fs::write(&values_path, values.to_yaml())
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
    print!("{}", super::render(&plan, &runner));
    Ok(exit::GO)
}

fn confirm(yes: bool, what: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("{what}: stdin is not a terminal, so nobody can confirm: pass --yes");
    }
    print!("{what}: proceed? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

pub fn install(args: &InstallArgs) -> anyhow::Result<u8> {
    let root = check_root(&args.root)?;
    let runner = args.tools.runner();
    let node = NodeState::read(&root, &runner)?;
    let plan = super::build_install(&node, &args.target.options())?;
    print!("{}", super::render(&plan, &runner));

    // The preflight: refuse on no-go, except for what the plan itself fixes.
    let live = root == Path::new("/");
    let mut target = Target::chart_defaults(&args.target.cilium_version);
    if args.target.kube_proxy_replacement {
        target
            .capabilities
            .insert(crate::target::Capability::KubeProxyReplacement);
    }
    let facts = Facts::gather(&GatherOptions {
        root: root.clone(),
        canaries: live,
        // The incident this tool exists for is a datapath that does not compile: check it.
        compile: live.then(|| target.clone()),
        host_kernel: false,
    });
    let results = checks::run_all(&facts, &target, &[]);
    let v = verdict::decide(&target, &results);
    let fixed = super::fixed_check_ids(&plan);
    let blocking: Vec<_> = results
        .iter()
        .filter(|r| r.blocks() && !fixed.contains(&r.id))
        .map(|r| format!("{}: {}", r.id, r.detail))
        .collect();
    println!("\nPreflight: {}", v.summary);
    if !blocking.is_empty() {
        for b in &blocking {
            println!("  blocking: {b}");
        }
        if !args.force {
            println!(
                "Refusing to install on a no-go node (the plan does not fix these). --force overrides."
            );
            return Ok(exit::NO_GO);
        }
        eprintln!(
            "preflight: WARNING: --force: installing despite {} blocking findings",
            blocking.len()
        );
    }
    if !confirm(args.yes, "Install Cilium with the plan above")? {
        println!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }

    let journal = Journal::begin(&root, "install")?;
    let mut exec = exec::Executor {
        root: &root,
        runner: &runner,
        journal,
        log: Box::new(|l| println!("{l}")),
    };
    println!(
        "\nExecuting (journal: {})",
        super::journal_dir(&root).display()
    );
    let result = exec.run(&plan).and_then(|()| {
        exec.journal.complete().map_err(|error| exec::StepFailure {
            index: plan.steps.len() - 1,
            step: "journal".into(),
            error,
        })
    });
    match result {
        Ok(()) => {
            report_fault_points();
            println!(
                "\nCilium {} installed. `preflight rollback` undoes everything.",
                args.target.cilium_version
            );
            Ok(exit::GO)
        }
        Err(failure) => {
            drop(exec);
            println!(
                "\nINSTALL FAILED at step {} ({}): {:#}",
                failure.index + 1,
                failure.step,
                failure.error
            );
            let evidence = collect_evidence(&runner, &node, &plan, failure.index);
            if !evidence.is_empty() {
                println!("Evidence:");
                for e in &evidence {
                    println!("  {e}");
                }
            }
            println!("\nRolling back automatically…");
            let code = print_rollback(exec::rollback(&root, &runner)?);
            report_fault_points();
            Ok(if code == exit::GO { exit::NO_GO } else { code })
        }
    }
}

/// After a failure past the Helm step: the agent's log lines that explain it.
fn collect_evidence(
    runner: &Runner,
    node: &NodeState,
    plan: &super::Plan,
    failed: usize,
) -> Vec<String> {
    let helm_ran = plan.steps[..failed].iter().any(|s| s.id == "helm.install");
    if !helm_ran {
        return Vec::new();
    }
    let mut args: Vec<String> = super::kube_args(node);
    args.extend(
        [
            "-n",
            "kube-system",
            "logs",
            "ds/cilium",
            "-c",
            "cilium-agent",
            "--tail=500",
        ]
        .map(String::from),
    );
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
             never written or is stale: FACTS §2): look for the earlier datapath init error above, \
             often flannel.1 holding UDP 8472"
                .into(),
        );
    }
    lines
}

fn print_rollback(r: exec::RollbackReport) -> u8 {
    if r.nothing_to_do {
        println!("Nothing to roll back (no journal).");
        return exit::GO;
    }
    for u in &r.undone {
        println!("  undone: {u}");
    }
    for k in &r.kept {
        println!("  WARNING: {k}");
        eprintln!("preflight: WARNING: {k}");
    }
    if r.failed.is_empty() {
        if r.kept.is_empty() {
            println!("Rollback complete: the node is as it was before.");
        } else {
            println!(
                "Rollback complete: the node is as it was before, plus the {} edited file(s) kept \
                 aside above (compare them with the restored originals, then delete them).",
                r.kept.len()
            );
        }
        exit::GO
    } else {
        for f in &r.failed {
            println!("  FAILED: {f}");
        }
        println!(
            "Rollback incomplete: fix the above and run `preflight rollback` again (the journal is kept)."
        );
        exit::ERROR
    }
}

pub fn rollback(args: &RollbackArgs) -> anyhow::Result<u8> {
    let root = check_root(&args.root)?;
    let runner = args.tools.runner();
    let code = print_rollback(exec::rollback(&root, &runner)?);
    report_fault_points();
    Ok(code)
}

pub fn fallback(to: &FallbackTo) -> anyhow::Result<u8> {
    let FallbackTo::Flannel(args) = to;
    let root = check_root(&args.root)?;
    let runner = args.tools.runner();
    if let Some(j) = Journal::load(&root)? {
        if j.file.runs.iter().any(|r| r == "fallback-flannel") {
            println!(
                "A flannel fallback is already journaled; running it again changes only what drifted."
            );
        } else {
            println!(
                "Rolling back the Cilium install first (restores conflists, removes the drop-in, restarts k3s):"
            );
            let code = print_rollback(exec::rollback(&root, &runner)?);
            if code != exit::GO {
                return Ok(code);
            }
        }
    }
    let node = NodeState::read(&root, &runner)?;
    let plan = fallback::build(&node, runner.path(Tool::Helm).is_ok());
    print!("{}", super::render(&plan, &runner));
    if !confirm(args.yes, "Apply the flannel hardening above")? {
        println!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }
    let journal = Journal::begin(&root, "fallback-flannel")?;
    let mut exec = exec::Executor {
        root: &root,
        runner: &runner,
        journal,
        log: Box::new(|l| println!("{l}")),
    };
    let result = exec.run(&plan).and_then(|()| {
        exec.journal.complete().map_err(|error| exec::StepFailure {
            index: plan.steps.len().saturating_sub(1),
            step: "journal".into(),
            error,
        })
    });
    match result {
        Ok(()) => {
            report_fault_points();
            println!("\nflannel fallback applied. `preflight rollback` undoes the hardening.");
            Ok(exit::GO)
        }
        Err(failure) => {
            drop(exec);
            println!(
                "\nFALLBACK FAILED at step {} ({}): {:#}\nRolling back…",
                failure.index + 1,
                failure.step,
                failure.error
            );
            let code = print_rollback(exec::rollback(&root, &runner)?);
            report_fault_points();
            Ok(if code == exit::GO { exit::NO_GO } else { code })
        }
    }
}

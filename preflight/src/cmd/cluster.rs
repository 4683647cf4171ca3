//! `plan --cluster`, `install --cluster`, `rollback --cluster`: the whole-cluster dual-overlay
//! migration (src/cluster/), and the flags they share.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::plan::ReleaseArgs;
use crate::{
    cluster::{
        self, gitops,
        plan::{ClusterOptions, ClusterPlan},
        runbook::{self, Access},
    },
    exit,
};

/// Which reports a cluster plan reads, and what it may choose.
#[derive(Debug, Args, Default)]
pub struct ClusterPlanArgs {
    /// Plan the whole cluster's dual-overlay migration from these node reports (`aggregate`'s
    /// inputs: files, directories, `-` for stdin, `kubectl logs` of the `job` DaemonSet)
    /// instead of this node's.
    #[arg(long = "cluster", value_name = "REPORTS", num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Cilium's pod CIDR during and after the migration (default: the first 10.N.0.0/16 from
    /// 10.44 on that overlaps nothing the reports show).
    #[arg(long, value_name = "CIDR", requires = "reports")]
    pub pod_cidr: Option<String>,
    /// Cilium's VXLAN port next to flannel's 8472 (default: 8473, or the next one bound on no
    /// node).
    #[arg(long, value_name = "PORT", requires = "reports")]
    pub tunnel_port: Option<u16>,
    /// With --emit-gitops: the Git repository the app-of-apps syncs from.
    #[arg(
        long,
        value_name = "URL",
        requires = "reports",
        default_value = "https://git.example/your/cluster-config.git"
    )]
    pub gitops_repo: String,
}

/// How a cluster run reaches the API server and the nodes.
#[derive(Debug, Args, Default)]
pub struct ClusterAccessArgs {
    /// Where the cluster run keeps its values files and journal.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/preflight/cluster")]
    pub state_dir: PathBuf,
    /// How a node stage is started on a node: a command template, `{node}` replaced by the
    /// node's name, the stage's arguments at `{args}` or at the end (e.g. `ssh root@{node}
    /// preflight`). Default: `preflight` (a node reached otherwise, e.g. the job pod).
    #[arg(long, value_name = "TEMPLATE")]
    pub node_exec: Option<String>,
}

impl ClusterAccessArgs {
    /// `kubeconfig`: the command's one `--kubeconfig` (plan and install share it with the node
    /// migration; default: KUBECONFIG, then ~/.kube/config, then the in-cluster service account);
    /// `release`: its `--context`, also shared with the node migration.
    pub fn access(&self, kubeconfig: Option<PathBuf>, release: &ReleaseArgs) -> Access {
        Access {
            state_dir: self.state_dir.clone(),
            kubeconfig,
            context: release.context.clone(),
            node_exec: self.node_exec.clone(),
        }
    }
}

/// Read the reports and build the checked plan.
pub fn build_plan(
    reports: &ClusterPlanArgs,
    release: &ReleaseArgs,
    target: &super::plan::TargetArgs,
) -> anyhow::Result<ClusterPlan> {
    let t = target.target()?;
    let inputs = cluster::plan::read_inputs(&reports.reports)?;
    Ok(cluster::plan::build(
        inputs,
        ClusterOptions {
            cilium_version: t.install_version().to_string(),
            user_values: t.values.clone(),
            pod_cidr: reports.pod_cidr.clone(),
            tunnel_port: reports.tunnel_port,
            chart: target
                .flags
                .chart
                .as_ref()
                .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone())),
            release: release.release(),
            namespace: release.namespace(),
        },
    ))
}

/// `plan --cluster REPORTS`: preconditions, choices and the runbook; with --emit-gitops the
/// stages as manifests. Exits 0 ready, 1 a precondition fails, 2 undecided or bad input.
pub fn plan(
    reports: &ClusterPlanArgs,
    access: &ClusterAccessArgs,
    release: &ReleaseArgs,
    target: &super::plan::TargetArgs,
    emit_gitops: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    let plan = build_plan(reports, release, target)?;
    let access = access.access(target.kubeconfig.clone(), release);
    let steps = runbook::build(&plan, &access);
    crate::out!("{}", cluster::render::render(&plan, &steps, &access));
    if let Some(dir) = emit_gitops {
        let files = gitops::emit(&plan, &steps, &access, dir, &reports.gitops_repo)
            .with_context(|| format!("--emit-gitops {}", dir.display()))?;
        crate::outln!(
            "\nGitOps: wrote {} file(s) into {}: {}",
            files.len(),
            dir.display(),
            files.join(", ")
        );
    }
    Ok(plan.exit_code())
}

/// `install --migration-stage STAGE`: one stage of the whole-cluster migration on this node,
/// under the node's journal. A failure rolls back this stage only (exit 1); earlier stages stay.
pub fn install_stage(args: &super::plan::InstallArgs, stage: &str) -> anyhow::Result<u8> {
    use crate::plan::{exec, journal::Journal, lock::Lock, node::NodeState};
    let host = super::plan::node_root(&args.root)?;
    let runner = args.tools.runner();
    // Before anything is read, as `install` does: no stage runs while another run changes the node.
    let lock = Lock::acquire(&host, "install")?;
    let target = args.target.target()?;
    let node = NodeState::read(&host, &runner)?;
    let opts = crate::plan::PlanOptions {
        cilium_version: target.install_version().to_string(),
        dns_check_image: None,
        ..crate::plan::PlanOptions::default()
    };
    let plan = crate::plan::stages::build(&node, &opts, stage)?;
    crate::out!("{}", crate::plan::render(&plan, &runner));
    super::plan::check_tools(&runner, &plan, &node, None)?;
    if !super::plan::confirm(args.yes, &format!("Run migration stage {stage}"))? {
        crate::outln!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }
    let journal = Journal::begin(&host, &format!("migration:{stage}"), &lock.created, None)?;
    let result = exec::run_to_completion(
        &host,
        &runner,
        journal,
        &plan,
        Box::new(|l| crate::outln!("{l}")),
    );
    match result {
        Ok(()) => {
            super::plan::report_fault_points();
            crate::outln!(
                "\nMigration stage {stage} done. `preflight rollback --migration-stage {stage}` undoes it."
            );
            Ok(exit::GO)
        }
        Err(failure) => {
            crate::outln!(
                "\nSTAGE {stage} FAILED at step {} ({}): {:#}\nRolling this stage back…",
                failure.index + 1,
                failure.step,
                failure.error
            );
            let code =
                print_stage_rollback(exec::rollback_stage(&host, &runner, stage)?, stage, &host);
            super::plan::report_fault_points();
            Ok(if code == exit::GO { exit::NO_GO } else { code })
        }
    }
}

/// `install --cluster REPORTS`: check the plan, then carry the runbook out under the cluster
/// journal.
pub fn install(args: &super::plan::InstallArgs) -> anyhow::Result<u8> {
    let plan = build_plan(&args.cluster, &args.release, &args.target)?;
    let access = args
        .access
        .access(args.target.kubeconfig.clone(), &args.release);
    let steps = runbook::build(&plan, &access);
    crate::out!("{}", cluster::render::render(&plan, &steps, &access));
    if !plan.go() && !args.force {
        crate::outln!(
            "Refusing to migrate: a precondition does not hold (above). --force overrides."
        );
        return Ok(plan.exit_code());
    }
    if !super::plan::confirm(args.yes, "Migrate the cluster with the runbook above")? {
        crate::outln!("Not confirmed; nothing changed.");
        return Ok(exit::NO_GO);
    }
    cluster::run::install(&plan, &steps, &access, &args.tools.runner(), &|l| {
        crate::outln!("{l}")
    })
}

/// `rollback --cluster`: undo from the cluster journal.
/// The cluster journal decides which release and namespace are undone; `--namespace` or
/// `--release-name` naming others are refused (exit 2) rather than ignored.
pub fn rollback(args: &super::plan::RollbackArgs) -> anyhow::Result<u8> {
    let access = args.access.access(args.kubeconfig.clone(), &args.release);
    if let Some(j) = cluster::journal::ClusterJournal::load(&access.state_dir)? {
        let release = j.file.entries.iter().find_map(|e| match &e.undo {
            cluster::journal::Undo::Helm { release, .. } => Some(release.as_str()),
            _ => None,
        });
        let ns = j.file.namespace.as_str();
        let mismatch = [
            ("--namespace", args.release.namespace.as_deref(), Some(ns)),
            (
                "--release-name",
                args.release.release_name.as_deref(),
                release,
            ),
        ]
        .into_iter()
        .find(|(_, given, journal)| given.is_some() && journal.is_some() && given != journal);
        if let Some((flag, given, _)) = mismatch {
            anyhow::bail!(
                "{flag} {}: the cluster journal ({}) recorded the release {ns}/{}; rollback \
                 --cluster undoes what the journal recorded: drop {flag} or give the journal's",
                given.unwrap_or_default(),
                cluster::journal::ClusterJournal::path_in(&access.state_dir).display(),
                release.unwrap_or("?")
            );
        }
    }
    cluster::run::rollback(&access, &args.tools.runner(), &|l| crate::outln!("{l}"))
}

/// What `rollback --migration-stage` did: that stage undone; the node's other stages stay.
pub fn print_stage_rollback(
    r: crate::plan::exec::RollbackReport,
    stage: &str,
    host: &crate::host::HostRoot,
) -> u8 {
    if r.nothing_to_do {
        crate::outln!("Nothing of stage {stage} to roll back on this node.");
        return exit::GO;
    }
    super::plan::print_undone(&r, false);
    if !r.failed.is_empty() {
        crate::outln!(
            "Stage {stage} not fully rolled back: fix the above and run `preflight rollback --migration-stage {stage}` again (the journal is kept)."
        );
        return exit::ERROR;
    }
    if crate::plan::journal::Journal::load(host)
        .ok()
        .flatten()
        .is_some()
    {
        crate::outln!(
            "Stage {stage} rolled back; the node's other migration stages stay (`preflight rollback` undoes them too)."
        );
    } else {
        crate::outln!("Stage {stage} rolled back: the node is as it was before the migration.");
    }
    exit::GO
}

//! Carry a plan out under the write-ahead journal, and undo it.
use std::path::Path;

use crate::host::HostRoot;

use super::{
    Action, Plan, Step, fault, fsops,
    journal::{EntryState, Journal, Status, Undo},
    runner::{Runner, Tool},
};

/// Why a step failed, for the report.
#[derive(Debug)]
pub struct StepFailure {
    pub index: usize,
    pub step: String,
    pub error: anyhow::Error,
}

pub struct Executor<'a> {
    pub host: &'a HostRoot,
    pub runner: &'a Runner,
    pub journal: Journal,
    /// Progress lines for the operator.
    pub log: Box<dyn FnMut(&str) + 'a>,
}

use super::apply::args;

impl Executor<'_> {
    pub fn run(&mut self, plan: &Plan) -> Result<(), StepFailure> {
        for (index, step) in plan.steps.iter().enumerate() {
            // Said before it starts: a wait or a helm install can take minutes.
            let limit = super::command_parts(&step.action)
                .map(|_| format!(" (up to {} s)", self.runner.timeout().as_secs()))
                .unwrap_or_default();
            (self.log)(&format!(
                "{:>2}/{}. {}{limit} …",
                index + 1,
                plan.steps.len(),
                step.title
            ));
            let r =
                fault::point(&format!("before step {}", step.id)).and_then(|()| self.step(step));
            match r {
                Ok(Some(skip)) => (self.log)(&format!("      already done ({skip})")),
                Ok(None) => (self.log)("      ok"),
                Err(error) => {
                    (self.log)(&format!("      FAILED: {error:#}"));
                    return Err(StepFailure {
                        index,
                        step: step.id.clone(),
                        error,
                    });
                }
            }
        }
        Ok(())
    }

    /// Journal every missing ancestor of `node_path` as created-by-us, then create it.
    pub(in crate::plan) fn ensure_parents(
        &mut self,
        step: &str,
        node_path: &str,
        create: bool,
    ) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut p = Path::new(node_path).parent();
        while let Some(dir) = p {
            if dir == Path::new("/") || self.host.lexists(&dir.display().to_string()) {
                break;
            }
            missing.push(dir.display().to_string());
            p = dir.parent();
        }
        for dir in missing.into_iter().rev() {
            self.journal.intent(
                step,
                Undo::Path {
                    path: dir.clone(),
                    prior: fsops::Prior::Absent,
                    after: None,
                },
            )?;
            if create {
                self.host.create_dir(&dir, 0o755)?;
            }
        }
        Ok(())
    }

    /// Run one step. Ok(Some(reason)) when it found nothing to do.
    fn step(&mut self, step: &Step) -> anyhow::Result<Option<String>> {
        let id = step.id.as_str();
        match &step.action {
            Action::WriteFile {
                path,
                content,
                mode,
            } => super::apply::files::write_file(self, id, path, content, mode),
            Action::MoveAside { path } => super::apply::files::move_aside(self, step, id, path),
            Action::DeleteLink { name } => super::apply::links::delete_link(self, id, name),
            Action::MakeShared => super::apply::mounts::make_shared(self, id),
            Action::EnableUnit { unit } => super::apply::services::enable_unit(self, id, unit),
            Action::DaemonReload => super::apply::services::daemon_reload(self, id),
            Action::Service { unit, verb, openrc } => {
                super::apply::services::service(self, step, id, unit, verb, openrc)
            }
            Action::Guard { paths, links } => super::apply::files::guard(self, id, paths, links),
            Action::CheckCniPaths { expect } => super::apply::k3s::check_cni_paths(self, expect),
            Action::Helm {
                release,
                namespace,
                version,
                args: helm_args,
                values,
            } => super::apply::helm::helm(self, id, release, namespace, version, helm_args, values),
            Action::HelmUninstall {
                release,
                namespace,
                kube_args,
            } => super::apply::helm::helm_uninstall(self, id, release, namespace, kube_args),
            Action::RolloutRestart { args: kargs } => {
                super::apply::kubectl::rollout_restart(self, id, kargs)
            }
            Action::RestartPods {
                list_args,
                kube_args,
            } => super::apply::kubectl::restart_pods(self, id, list_args, kube_args),
            Action::FlannelIptables => super::apply::iptables::flannel_iptables(self, id),
            Action::Kubectl { args: kargs, check } => {
                super::apply::kubectl::kubectl(self, kargs, check)
            }
            Action::Modprobe { module } => super::apply::kernel::modprobe(self, id, module),
            Action::Sysctl { key, value } => super::apply::kernel::sysctl(self, id, key, value),
            Action::Firewall {
                add_args,
                remove_args,
            } => super::apply::firewall::firewall(self, id, add_args, remove_args),
            Action::Advice => Ok(Some("advice only".into())),
        }
    }
}

/// Carry `plan` out under `journal` (already begun) and mark the journal complete: what
/// install, fallback and a migration stage share. Err names the step that failed (the journal
/// itself when completing it failed); the journal keeps what a rollback needs, and the
/// executor is gone when this returns, so the caller can roll back at once.
pub fn run_to_completion<'a>(
    host: &'a HostRoot,
    runner: &'a Runner,
    journal: Journal,
    plan: &Plan,
    log: Box<dyn FnMut(&str) + 'a>,
) -> Result<(), StepFailure> {
    let mut ex = Executor {
        host,
        runner,
        journal,
        log,
    };
    ex.run(plan).and_then(|()| {
        ex.journal.complete().map_err(|error| StepFailure {
            index: plan.steps.len().saturating_sub(1),
            step: "journal".into(),
            error,
        })
    })
}

/// What a rollback did.
#[derive(Debug, Default)]
pub struct RollbackReport {
    pub undone: Vec<String>,
    /// Files edited since preflight wrote them, kept aside before being restored.
    pub kept: Vec<String>,
    /// Things deliberately left as they are (a module in use, forwarding on a running k3s node).
    pub notes: Vec<String>,
    pub failed: Vec<String>,
    pub nothing_to_do: bool,
}

/// Undo every journaled change, newest first; then reload systemd, restart services, remove
/// the journal. Idempotent, and finishes the job after a crash of install or of itself.
/// `kubeconfig`: the operator's `--kubeconfig` outside the root that the journal may name
/// ([`Journal::load_trusting`]).
pub fn rollback(
    host: &HostRoot,
    runner: &Runner,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<RollbackReport> {
    rollback_entries(host, runner, None, kubeconfig)
}

/// Undo one stage of a whole-cluster migration (`rollback --migration-stage STAGE`): only the
/// entries whose step id starts with `STAGE/`, newest first, with the service restarts and
/// reloads those entries call for. The journal stays while other stages' changes remain.
pub fn rollback_stage(
    host: &HostRoot,
    runner: &Runner,
    stage: &str,
) -> anyhow::Result<RollbackReport> {
    rollback_entries(host, runner, Some(&super::stages::prefix(stage)), None)
}

fn rollback_entries(
    host: &HostRoot,
    runner: &Runner,
    only: Option<&str>,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<RollbackReport> {
    let mut report = RollbackReport::default();
    let Some(mut journal) = Journal::load_trusting(host, kubeconfig)? else {
        super::journal::clean_empty_state_dirs(host, &[])?;
        report.nothing_to_do = true;
        return Ok(report);
    };
    let all = journal.file.entries.clone();
    let entries: Vec<_> = all
        .iter()
        .filter(|e| only.is_none_or(|p| e.step.starts_with(p)))
        .cloned()
        .collect();
    if entries.is_empty() && only.is_some() {
        // The stage never ran here (or its journal was already removed with the rest).
        report.nothing_to_do = true;
        return Ok(report);
    }
    journal.set_status(Status::RollingBack)?;
    for e in entries.iter().rev() {
        if e.state == EntryState::Undone {
            continue;
        }
        match undo(host, runner, &e.undo, &mut report.kept, &mut report.notes) {
            Ok(Some(what)) => {
                report
                    .undone
                    .push(format!("{} ({}): {what}", e.step, e.seq));
                journal.set_state(e.seq, EntryState::Undone)?;
            }
            Ok(None) => journal.set_state(e.seq, EntryState::Undone)?,
            Err(err) => report
                .failed
                .push(format!("{} ({}): {err:#}", e.step, e.seq)),
        }
        fault::point(&format!("after undoing entry {}", e.seq))?;
    }
    // Deferred until every file is back; run on every pass so a crash cannot lose them.
    if entries.iter().any(|e| matches!(e.undo, Undo::DaemonReload))
        && let Err(err) = runner.check(Tool::Systemctl, &args(&["daemon-reload"]))
    {
        report
            .failed
            .push(format!("systemctl daemon-reload: {err:#}"));
    }
    let mut units: Vec<(&str, bool)> = Vec::new();
    for e in &entries {
        if let Undo::Restart { unit, openrc } = &e.undo
            && !units.iter().any(|(u, _)| u == unit)
        {
            units.push((unit, *openrc));
        }
    }
    for (unit, openrc) in units {
        let (tool, argv) = super::service_command(unit, "restart", openrc);
        match runner.check(tool, &argv) {
            Ok(_) => report
                .undone
                .push(format!("restarted {unit} with its restored config")),
            Err(err) => report
                .failed
                .push(format!("{}: {err:#}", runner.display(tool, &argv))),
        }
    }
    // After k3s is back: pods restarted onto Cilium are restarted onto the restored network.
    let mut restarts: Vec<&Vec<String>> = Vec::new();
    for e in &entries {
        if let Undo::RolloutRestart { args: a } = &e.undo
            && !restarts.contains(&a)
        {
            restarts.push(a);
        }
    }
    for a in restarts {
        match runner.check(Tool::Kubectl, a) {
            Ok(_) => report.undone.push(format!(
                "{} (pods get addresses from the restored network)",
                runner.display(Tool::Kubectl, a)
            )),
            Err(err) => report.notes.push(format!(
                "{} failed ({err:#}): run it yourself once the cluster answers",
                runner.display(Tool::Kubectl, a)
            )),
        }
    }
    if report.failed.is_empty() {
        let rest_undone = journal
            .file
            .entries
            .iter()
            .all(|e| e.state == EntryState::Undone);
        if rest_undone {
            journal.remove()?;
        } else {
            // Other stages' changes stay in place, still undoable.
            journal.set_status(Status::Complete)?;
        }
    }
    Ok(report)
}

/// One undo. Ok(Some(description)) when something was changed back.
fn undo(
    host: &HostRoot,
    runner: &Runner,
    u: &Undo,
    kept: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    Ok(match u {
        Undo::Path { path, prior, after } => {
            super::apply::files::undo_path(host, path, prior, after, kept)?
        }
        Undo::Moved { path, backup } => super::apply::files::undo_moved(host, path, backup)?,
        Undo::Link { name, prior } => super::apply::links::undo_link(runner, name, prior)?,
        Undo::MadeShared { path } => super::apply::mounts::undo_made_shared(runner, path)?,
        Undo::Enabled { unit, was_active } => {
            super::apply::services::undo_enabled(runner, unit, was_active)?
        }
        Undo::DaemonReload | Undo::Restart { .. } | Undo::RolloutRestart { .. } | Undo::Nothing => {
            None
        }
        Undo::Helm {
            release,
            namespace,
            prior_revision,
            extra_args,
            ..
        } => super::apply::helm::undo_helm(runner, release, namespace, prior_revision, extra_args)?,
        Undo::HelmUninstalled {
            release,
            namespace,
            chart_version,
            values,
            extra_args,
        } => super::apply::helm::undo_helm_uninstalled(
            host,
            runner,
            release,
            namespace,
            chart_version,
            values,
            extra_args,
        )?,
        Undo::Module { name } => super::apply::kernel::undo_module(host, runner, name, notes)?,
        Undo::Sysctl { key, prior } => {
            super::apply::kernel::undo_sysctl(host, runner, key, prior, notes)?
        }
        Undo::Iptables { snapshot } => {
            super::apply::iptables::undo_iptables(host, runner, snapshot)?
        }
        Undo::Firewall { remove_args } => {
            super::apply::firewall::undo_firewall(runner, remove_args)?
        }
    })
}

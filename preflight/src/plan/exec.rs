//! Carry a plan out under the write-ahead journal, and undo it.
use std::path::Path;

use anyhow::{Context, bail};

use crate::host::HostRoot;

use super::{
    Action, Plan, PostCheck, Step, fault, fsops,
    journal::{EntryState, Journal, LinkSpec, Status, Undo},
    node::{self, LinkState},
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

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

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
    fn ensure_parents(&mut self, step: &str, node_path: &str, create: bool) -> anyhow::Result<()> {
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
            } => {
                let path = node::resolve(self.host, path)?;
                if let Ok(Some(m)) = self.host.lstat(&path)
                    && m.is_file()
                    && m.mode == *mode
                    && fsops::read_file(self.host, &path).is_ok_and(|b| b == content.as_bytes())
                {
                    return Ok(Some(format!("{path} already has this content")));
                }
                self.ensure_parents(id, &path, true)?;
                let seq = self.journal.next_seq();
                let backup = self.journal.backup_path(seq, &file_name(&path))?;
                let prior = fsops::capture(self.host, &path, &backup)?;
                let owner = match &prior {
                    fsops::Prior::File { uid, gid, .. } => Some((*uid, *gid)),
                    _ => None,
                };
                let seq = self.journal.intent(
                    id,
                    Undo::Path {
                        path: path.clone(),
                        prior,
                        after: Some(fsops::sha256_hex(content.as_bytes())),
                    },
                )?;
                fsops::write_atomic(self.host, &path, content.as_bytes(), *mode, owner)?;
                fault::point(&format!("after write of {path}"))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::MoveAside { path } => {
                if let super::StepState::Done(why) = &step.state {
                    return Ok(Some(why.clone()));
                }
                let path = node::resolve(self.host, path)?;
                if !self.host.lexists(&path) {
                    return Ok(Some(format!("{path} is not there")));
                }
                let seq = self.journal.next_seq();
                let backup = if on_bpffs(self.host, &path) {
                    // A pin cannot leave its bpffs: rename it next to itself.
                    Path::new(&path)
                        .with_file_name(format!(".preflight-moved-{}", file_name(&path)))
                        .display()
                        .to_string()
                } else {
                    self.journal.backup_path(seq, &file_name(&path))?
                };
                let seq = self.journal.intent(
                    id,
                    Undo::Moved {
                        path: path.clone(),
                        backup: backup.clone(),
                    },
                )?;
                fsops::move_path(self.host, &path, &backup)?;
                fault::point(&format!("after moving {path}"))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::DeleteLink { name } => match node::link_state(self.runner, name) {
                LinkState::Absent => return Ok(Some(format!("{name} does not exist"))),
                LinkState::Unknown(why) => bail!("could not query link {name}: {why}"),
                LinkState::Present(spec) => {
                    let seq = self.journal.intent(
                        id,
                        Undo::Link {
                            name: name.clone(),
                            prior: Some(spec),
                        },
                    )?;
                    self.runner.check(Tool::Ip, &args(&["link", "del", name]))?;
                    self.journal.set_state(seq, EntryState::Done)?;
                }
            },
            Action::MakeShared => {
                if let node::MountState::Mounted { shared: true, .. } = node::bpffs_state(self.host)
                {
                    return Ok(Some("/sys/fs/bpf is already shared".into()));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::MadeShared {
                        path: node::BPFFS.into(),
                    },
                )?;
                self.runner
                    .check(Tool::Mount, &args(&["--make-shared", node::BPFFS]))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::EnableUnit { unit } => {
                let active = self
                    .runner
                    .run(Tool::Systemctl, &args(&["is-active", "--quiet", unit]))?
                    .success();
                let enabled = self
                    .runner
                    .run(Tool::Systemctl, &args(&["is-enabled", "--quiet", unit]))?
                    .success();
                if active && enabled {
                    return Ok(Some(format!("{unit} is enabled and active")));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::Enabled {
                        unit: unit.clone(),
                        was_active: active,
                    },
                )?;
                self.runner
                    .check(Tool::Systemctl, &args(&["enable", "--now", unit]))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::DaemonReload => {
                let seq = self.journal.intent(id, Undo::DaemonReload)?;
                self.runner
                    .check(Tool::Systemctl, &args(&["daemon-reload"]))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Service { unit, verb, openrc } => {
                if let super::StepState::Done(why) = &step.state {
                    return Ok(Some(why.clone()));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::Restart {
                        unit: unit.clone(),
                        openrc: *openrc,
                    },
                )?;
                let (tool, argv) = super::service_command(unit, verb, *openrc);
                self.runner.check(tool, &argv)?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Guard { paths, links } => {
                for path in paths {
                    let path = node::resolve(self.host, path)?;
                    self.ensure_parents(id, &path, false)?;
                    let seq = self.journal.next_seq();
                    let backup = self.journal.backup_path(seq, &file_name(&path))?;
                    let prior = fsops::capture(self.host, &path, &backup)?;
                    let seq = self.journal.intent(
                        id,
                        Undo::Path {
                            path,
                            prior,
                            after: None,
                        },
                    )?;
                    self.journal.set_state(seq, EntryState::Done)?;
                }
                for name in links {
                    let prior = match node::link_state(self.runner, name) {
                        LinkState::Absent => None,
                        LinkState::Present(spec) => Some(spec),
                        LinkState::Unknown(why) => bail!("could not query link {name}: {why}"),
                    };
                    let seq = self.journal.intent(
                        id,
                        Undo::Link {
                            name: name.clone(),
                            prior,
                        },
                    )?;
                    self.journal.set_state(seq, EntryState::Done)?;
                }
            }
            Action::CheckCniPaths { expect } => {
                let path = self.host.display(node::CONTAINERD_CONFIG);
                let Some(now) = node::read_containerd_cni(self.host, node::CONTAINERD_CONFIG)?
                else {
                    return Ok(Some(format!(
                        "{path} has no CNI section; containerd uses its defaults"
                    )));
                };
                let now_bin = node::versionless(&now.bin_dir);
                if now_bin != expect.bin_dir || now.conf_dir != expect.conf_dir {
                    bail!(
                        "after the restart containerd uses bin_dir {} and conf_dir {} ({}), but the values \
                         were made for {} and {}: re-run `preflight plan` and check config.toml(.tmpl)",
                        now.bin_dir,
                        now.conf_dir,
                        path,
                        expect.bin_dir,
                        expect.conf_dir
                    );
                }
            }
            Action::Helm {
                release,
                namespace,
                version,
                args: helm_args,
                values,
            } => {
                let kube = kube_args_of(helm_args);
                let mut status_args = args(&["status", release, "-n", namespace, "-o", "json"]);
                status_args.extend(kube.clone());
                let status = self.runner.run(Tool::Helm, &status_args)?;
                let values_sha256 = fsops::sha256_hex(&serde_json::to_vec(values)?);
                let prior_revision = if status.success() {
                    let v: serde_json::Value = serde_json::from_str(&status.stdout)
                        .context("reading `helm status -o json`")?;
                    // An earlier install applied exactly this, and nobody has changed the
                    // release since (same revision, still deployed): `helm upgrade` again would
                    // only make a new revision and roll the agents for nothing.
                    let revision = v["version"].as_u64();
                    if v["info"]["status"] == "deployed"
                        && revision.is_some()
                        && self.journal.done().any(|e| match &e.undo {
                            Undo::Helm {
                                release: r,
                                namespace: n,
                                applied: Some(a),
                                ..
                            } => {
                                r == release
                                    && n == namespace
                                    && a.chart_version == *version
                                    && a.args == *helm_args
                                    && a.values_sha256 == values_sha256
                                    && a.revision == revision
                            }
                            _ => false,
                        })
                    {
                        return Ok(Some(format!(
                            "release {namespace}/{release} is at the revision an earlier install \
                             made with Cilium {version} and these values"
                        )));
                    }
                    let deployed = v["info"]["status"] == "deployed"
                        && v["chart"]["metadata"]["version"] == version.as_str();
                    if deployed {
                        let mut get =
                            args(&["get", "values", release, "-n", namespace, "-o", "json"]);
                        get.extend(kube.clone());
                        let got = self.runner.run(Tool::Helm, &get)?;
                        let want = serde_json::to_value(values)?;
                        if got.success()
                            && serde_json::from_str::<serde_json::Value>(&got.stdout).ok()
                                == Some(want)
                        {
                            return Ok(Some(format!(
                                "release {release} {version} is deployed with these values"
                            )));
                        }
                    }
                    v["version"].as_u64()
                } else if status.stderr.contains("not found") {
                    None
                } else {
                    bail!("helm status {release} failed: {}", status.stderr.trim());
                };
                let undo = |applied| Undo::Helm {
                    release: release.clone(),
                    namespace: namespace.clone(),
                    prior_revision,
                    extra_args: kube.clone(),
                    applied,
                };
                let seq = self.journal.intent(id, undo(None))?;
                self.runner.check(Tool::Helm, helm_args)?;
                // The revision this install made, for a re-run to recognise. Unknown when
                // status does not answer: the re-run then runs helm again, which is safe.
                let revision = self
                    .runner
                    .run(Tool::Helm, &status_args)
                    .ok()
                    .filter(|o| o.success())
                    .and_then(|o| serde_json::from_str::<serde_json::Value>(&o.stdout).ok())
                    .and_then(|v| v["version"].as_u64());
                let applied = super::journal::HelmApplied {
                    chart_version: version.clone(),
                    args: helm_args.clone(),
                    values_sha256,
                    revision,
                };
                self.journal.finish(seq, undo(Some(applied)))?;
            }
            Action::HelmUninstall {
                release,
                namespace,
                kube_args,
            } => {
                let mut status_args = args(&["status", release, "-n", namespace, "-o", "json"]);
                status_args.extend(kube_args.iter().cloned());
                let status = self.runner.run(Tool::Helm, &status_args)?;
                if !status.success() {
                    if status.stderr.contains("not found") {
                        return Ok(Some(format!("no Helm release {namespace}/{release}")));
                    }
                    bail!("helm status {release} failed: {}", status.stderr.trim());
                }
                let v: serde_json::Value = serde_json::from_str(&status.stdout)
                    .context("reading `helm status -o json`")?;
                let chart_version = v["chart"]["metadata"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut get = args(&["get", "values", release, "-n", namespace, "-o", "yaml"]);
                get.extend(kube_args.iter().cloned());
                let values = self.runner.check(Tool::Helm, &get)?.stdout;
                let seq = self.journal.next_seq();
                let backup = self
                    .journal
                    .backup_path(seq, &format!("{release}-values.yaml"))?;
                self.host.write_new(&backup, values.as_bytes(), 0o600)?;
                let seq = self.journal.intent(
                    id,
                    Undo::HelmUninstalled {
                        release: release.clone(),
                        namespace: namespace.clone(),
                        chart_version,
                        values: backup,
                        extra_args: kube_args.clone(),
                    },
                )?;
                let (tool, argv) = super::command_parts(&step.action)
                    .context("helm uninstall has a command line")?;
                self.runner.check(tool, &argv)?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::RolloutRestart { args: kargs } => {
                // Once is enough: the restarted pods already have Cilium-managed IPs, and the
                // journal keeps the entry (rollback restarts them again) until it is undone.
                if self.journal.done().any(|e| {
                    e.step == id
                        && matches!(&e.undo, Undo::RolloutRestart { args } if args == kargs)
                }) {
                    return Ok(Some("restarted by an earlier install".into()));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::RolloutRestart {
                        args: kargs.clone(),
                    },
                )?;
                self.runner.check(Tool::Kubectl, kargs)?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::RestartPods {
                list_args,
                kube_args,
            } => {
                // Recorded (nothing to undo) so that a re-run does not delete the pods again.
                if self
                    .journal
                    .done()
                    .any(|e| e.step == id && e.undo == Undo::Nothing)
                {
                    return Ok(Some("pods recreated by an earlier install".into()));
                }
                let seq = self.journal.intent(id, Undo::Nothing)?;
                let out = self.runner.check(Tool::Kubectl, list_args)?;
                let mut bare = Vec::new();
                for line in out.stdout.lines() {
                    let f: Vec<&str> = line.split('|').map(str::trim).collect();
                    let (Some(ns), Some(name)) = (f.first(), f.get(1)) else {
                        continue;
                    };
                    if ns.is_empty() || name.is_empty() || f.get(2) == Some(&"true") {
                        continue;
                    }
                    match f.get(3).filter(|k| !k.is_empty()) {
                        Some(_) => {
                            let mut a = kube_args.clone();
                            a.extend(args(&["-n", ns, "delete", "pod", name, "--wait=false"]));
                            self.runner.check(Tool::Kubectl, &a)?;
                        }
                        None => bare.push(format!("{ns}/{name}")),
                    }
                }
                if !bare.is_empty() {
                    (self.log)(&format!(
                        "      not restarted (no controller would recreate them; recreate them \
                         yourself): {}",
                        bare.join(", ")
                    ));
                }
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::FlannelIptables => {
                if let Some(why) = self.runner.unavailable(Tool::IptablesSave) {
                    return Ok(Some(format!(
                        "not checked: {why}; if flannel's chains are there, remove them by hand \
                         (iptables -t nat -X FLANNEL-POSTRTG, iptables -X FLANNEL-FWD, after \
                         deleting the rules that jump to them)"
                    )));
                }
                let save = self.runner.check(Tool::IptablesSave, &[])?.stdout;
                let tables = super::iptables::parse(&save).map_err(|(line, why)| {
                    anyhow::anyhow!("iptables-save output, line {line}: {why}")
                })?;
                let flannel = super::iptables::flannel_tables(&tables);
                if flannel.is_empty() {
                    return Ok(Some("no FLANNEL-* chains".into()));
                }
                // Only the tables flannel is in: the restore replaces exactly those.
                let snapshot: String = flannel.iter().map(|t| t.text.as_str()).collect();
                let seq = self.journal.next_seq();
                let backup = self.journal.backup_path(seq, "iptables-flannel.rules")?;
                self.host.write_new(&backup, snapshot.as_bytes(), 0o600)?;
                let seq = self
                    .journal
                    .intent(id, Undo::Iptables { snapshot: backup })?;
                for a in super::iptables::removal(&tables) {
                    self.runner.check(Tool::Iptables, &a)?;
                }
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Kubectl { args: kargs, check } => {
                let out = self.runner.run(Tool::Kubectl, kargs)?;
                if !out.success() {
                    bail!(
                        "{} {}: {}{}",
                        self.runner.display(Tool::Kubectl, kargs),
                        out.describe(),
                        out.stderr.trim(),
                        if out.stdout.trim().is_empty() {
                            String::new()
                        } else {
                            format!("\n{}", out.stdout.trim())
                        }
                    );
                }
                if *check == PostCheck::PodsHaveIps {
                    let missing: Vec<&str> = out
                        .stdout
                        .lines()
                        .filter(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            f.get(1) == Some(&"Running") && f.len() < 3
                        })
                        .collect();
                    if !missing.is_empty() {
                        bail!("running pods without an IP: {}", missing.join(", "));
                    }
                }
            }
            Action::Modprobe { module } => {
                if super::fallback::module_loaded(self.host, module) {
                    return Ok(Some(format!("{module} is loaded")));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::Module {
                        name: module.clone(),
                    },
                )?;
                self.runner.check(Tool::Modprobe, &args(&[module]))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Sysctl { key, value } => {
                let proc = format!("/proc/sys/{}", key.replace('.', "/"));
                // A key can be missing until its module loads (net.bridge.* with br_netfilter):
                // then there is no old value to restore, and unloading the module removes it.
                let prior = self
                    .host
                    .read_text(&proc)
                    .ok()
                    .map(|s| s.trim().to_string());
                if prior.as_deref() == Some(value.as_str()) {
                    return Ok(Some(format!("{key} is {value}")));
                }
                let seq = self.journal.intent(
                    id,
                    Undo::Sysctl {
                        key: key.clone(),
                        prior,
                    },
                )?;
                self.runner
                    .check(Tool::Sysctl, &args(&["-w", &format!("{key}={value}")]))?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Firewall {
                add_args,
                remove_args,
            } => {
                let seq = self.journal.intent(
                    id,
                    Undo::Firewall {
                        remove_args: remove_args.clone(),
                    },
                )?;
                self.runner.check(Tool::FirewallCmd, add_args)?;
                self.journal.set_state(seq, EntryState::Done)?;
            }
            Action::Advice => return Ok(Some("advice only".into())),
        }
        Ok(None)
    }
}

/// The cluster-access flags of a helm command line (`--kubeconfig PATH`, `--kube-context
/// NAME`), for the status queries and the journaled undo of the same release.
fn kube_args_of(helm_args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for flag in ["--kubeconfig", "--kube-context"] {
        if let Some(w) = helm_args.windows(2).find(|w| w[0] == flag) {
            out.extend(w.iter().cloned());
        }
    }
    out
}

fn file_name(node_path: &str) -> String {
    Path::new(node_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
}

fn on_bpffs(host: &HostRoot, path: &str) -> bool {
    host.fs_magic(path) == Some(crate::host::mounts::BPF_FS_MAGIC)
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
pub fn rollback(host: &HostRoot, runner: &Runner) -> anyhow::Result<RollbackReport> {
    rollback_entries(host, runner, None)
}

/// Undo one stage of a whole-cluster migration (`rollback --migration-stage STAGE`): only the
/// entries whose step id starts with `STAGE/`, newest first, with the service restarts and
/// reloads those entries call for. The journal stays while other stages' changes remain.
pub fn rollback_stage(
    host: &HostRoot,
    runner: &Runner,
    stage: &str,
) -> anyhow::Result<RollbackReport> {
    rollback_entries(host, runner, Some(&super::stages::prefix(stage)))
}

fn rollback_entries(
    host: &HostRoot,
    runner: &Runner,
    only: Option<&str>,
) -> anyhow::Result<RollbackReport> {
    let mut report = RollbackReport::default();
    let Some(mut journal) = Journal::load(host)? else {
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
            if let Some(copy) = fsops::keep_if_edited(host, path, prior, after.as_deref())? {
                kept.push(format!(
                    "{path} was edited after preflight wrote it: your version is kept as {copy}"
                ));
            }
            fsops::restore(host, path, prior)?;
            Some(format!("{path} restored ({})", prior_label(prior)))
        }
        Undo::Moved { path, backup } => {
            let _ = host.remove_if_present(&fsops::tmp_sibling(backup));
            let _ = host.remove_if_present(&fsops::tmp_sibling(path));
            if host.lexists(backup) {
                // Whatever was written in its place since (a new agent's header) goes.
                host.remove_if_present(path)?;
                fsops::move_path(host, backup, path)?;
                Some(format!("{path} moved back"))
            } else {
                None
            }
        }
        Undo::Link { name, prior } => match (node::link_state(runner, name), prior) {
            (LinkState::Unknown(why), _) => bail!("could not query link {name}: {why}"),
            (LinkState::Present(_), None) => {
                runner.check(Tool::Ip, &args(&["link", "del", name]))?;
                Some(format!("link {name} deleted (it did not exist before)"))
            }
            (LinkState::Absent, Some(spec)) => {
                for cmd in recreate_link(spec) {
                    runner.check(Tool::Ip, &cmd)?;
                }
                Some(format!("link {name} recreated"))
            }
            _ => None,
        },
        Undo::MadeShared { path } => {
            runner.check(Tool::Mount, &args(&["--make-private", path]))?;
            Some(format!("{path} private again"))
        }
        Undo::Enabled { unit, was_active } => {
            let mut a = args(&["disable"]);
            if !was_active {
                a.push("--now".into());
            }
            a.push(unit.clone());
            runner.check(Tool::Systemctl, &a)?;
            Some(format!("{unit} disabled"))
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
        } => {
            let mut status = args(&["status", release, "-n", namespace]);
            status.extend(extra_args.iter().cloned());
            let present = runner.run(Tool::Helm, &status)?.success();
            let mut a = match (prior_revision, present) {
                (None, false) => return Ok(None),
                (None, true) => args(&["uninstall", release, "-n", namespace, "--wait"]),
                (Some(rev), _) => args(&[
                    "rollback",
                    release,
                    &rev.to_string(),
                    "-n",
                    namespace,
                    "--wait",
                ]),
            };
            a.extend(extra_args.iter().cloned());
            runner.check(Tool::Helm, &a)?;
            Some(format!(
                "helm release {namespace}/{release} {}",
                if prior_revision.is_some() {
                    "rolled back"
                } else {
                    "uninstalled"
                }
            ))
        }
        Undo::HelmUninstalled {
            release,
            namespace,
            chart_version,
            values,
            extra_args,
        } => {
            let mut status = args(&["status", release, "-n", namespace]);
            status.extend(extra_args.iter().cloned());
            if runner.run(Tool::Helm, &status)?.success() {
                return Ok(None);
            }
            let mut a = args(&[
                "upgrade",
                "--install",
                release,
                "cilium",
                "--repo",
                super::gitops::CILIUM_HELM_REPO,
                "--namespace",
                namespace,
                "--values",
            ]);
            a.push(host.resolve(values)?.display().to_string());
            if !chart_version.is_empty() {
                a.extend(args(&["--version", chart_version]));
            }
            a.extend(extra_args.iter().cloned());
            runner.check(Tool::Helm, &a)?;
            Some(format!(
                "helm release {namespace}/{release} {chart_version} installed again with its values"
            ))
        }
        // A module in use (flannel.1 holds vxlan, containerd's mounts hold overlay) cannot be
        // unloaded, and forcing it would take the node's network down: it stays loaded. Its
        // modules-load.d file is gone, so it is not loaded again at the next boot.
        Undo::Module { name } => match module_refcount(host, name) {
            Some(None) => None,
            Some(Some(users)) if users > 0 => {
                notes.push(format!(
                    "module {name} left loaded: in use ({users} users); it is no longer loaded at boot"
                ));
                None
            }
            _ => match runner.check(Tool::Modprobe, &args(&["-r", name])) {
                Ok(_) => Some(format!("module {name} unloaded")),
                Err(e) => {
                    notes.push(format!(
                        "module {name} left loaded: `modprobe -r {name}` refused ({e:#}); it is \
                         no longer loaded at boot"
                    ));
                    None
                }
            },
        },
        Undo::Sysctl {
            key,
            prior: Some(prior),
        } => {
            if key == "net.ipv4.ip_forward" && prior.trim() == "0" && k3s_running(host, runner) {
                notes.push(
                    "net.ipv4.ip_forward left at 1: k3s is running and every pod's traffic needs \
                     forwarding (k3s turns it on at start anyway); only the boot-time file is removed"
                        .into(),
                );
                return Ok(None);
            }
            runner.check(Tool::Sysctl, &args(&["-w", &format!("{key}={prior}")]))?;
            Some(format!("{key} = {prior} again"))
        }
        Undo::Sysctl { prior: None, .. } => None,
        Undo::Iptables { snapshot } => {
            // Flush-and-load of the saved tables: idempotent, so a re-run rollback is safe.
            let file = host.resolve(snapshot)?.display().to_string();
            runner.check(Tool::IptablesRestore, &[file])?;
            Some("flannel's iptables chains restored".into())
        }
        Undo::Firewall { remove_args } => {
            runner.check(Tool::FirewallCmd, remove_args)?;
            runner.check(Tool::FirewallCmd, &args(&["--reload"]))?;
            Some(format!("firewall-cmd {}", remove_args.join(" ")))
        }
    })
}

/// A module's users from `<root>/proc/modules`: Some(None) when it is not loaded, Some(Some(n))
/// when loaded with n users, None when the file cannot be read.
fn module_refcount(host: &HostRoot, name: &str) -> Option<Option<u64>> {
    let text = host.read_text("/proc/modules").ok()?;
    Some(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| f.get(2).and_then(|n| n.parse().ok()).unwrap_or(1))
    }))
}

/// Whether a k3s service runs on the node: `systemctl is-active`, or `rc-service … status`
/// under OpenRC. When that cannot be asked, assume it does (the safe side for forwarding).
fn k3s_running(host: &HostRoot, runner: &Runner) -> bool {
    let openrc = !host.is_dir("/run/systemd/system")
        && !host.is_dir("/etc/systemd/system")
        && (host.exists("/etc/init.d/k3s") || host.exists("/etc/init.d/k3s-agent"));
    ["k3s", "k3s-agent"].iter().any(|unit| {
        let (tool, argv) = if openrc {
            (Tool::RcService, args(&[unit, "status"]))
        } else {
            (Tool::Systemctl, args(&["is-active", "--quiet", unit]))
        };
        runner.run(tool, &argv).map_or(true, |o| o.success())
    })
}

fn prior_label(p: &fsops::Prior) -> &'static str {
    match p {
        fsops::Prior::Absent => "absent",
        fsops::Prior::File { .. } => "content, mode, owner",
        fsops::Prior::Symlink { .. } => "symlink",
        fsops::Prior::Dir { .. } => "directory",
    }
}

/// `ip` argument vectors that recreate a deleted link as it was.
pub fn recreate_link(l: &LinkSpec) -> Vec<Vec<String>> {
    let mut add = args(&["link", "add", &l.name]);
    if let Some(a) = &l.address {
        add.extend(args(&["address", a]));
    }
    if let Some(m) = l.mtu {
        add.extend(args(&["mtu", &m.to_string()]));
    }
    match l.kind.as_deref() {
        Some("vxlan") => {
            add.extend(args(&[
                "type",
                "vxlan",
                "id",
                &l.vxlan_id.unwrap_or(1).to_string(),
            ]));
            if let Some(local) = &l.vxlan_local {
                add.extend(args(&["local", local]));
            }
            if let Some(dev) = &l.vxlan_dev {
                add.extend(args(&["dev", dev]));
            }
            add.extend(args(&[
                "dstport",
                &l.vxlan_port.unwrap_or(8472).to_string(),
                "nolearning",
            ]));
        }
        Some(kind) => add.extend(args(&["type", kind])),
        None => {}
    }
    let mut cmds = vec![add];
    for a in &l.addresses {
        cmds.push(args(&["addr", "add", a, "dev", &l.name]));
    }
    if l.up {
        cmds.push(args(&["link", "set", &l.name, "up"]));
    }
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recreates_flannel_vxlan_with_its_settings() {
        let l = LinkSpec {
            name: "flannel.1".into(),
            kind: Some("vxlan".into()),
            mtu: Some(1450),
            address: Some("aa:bb:cc:dd:ee:ff".into()),
            vxlan_id: Some(1),
            vxlan_local: Some("10.0.0.5".into()),
            vxlan_dev: Some("eth0".into()),
            vxlan_port: Some(8472),
            addresses: vec!["10.42.0.0/32".into()],
            up: true,
        };
        let cmds = recreate_link(&l);
        assert_eq!(
            cmds[0].join(" "),
            "link add flannel.1 address aa:bb:cc:dd:ee:ff mtu 1450 type vxlan id 1 local 10.0.0.5 dev eth0 dstport 8472 nolearning"
        );
        assert_eq!(cmds[1].join(" "), "addr add 10.42.0.0/32 dev flannel.1");
        assert_eq!(cmds[2].join(" "), "link set flannel.1 up");
    }
}

//! Carrying the runbook out (`install --cluster`) and undoing it (`rollback --cluster`) under
//! the cluster journal: cluster steps through the Kubernetes API ([`super::kube`]) and helm
//! (a real command line, through the node plan's runner; the tests stand in for helm and for the
//! API server, which cannot run there, and assert the command lines and requests); node stages
//! by running
//! `preflight install --migration-stage STAGE` on each node (`--node-exec`), whose own journal
//! records the node's changes.
//!
//! Any failing step rolls everything back, newest first. A run killed at any point leaves the
//! journals: `install --cluster` again resumes (steps already done are skipped; a node stage
//! that may have been cut off is rolled back on that node, then run again), `rollback
//! --cluster` undoes it.
use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use wait_timeout::ChildExt;

use super::{
    journal::{ClusterJournal, EntryState, Status, Undo},
    kube::Kube,
    plan::ClusterPlan,
    runbook::{Access, ClusterAction, ClusterStep, ValuesStage, values_path},
};
use crate::{
    exit,
    plan::runner::{Argv, Runner, Tool},
};

/// Where progress lines go (the command prints them on stdout).
pub type Say<'a> = &'a dyn Fn(&str);

/// Testing hooks, honoured by debug builds only: fail (`PREFLIGHT_CLUSTER_FAIL_AT`) or SIGKILL
/// the process (`PREFLIGHT_CLUSTER_KILL_AT`) right after the journal records the named step.
fn hook(step: &str) -> anyhow::Result<()> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    if std::env::var("PREFLIGHT_CLUSTER_KILL_AT").ok().as_deref() == Some(step) {
        eprintln!("preflight: test hook: SIGKILL at cluster step {step}");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    if std::env::var("PREFLIGHT_CLUSTER_FAIL_AT").ok().as_deref() == Some(step) {
        bail!("injected failure at cluster step {step}");
    }
    Ok(())
}

/// Run an argument vector (a node stage), its output relayed indented; an error when it does
/// not exit 0 in time.
fn run_argv(argv: &[String], timeout: Duration, say: Say) -> anyhow::Result<()> {
    let Some((program, args)) = argv.split_first() else {
        bail!("empty node command");
    };
    let shown = Argv(std::path::Path::new(program), args).to_string();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let mut out = child.stdout.take().context("child stdout")?;
    let mut err = child.stderr.take().context("child stderr")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match child.wait_timeout(timeout)? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{shown}: still running after {} s; killed",
                timeout.as_secs()
            );
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    // What the node undid or kept, and its last line (what it did); the whole plan is in its own
    // journal.
    let last = stdout.lines().rfind(|l| !l.trim().is_empty());
    for l in stdout.lines().filter(|l| {
        let t = l.trim_start();
        ["undone:", "left as is:", "WARNING:", "FAILED:"]
            .iter()
            .any(|p| t.starts_with(p))
    }) {
        say(&format!("        | {l}"));
    }
    if let Some(l) = last {
        say(&format!("        | {l}"));
    }
    if !status.success() {
        // Why it failed first (the stage's own FAILED line and its stderr), then what it undid.
        let why: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains("FAILED at step"))
            .chain(stderr.lines().filter(|l| !l.trim().is_empty()))
            .collect();
        let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
        bail!(
            "{shown} exited with {status}:\n{}\n{}",
            why.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

fn helm_revision(runner: &Runner, release: &str, ns: &str, kube_args: &[String]) -> Option<u64> {
    let mut a: Vec<String> = ["status", release, "-n", ns, "-o", "json"]
        .map(String::from)
        .to_vec();
    a.extend(kube_args.iter().cloned());
    let o = runner.run(Tool::Helm, &a).ok()?;
    if !o.success() {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(&o.stdout)
        .ok()?
        .get("version")?
        .as_u64()
}

fn write_values(plan: &ClusterPlan, access: &Access) -> anyhow::Result<()> {
    std::fs::create_dir_all(&access.state_dir)
        .with_context(|| format!("creating {}", access.state_dir.display()))?;
    for (stage, v) in [
        (ValuesStage::Migration, &plan.migration_values),
        (ValuesStage::Final, &plan.final_values),
    ] {
        let p = values_path(&access.state_dir, stage);
        let text = format!(
            "# Written by preflight install --cluster: {} values of the dual-overlay migration.\n{}",
            match stage {
                ValuesStage::Migration => "migration",
                ValuesStage::Final => "final",
            },
            serde_norway::to_string(v)?
        );
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `install --cluster`: exit 0 migrated, 1 failed and rolled back, 2 error (journal kept).
pub fn install(
    plan: &ClusterPlan,
    steps: &[ClusterStep],
    access: &Access,
    runner: &Runner,
    say: Say,
) -> anyhow::Result<u8> {
    let ns = plan.opts.namespace.clone();
    let timeout = wait_timeout();
    // Before any change: the API server answers, helm is there.
    let kube = Kube::connect(access, &ns, timeout)?;
    let version = kube.ping()?;
    if let Some(why) = runner.unavailable(Tool::Helm) {
        bail!("helm is needed for the Helm stages; nothing was changed: {why}");
    }
    say(&format!("API server: Kubernetes {version}"));
    let mut journal = match ClusterJournal::load(&access.state_dir)? {
        Some(j) if j.file.status == Status::RollingBack => bail!(
            "{}: a cluster rollback was interrupted; run `preflight rollback --cluster --state-dir {}` to finish it",
            ClusterJournal::path_in(&access.state_dir).display(),
            access.state_dir.display()
        ),
        Some(j)
            if j.file.pod_cidr != plan.choices.pod_cidr
                || j.file.tunnel_port != plan.choices.tunnel_port =>
        {
            bail!(
                "{}: a run with pod CIDR {} and tunnel port {} is journaled; this plan chose {} and {}: roll that run back first (`preflight rollback --cluster`)",
                ClusterJournal::path_in(&access.state_dir).display(),
                j.file.pod_cidr,
                j.file.tunnel_port,
                plan.choices.pod_cidr,
                plan.choices.tunnel_port
            )
        }
        Some(mut j) => {
            say(&format!(
                "Resuming the run journaled in {} (nodes: {})",
                ClusterJournal::path_in(&access.state_dir).display(),
                if j.file.nodes.is_empty() {
                    "none past a stage yet".to_string()
                } else {
                    j.file
                        .nodes
                        .iter()
                        .map(|(n, s)| format!("{n} {}", s.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
            j.set_status(Status::InProgress)?;
            j
        }
        None => ClusterJournal::create(
            &access.state_dir,
            &plan.choices.pod_cidr,
            plan.choices.tunnel_port,
            &ns,
        )?,
    };
    write_values(plan, access)?;
    say(&format!(
        "\nExecuting (cluster journal: {})",
        ClusterJournal::path_in(&access.state_dir).display()
    ));
    for (i, step) in steps.iter().enumerate() {
        say(&format!("{:>3}/{}. {} …", i + 1, steps.len(), step.title));
        if journal
            .entry(&step.id)
            .is_some_and(|e| e.state == EntryState::Done)
        {
            say("      already done");
            continue;
        }
        let started = std::time::Instant::now();
        match run_step(plan, step, access, runner, &kube, &mut journal, say) {
            Ok(()) => say(&format!("      ok ({} ms)", started.elapsed().as_millis())),
            Err(e) => {
                say(&format!("      FAILED: {e:#}"));
                say(&format!(
                    "\nCLUSTER MIGRATION FAILED at step {} ({}). Rolling back everything, newest first…",
                    i + 1,
                    step.id
                ));
                drop(journal);
                let code = undo_all(access, runner, Some(&kube), say)?;
                return Ok(if code == exit::GO { exit::NO_GO } else { code });
            }
        }
    }
    journal.set_status(Status::Complete)?;
    say(
        "\nCluster migrated: every node runs Cilium, flannel is off. `preflight rollback --cluster` undoes it.",
    );
    Ok(exit::GO)
}

fn wait_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("PREFLIGHT_CLUSTER_WAIT_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    )
}

fn run_step(
    plan: &ClusterPlan,
    step: &ClusterStep,
    access: &Access,
    runner: &Runner,
    kube: &Kube,
    journal: &mut ClusterJournal,
    say: Say,
) -> anyhow::Result<()> {
    use ClusterAction as A;
    let id = step.id.as_str();
    let api = plan.choices.node_config_api;
    let ns = plan.opts.namespace.as_str();
    let interrupted = journal
        .entry(id)
        .is_some_and(|e| e.state == EntryState::Intent);
    let seq = match &step.action {
        A::NodeStage { node, stage } => {
            let rollback = access.node_rollback_command(node, *stage);
            if interrupted {
                // The stage may have been cut off half way: its node journal is then
                // interrupted and refuses a new run until that stage is rolled back.
                say(&format!(
                    "      resuming: rolling {} back on {node} first",
                    stage.as_str()
                ));
                run_argv(&rollback, runner.timeout(), say)?;
            }
            let seq = journal.intent(
                id,
                Undo::NodeStage {
                    node: node.clone(),
                    stage: *stage,
                    rollback,
                },
            )?;
            hook(id)?;
            run_argv(&access.node_command(node, *stage), runner.timeout(), say)?;
            journal.node_reached(node, *stage)?;
            seq
        }
        A::Helm { args, .. } => {
            let kube_args = access.helm_kube_args();
            // A resumed step keeps the revision recorded before its first attempt.
            let prior = match journal.entry(id) {
                Some(e) if interrupted => match &e.undo {
                    Undo::Helm { prior_revision, .. } => *prior_revision,
                    _ => None,
                },
                _ => helm_revision(runner, &plan.opts.release, ns, &kube_args),
            };
            let seq = journal.intent(
                id,
                Undo::Helm {
                    release: plan.opts.release.clone(),
                    namespace: ns.into(),
                    prior_revision: prior,
                    kube_args,
                },
            )?;
            hook(id)?;
            runner.check(Tool::Helm, args)?;
            seq
        }
        A::ApplyNodeConfig => {
            let prior = kube.get_node_config(api, super::NODE_CONFIG_NAME)?;
            let seq = journal.intent(
                id,
                Undo::NodeConfigApplied {
                    api_version: api.into(),
                    name: super::NODE_CONFIG_NAME.into(),
                    prior: prior.map(clean_object),
                },
            )?;
            hook(id)?;
            kube.apply_node_config(&plan.node_config)?;
            seq
        }
        A::DeleteNodeConfig => {
            let prior = kube.get_node_config(api, super::NODE_CONFIG_NAME)?;
            let undo = match prior {
                Some(p) => Undo::NodeConfigDeleted {
                    manifest: clean_object(p),
                },
                None => Undo::Nothing,
            };
            let seq = journal.intent(id, undo)?;
            hook(id)?;
            kube.delete_node_config(api, super::NODE_CONFIG_NAME)?;
            seq
        }
        A::Cordon { node } | A::Uncordon { node } => {
            let want = matches!(step.action, A::Cordon { .. });
            let prior = kube.unschedulable(node)?;
            let seq = journal.intent(
                id,
                Undo::Schedulable {
                    node: node.clone(),
                    prior,
                },
            )?;
            hook(id)?;
            kube.set_unschedulable(node, want)?;
            seq
        }
        A::Label { node } | A::Unlabel { node } => {
            let want = matches!(step.action, A::Label { .. }).then_some("true");
            let prior = kube.label(node, super::MIGRATION_LABEL)?;
            let seq = journal.intent(
                id,
                Undo::Label {
                    node: node.clone(),
                    prior,
                },
            )?;
            hook(id)?;
            kube.set_label(node, super::MIGRATION_LABEL, want)?;
            seq
        }
        action => {
            let seq = journal.intent(id, Undo::Nothing)?;
            hook(id)?;
            match action {
                A::WaitDaemonSet => kube.wait_daemonset("cilium")?,
                A::RestartDaemonSet => kube.restart_daemonset("cilium", &now())?,
                A::Drain { node } => {
                    let evicted = kube.drain(node)?;
                    say(&format!(
                        "      evicted: {}",
                        if evicted.is_empty() {
                            "nothing".into()
                        } else {
                            evicted.join(", ")
                        }
                    ));
                }
                A::RestartAgent { node } => kube.restart_agent(node)?,
                A::RecreatePods { node } => {
                    let done = kube.recreate_pods(node)?;
                    say(&format!(
                        "      recreated: {}",
                        if done.is_empty() {
                            "nothing".into()
                        } else {
                            done.join(", ")
                        }
                    ));
                }
                A::Validate { node } => kube.validate(node, &plan.choices.pod_cidr)?,
                A::WaitNodeReady { node } => kube.wait_node_ready(node)?,
                _ => unreachable!("handled above"),
            }
            seq
        }
    };
    journal.set_state(seq, EntryState::Done)
}

/// An object as it can be applied again: no server-set metadata.
fn clean_object(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    v
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}

/// `rollback --cluster`: exit 0 restored, 2 when an undo failed (journal kept; run it again).
pub fn rollback(access: &Access, runner: &Runner, say: Say) -> anyhow::Result<u8> {
    undo_all(access, runner, None, say)
}

fn undo_all(access: &Access, runner: &Runner, kube: Option<&Kube>, say: Say) -> anyhow::Result<u8> {
    let Some(mut journal) = ClusterJournal::load(&access.state_dir)? else {
        say("Nothing to roll back (no cluster journal).");
        return Ok(exit::GO);
    };
    let owned;
    let kube = match kube {
        Some(k) => k,
        None => {
            owned = Kube::connect(access, &journal.file.namespace, wait_timeout())?;
            &owned
        }
    };
    journal.set_status(Status::RollingBack)?;
    let mut failed = Vec::new();
    let entries = journal.file.entries.clone();
    for e in entries.iter().rev() {
        if e.state == EntryState::Undone {
            continue;
        }
        match undo(&e.undo, kube, runner, say) {
            Ok(Some(what)) => {
                say(&format!("  undone: {} ({}): {what}", e.step, e.seq));
                journal.set_state(e.seq, EntryState::Undone)?;
            }
            Ok(None) => journal.set_state(e.seq, EntryState::Undone)?,
            Err(err) => {
                say(&format!("  FAILED: {} ({}): {err:#}", e.step, e.seq));
                failed.push(e.step.clone());
                // Later entries depend on this one (a node stage on a Helm release, a label
                // on the per-node config): stop here; a new rollback resumes.
                break;
            }
        }
        hook(&format!("undo:{}", e.step))?;
    }
    if failed.is_empty() {
        journal.remove()?;
        say("Cluster rollback complete: every node and the cluster are as they were before.");
        Ok(exit::GO)
    } else {
        say(&format!(
            "Cluster rollback incomplete (failed: {}): fix the cause and run `preflight rollback --cluster --state-dir {}` again (the journal is kept).",
            failed.join(", "),
            access.state_dir.display()
        ));
        Ok(exit::ERROR)
    }
}

fn undo(u: &Undo, kube: &Kube, runner: &Runner, say: Say) -> anyhow::Result<Option<String>> {
    Ok(match u {
        Undo::Nothing => None,
        Undo::NodeStage {
            node,
            stage,
            rollback,
        } => {
            say(&format!(
                "  rolling back stage {} on {node} …",
                stage.as_str()
            ));
            run_argv(rollback, runner.timeout(), say)?;
            Some(format!("stage {} rolled back on {node}", stage.as_str()))
        }
        Undo::Helm {
            release,
            namespace,
            prior_revision,
            kube_args,
        } => {
            let present = helm_revision(runner, release, namespace, kube_args);
            let mut a: Vec<String> = match (prior_revision, present) {
                (None, None) => return Ok(None),
                (None, Some(_)) => ["uninstall", release, "-n", namespace, "--wait"]
                    .map(String::from)
                    .to_vec(),
                (Some(rev), _) => vec![
                    "rollback".into(),
                    release.clone(),
                    rev.to_string(),
                    "-n".into(),
                    namespace.clone(),
                    "--wait".into(),
                ],
            };
            a.extend(kube_args.iter().cloned());
            runner.check(Tool::Helm, &a)?;
            Some(runner.display(Tool::Helm, &a))
        }
        Undo::NodeConfigApplied {
            api_version,
            name,
            prior,
        } => match prior {
            None => {
                kube.delete_node_config(api_version, name)?;
                Some(format!("CiliumNodeConfig {name} deleted"))
            }
            Some(p) => {
                kube.apply_node_config(p)?;
                Some(format!("CiliumNodeConfig {name} put back as it was"))
            }
        },
        Undo::NodeConfigDeleted { manifest } => {
            kube.apply_node_config(manifest)?;
            Some("CiliumNodeConfig created again".into())
        }
        Undo::Schedulable { node, prior } => {
            if kube.unschedulable(node)? == *prior {
                return Ok(None);
            }
            kube.set_unschedulable(node, *prior)?;
            Some(format!(
                "{node} {}",
                if *prior { "cordoned" } else { "uncordoned" }
            ))
        }
        Undo::Label { node, prior } => {
            if kube.label(node, super::MIGRATION_LABEL)? == *prior {
                return Ok(None);
            }
            kube.set_label(node, super::MIGRATION_LABEL, prior.as_deref())?;
            // The agent reads its per-node config at start: restart it, when Cilium is there.
            let restarted = kube.restart_agent_if_present(node)?;
            Some(format!(
                "{node}: label {}{}",
                match prior {
                    Some(v) => format!("{}={v} again", super::MIGRATION_LABEL),
                    None => format!("{} removed", super::MIGRATION_LABEL),
                },
                if restarted {
                    ", its Cilium pod restarted"
                } else {
                    ""
                }
            ))
        }
    })
}

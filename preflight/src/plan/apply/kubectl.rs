//! Apply: kubectl: waits and post-checks, `rollout restart`, recreating pods on Cilium.

use anyhow::bail;

use super::args;
use crate::plan::{
    PostCheck,
    exec::Executor,
    journal::{EntryState, Undo},
    runner::Tool,
};

/// `Action::RolloutRestart`: `kubectl rollout restart` of the workloads, once per install.
pub(in crate::plan) fn rollout_restart(
    ex: &mut Executor<'_>,
    id: &str,
    kargs: &[String],
) -> anyhow::Result<Option<String>> {
    // Once is enough: the restarted pods already have Cilium-managed IPs, and the
    // journal keeps the entry (rollback restarts them again) until it is undone.
    if ex
        .journal
        .done()
        .any(|e| e.step == id && matches!(&e.undo, Undo::RolloutRestart { args } if args == kargs))
    {
        return Ok(Some("restarted by an earlier install".into()));
    }
    let seq = ex.journal.intent(
        id,
        Undo::RolloutRestart {
            args: kargs.to_vec(),
        },
    )?;
    ex.runner.check(Tool::Kubectl, kargs)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::RestartPods`: the pods flannel gave addresses recreated, so Cilium manages them;
/// journaled (nothing to undo) so a re-run does not delete them again.
pub(in crate::plan) fn restart_pods(
    ex: &mut Executor<'_>,
    id: &str,
    list_args: &[String],
    kube_args: &[String],
) -> anyhow::Result<Option<String>> {
    // Recorded (nothing to undo) so that a re-run does not delete the pods again.
    if ex
        .journal
        .done()
        .any(|e| e.step == id && e.undo == Undo::Nothing)
    {
        return Ok(Some("pods recreated by an earlier install".into()));
    }
    let seq = ex.journal.intent(id, Undo::Nothing)?;
    let out = ex.runner.check(Tool::Kubectl, list_args)?;
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
                let mut a = kube_args.to_vec();
                a.extend(args(&["-n", ns, "delete", "pod", name, "--wait=false"]));
                ex.runner.check(Tool::Kubectl, &a)?;
            }
            None => bare.push(format!("{ns}/{name}")),
        }
    }
    if !bare.is_empty() {
        (ex.log)(&format!(
            "      not restarted (no controller would recreate them; recreate them \
                         yourself): {}",
            bare.join(", ")
        ));
    }
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::Kubectl`: a kubectl wait or query, judged by the step's post-check (changes nothing).
pub(in crate::plan) fn kubectl(
    ex: &mut Executor<'_>,
    kargs: &[String],
    check: &PostCheck,
) -> anyhow::Result<Option<String>> {
    let out = ex.runner.run(Tool::Kubectl, kargs)?;
    if !out.success() {
        bail!(
            "{} {}: {}{}",
            ex.runner.display(Tool::Kubectl, kargs),
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
    Ok(None)
}

//! Apply: systemd and OpenRC units: enable, daemon-reload, restart or reload; and disabling again.

use super::args;
use crate::plan::{
    Step,
    exec::Executor,
    journal::{EntryState, Undo},
    runner::{Runner, Tool},
};

/// `Action::EnableUnit`: `systemctl enable --now`, whether it was active journaled; nothing to do
/// when it is enabled and active.
pub(in crate::plan) fn enable_unit(
    ex: &mut Executor<'_>,
    id: &str,
    unit: &str,
) -> anyhow::Result<Option<String>> {
    let active = ex
        .runner
        .run(Tool::Systemctl, &args(&["is-active", "--quiet", unit]))?
        .success();
    let enabled = ex
        .runner
        .run(Tool::Systemctl, &args(&["is-enabled", "--quiet", unit]))?
        .success();
    if active && enabled {
        return Ok(Some(format!("{unit} is enabled and active")));
    }
    let seq = ex.journal.intent(
        id,
        Undo::Enabled {
            unit: unit.to_string(),
            was_active: active,
        },
    )?;
    ex.runner.check(Tool::Systemctl, &enable_command(unit).1)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::DaemonReload`: `systemctl daemon-reload`, journaled so rollback reloads again.
pub(in crate::plan) fn daemon_reload(
    ex: &mut Executor<'_>,
    id: &str,
) -> anyhow::Result<Option<String>> {
    let seq = ex.journal.intent(id, Undo::DaemonReload)?;
    ex.runner
        .check(Tool::Systemctl, &daemon_reload_command().1)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::Service`: the service restarted or reloaded (systemctl, or rc-service under OpenRC).
pub(in crate::plan) fn service(
    ex: &mut Executor<'_>,
    step: &Step,
    id: &str,
    unit: &str,
    verb: &str,
    openrc: &bool,
) -> anyhow::Result<Option<String>> {
    if let crate::plan::StepState::Done(why) = &step.state {
        return Ok(Some(why.clone()));
    }
    let seq = ex.journal.intent(
        id,
        Undo::Restart {
            unit: unit.to_string(),
            openrc: *openrc,
        },
    )?;
    let (tool, argv) = service_command(unit, verb, *openrc);
    ex.runner.check(tool, &argv)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Undo::Enabled`: `systemctl disable` again, with `--now` when it was not active before.
pub(in crate::plan) fn undo_enabled(
    runner: &Runner,
    unit: &str,
    was_active: &bool,
) -> anyhow::Result<Option<String>> {
    Ok({
        let mut a = args(&["disable"]);
        if !was_active {
            a.push("--now".into());
        }
        a.push(unit.to_string());
        runner.check(Tool::Systemctl, &a)?;
        Some(format!("{unit} disabled"))
    })
}

/// The command that restarts or reloads a service: systemctl, or rc-service under OpenRC.
pub fn service_command(unit: &str, verb: &str, openrc: bool) -> (Tool, Vec<String>) {
    if openrc {
        (Tool::RcService, vec![unit.into(), verb.into()])
    } else {
        (Tool::Systemctl, vec![verb.into(), unit.into()])
    }
}

/// `systemctl enable --now UNIT`, as printed and as run.
pub fn enable_command(unit: &str) -> (Tool, Vec<String>) {
    (Tool::Systemctl, args(&["enable", "--now", unit]))
}

/// `systemctl daemon-reload`, as printed and as run.
pub fn daemon_reload_command() -> (Tool, Vec<String>) {
    (Tool::Systemctl, args(&["daemon-reload"]))
}

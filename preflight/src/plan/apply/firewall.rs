//! Apply: firewalld rules: add, and remove with the journaled arguments.

use super::args;
use crate::plan::{
    exec::Executor,
    journal::{EntryState, Undo},
    runner::{Runner, Tool},
};

/// `Action::Firewall`: `firewall-cmd` with the step's arguments, the removing arguments journaled.
pub(in crate::plan) fn firewall(
    ex: &mut Executor<'_>,
    id: &str,
    add_args: &[String],
    remove_args: &[String],
) -> anyhow::Result<Option<String>> {
    let seq = ex.journal.intent(
        id,
        Undo::Firewall {
            remove_args: remove_args.to_vec(),
        },
    )?;
    ex.runner.check(Tool::FirewallCmd, add_args)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Undo::Firewall`: the journaled removing arguments, then `firewall-cmd --reload`.
pub(in crate::plan) fn undo_firewall(
    runner: &Runner,
    remove_args: &[String],
) -> anyhow::Result<Option<String>> {
    Ok({
        runner.check(Tool::FirewallCmd, remove_args)?;
        runner.check(Tool::FirewallCmd, &args(&["--reload"]))?;
        Some(format!("firewall-cmd {}", remove_args.join(" ")))
    })
}

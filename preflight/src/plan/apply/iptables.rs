//! Apply: flannel's iptables chains: removed after `iptables-save` of their tables, restored with
//! `iptables-restore`.

use crate::host::HostRoot;
use crate::plan::{
    exec::Executor,
    journal::{EntryState, Undo},
    runner::{Runner, Tool},
};

/// `Action::FlannelIptables`: `iptables-save` of the tables that hold flannel's chains into the
/// journal, then the chains and the rules that jump to them removed; nothing to do without them.
pub(in crate::plan) fn flannel_iptables(
    ex: &mut Executor<'_>,
    id: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(why) = ex.runner.unavailable(Tool::IptablesSave) {
        return Ok(Some(format!(
            "not checked: {why}; if flannel's chains are there, remove them by hand \
                         (iptables -t nat -X FLANNEL-POSTRTG, iptables -X FLANNEL-FWD, after \
                         deleting the rules that jump to them)"
        )));
    }
    let save = ex.runner.check(Tool::IptablesSave, &[])?.stdout;
    let tables = crate::plan::iptables::parse(&save)
        .map_err(|(line, why)| anyhow::anyhow!("iptables-save output, line {line}: {why}"))?;
    let flannel = crate::plan::iptables::flannel_tables(&tables);
    if flannel.is_empty() {
        return Ok(Some("no FLANNEL-* chains".into()));
    }
    // Only the tables flannel is in: the restore replaces exactly those.
    let snapshot: String = flannel.iter().map(|t| t.text.as_str()).collect();
    let seq = ex.journal.next_seq();
    let backup = ex.journal.backup_path(seq, "iptables-flannel.rules")?;
    ex.host.write_new(&backup, snapshot.as_bytes(), 0o600)?;
    let seq = ex.journal.intent(id, Undo::Iptables { snapshot: backup })?;
    for a in crate::plan::iptables::removal(&tables) {
        ex.runner.check(Tool::Iptables, &a)?;
    }
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Undo::Iptables`: `iptables-restore` of the saved tables.
pub(in crate::plan) fn undo_iptables(
    host: &HostRoot,
    runner: &Runner,
    snapshot: &str,
) -> anyhow::Result<Option<String>> {
    Ok({
        // Flush-and-load of the saved tables: idempotent, so a re-run rollback is safe.
        let file = host.resolve(snapshot)?.display().to_string();
        runner.check(Tool::IptablesRestore, &[file])?;
        Some("flannel's iptables chains restored".into())
    })
}

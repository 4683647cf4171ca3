//! Apply: the bpffs mount: `mount --make-shared /sys/fs/bpf`, and `--make-private` again.

use super::args;
use crate::plan::{
    exec::Executor,
    journal::{EntryState, Undo},
    node::{self},
    runner::{Runner, Tool},
};

/// `Action::MakeShared`: `mount --make-shared /sys/fs/bpf`; nothing to do when it is shared.
pub(in crate::plan) fn make_shared(
    ex: &mut Executor<'_>,
    id: &str,
) -> anyhow::Result<Option<String>> {
    if let node::MountState::Mounted { shared: true, .. } = node::bpffs_state(ex.host) {
        return Ok(Some("/sys/fs/bpf is already shared".into()));
    }
    let seq = ex.journal.intent(
        id,
        Undo::MadeShared {
            path: node::BPFFS.into(),
        },
    )?;
    ex.runner.check(Tool::Mount, &make_shared_command().1)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Undo::MadeShared`: `mount --make-private` again.
pub(in crate::plan) fn undo_made_shared(
    runner: &Runner,
    path: &str,
) -> anyhow::Result<Option<String>> {
    Ok({
        runner.check(Tool::Mount, &args(&["--make-private", path]))?;
        Some(format!("{path} private again"))
    })
}

/// `mount --make-shared /sys/fs/bpf`, as printed and as run.
pub fn make_shared_command() -> (Tool, Vec<String>) {
    (Tool::Mount, args(&["--make-shared", node::BPFFS]))
}

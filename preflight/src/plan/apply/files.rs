//! Apply: files on the node: write (atomically, the prior content journaled), move aside (into the
//! journal's backup dir, or beside a bpffs pin), guard what k3s and the agent will write; and
//! restoring each.
use std::path::Path;

use anyhow::bail;

use crate::host::HostRoot;
use crate::plan::{
    Step,
    exec::Executor,
    fault, fsops,
    journal::{EntryState, Undo},
    node::{self, LinkState},
};

/// `Action::WriteFile`: the file written atomically with its mode, its prior content (or absence)
/// journaled first; nothing to do when it already has this content and mode.
pub(in crate::plan) fn write_file(
    ex: &mut Executor<'_>,
    id: &str,
    path: &str,
    content: &str,
    mode: &u32,
) -> anyhow::Result<Option<String>> {
    let path = node::resolve(ex.host, path)?;
    if let Ok(Some(m)) = ex.host.lstat(&path)
        && m.is_file()
        && m.mode == *mode
        && fsops::read_file(ex.host, &path).is_ok_and(|b| b == content.as_bytes())
    {
        return Ok(Some(format!("{path} already has this content")));
    }
    ex.ensure_parents(id, &path, true)?;
    let seq = ex.journal.next_seq();
    let backup = ex.journal.backup_path(seq, &file_name(&path))?;
    let prior = fsops::capture(ex.host, &path, &backup)?;
    let owner = match &prior {
        fsops::Prior::File { uid, gid, .. } => Some((*uid, *gid)),
        _ => None,
    };
    let seq = ex.journal.intent(
        id,
        Undo::Path {
            path: path.to_string(),
            prior,
            after: Some(fsops::sha256_hex(content.as_bytes())),
        },
    )?;
    fsops::write_atomic(ex.host, &path, content.as_bytes(), *mode, owner)?;
    fault::point(&format!("after write of {path}"))?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::MoveAside`: the file moved into the journal's backup dir (a bpffs pin: beside it),
/// journaled before it moves.
pub(in crate::plan) fn move_aside(
    ex: &mut Executor<'_>,
    step: &Step,
    id: &str,
    path: &str,
) -> anyhow::Result<Option<String>> {
    if let crate::plan::StepState::Done(why) = &step.state {
        return Ok(Some(why.clone()));
    }
    let path = node::resolve(ex.host, path)?;
    if !ex.host.lexists(&path) {
        return Ok(Some(format!("{path} is not there")));
    }
    let seq = ex.journal.next_seq();
    let backup = if on_bpffs(ex.host, &path) {
        // A pin cannot leave its bpffs: rename it next to itex.
        Path::new(&path)
            .with_file_name(format!(".preflight-moved-{}", file_name(&path)))
            .display()
            .to_string()
    } else {
        ex.journal.backup_path(seq, &file_name(&path))?
    };
    let seq = ex.journal.intent(
        id,
        Undo::Moved {
            path: path.to_string(),
            backup: backup.to_string(),
        },
    )?;
    fsops::move_path(ex.host, &path, &backup)?;
    fault::point(&format!("after moving {path}"))?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::Guard`: what each path and link is now, journaled so rollback can return what k3s
/// and the agent write later; the node itself is not changed.
pub(in crate::plan) fn guard(
    ex: &mut Executor<'_>,
    id: &str,
    paths: &[String],
    links: &[String],
) -> anyhow::Result<Option<String>> {
    for path in paths {
        let path = node::resolve(ex.host, path)?;
        ex.ensure_parents(id, &path, false)?;
        let seq = ex.journal.next_seq();
        let backup = ex.journal.backup_path(seq, &file_name(&path))?;
        let prior = fsops::capture(ex.host, &path, &backup)?;
        let seq = ex.journal.intent(
            id,
            Undo::Path {
                path,
                prior,
                after: None,
            },
        )?;
        ex.journal.set_state(seq, EntryState::Done)?;
    }
    for name in links {
        let prior = match node::link_state(ex.runner, name) {
            LinkState::Absent => None,
            LinkState::Present(spec) => Some(spec),
            LinkState::Unknown(why) => bail!("could not query link {name}: {why}"),
        };
        let seq = ex.journal.intent(
            id,
            Undo::Link {
                name: name.clone(),
                prior,
            },
        )?;
        ex.journal.set_state(seq, EntryState::Done)?;
    }
    Ok(None)
}

/// `Undo::Path`: the prior content back, or the file gone again; a version the user edited after
/// preflight wrote it is kept aside first.
pub(in crate::plan) fn undo_path(
    host: &HostRoot,
    path: &str,
    prior: &fsops::Prior,
    after: &Option<String>,
    kept: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    Ok({
        if let Some(copy) = fsops::keep_if_edited(host, path, prior, after.as_deref())? {
            kept.push(format!(
                "{path} was edited after preflight wrote it: your version is kept as {copy}"
            ));
        }
        fsops::restore(host, path, prior)?;
        Some(format!("{path} restored ({})", prior_label(prior)))
    })
}

/// `Undo::Moved`: the file moved back from the backup dir, content and mode unchanged.
pub(in crate::plan) fn undo_moved(
    host: &HostRoot,
    path: &str,
    backup: &str,
) -> anyhow::Result<Option<String>> {
    Ok({
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
    })
}

pub(in crate::plan) fn file_name(node_path: &str) -> String {
    Path::new(node_path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
}

pub(in crate::plan) fn on_bpffs(host: &HostRoot, path: &str) -> bool {
    host.fs_magic(path) == Some(crate::host::mounts::BPF_FS_MAGIC)
}

pub(in crate::plan) fn prior_label(p: &fsops::Prior) -> &'static str {
    match p {
        fsops::Prior::Absent => "absent",
        fsops::Prior::File { .. } => "content, mode, owner",
        fsops::Prior::Symlink { .. } => "symlink",
        fsops::Prior::Dir { .. } => "directory",
    }
}

//! File system primitives with exact undo: capture what a path is (absent, a file with its
//! content, mode and owner, a symlink, a directory), restore it byte for byte, write atomically,
//! move aside. Every restore is idempotent so a rollback can be re-run after a crash.
use std::{
    fs,
    io::Write,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::fault;

/// What a path was before a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prior {
    Absent,
    /// A regular file; its bytes are in `backup` (a file in the journal's backup dir).
    File {
        backup: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// Record what `path` is now; a regular file's bytes are copied to `backup` and fsynced first.
pub fn capture(path: &Path, backup: &Path) -> anyhow::Result<Prior> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Prior::Absent),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        return Ok(Prior::Symlink {
            target: fs::read_link(path).with_context(|| format!("reading {}", path.display()))?,
        });
    }
    if ft.is_dir() {
        return Ok(Prior::Dir {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    if !ft.is_file() {
        bail!(
            "{}: not a regular file, symlink or directory",
            path.display()
        );
    }
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    write_durable(backup, &bytes, 0o600)?;
    Ok(Prior::File {
        backup: backup.to_path_buf(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Put `path` back to `prior`. Idempotent; also removes a temp file an interrupted write left.
pub fn restore(path: &Path, prior: &Prior) -> anyhow::Result<()> {
    remove_if_present(&tmp_sibling(path))?;
    let now = fs::symlink_metadata(path).ok();
    match prior {
        Prior::Absent => match now {
            None => Ok(()),
            Some(m) if m.is_dir() => fs::remove_dir(path).with_context(|| {
                format!(
                    "removing directory {} (was absent before; something else put files in it)",
                    path.display()
                )
            }),
            Some(_) => {
                fs::remove_file(path).with_context(|| format!("removing {}", path.display()))
            }
        },
        Prior::File {
            backup,
            mode,
            uid,
            gid,
        } => {
            let want = fs::read(backup).with_context(|| {
                format!("reading backup {} of {}", backup.display(), path.display())
            })?;
            if let Some(m) = &now
                && m.is_file()
                && m.mode() & 0o7777 == *mode
                && (m.uid(), m.gid()) == (*uid, *gid)
                && fs::read(path).is_ok_and(|b| b == want)
            {
                return Ok(());
            }
            if now.as_ref().is_some_and(|m| m.is_dir()) {
                fs::remove_dir_all(path)?;
            }
            write_atomic(path, &want, *mode, Some((*uid, *gid)))
        }
        Prior::Symlink { target } => {
            if fs::read_link(path).is_ok_and(|t| t == *target) {
                return Ok(());
            }
            let tmp = tmp_sibling(path);
            symlink(target, &tmp).with_context(|| format!("creating {}", tmp.display()))?;
            if now.as_ref().is_some_and(|m| m.is_dir()) {
                fs::remove_dir_all(path)?;
            }
            fs::rename(&tmp, path).with_context(|| format!("restoring {}", path.display()))?;
            sync_parent(path)
        }
        Prior::Dir { mode, uid, gid } => {
            match now {
                Some(m) if m.is_dir() => {}
                Some(_) => fs::remove_file(path)?,
                None => {
                    fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?
                }
            }
            fs::set_permissions(path, fs::Permissions::from_mode(*mode))?;
            std::os::unix::fs::lchown(path, Some(*uid), Some(*gid))?;
            Ok(())
        }
    }
}

/// sha256 (hex) of a regular file's bytes; None for anything else or when unreadable.
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let m = fs::symlink_metadata(path).ok()?;
    if !m.is_file() {
        return None;
    }
    Some(format!("{:x}", Sha256::digest(fs::read(path).ok()?)))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Where rollback keeps files somebody edited after preflight wrote them (a node path): outside
/// every directory a rollback may remove, and where no config loader looks.
pub const EDITED_DIR: &str = "/var/lib/preflight/edited";

/// Before a rollback overwrites the node path `path` under `root`: when it is a regular file
/// that is neither what preflight left (`after`, a sha256) nor what was there before (`prior`),
/// somebody edited it since. Copy it (mode and owner kept) to
/// `<root>/var/lib/preflight/edited/<unix time>/<path>` and return that host path. A copy with
/// the same bytes from an interrupted earlier rollback is reused, so re-runs make no duplicates.
pub fn keep_if_edited(
    root: &Path,
    path: &str,
    prior: &Prior,
    after: Option<&str>,
) -> anyhow::Result<Option<PathBuf>> {
    let Some(after) = after else { return Ok(None) };
    let rel = path.trim_start_matches('/');
    let host = root.join(rel);
    let Some(now) = file_sha256(&host) else {
        return Ok(None);
    };
    if now == after {
        return Ok(None);
    }
    if let Prior::File { backup, .. } = prior
        && fs::read(backup).is_ok_and(|b| sha256_hex(&b) == now)
    {
        return Ok(None);
    }
    let edited = root.join(EDITED_DIR.trim_start_matches('/'));
    if let Ok(rd) = fs::read_dir(&edited) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path().join(rel);
            if file_sha256(&p).as_deref() == Some(now.as_str()) {
                return Ok(Some(p));
            }
        }
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kept = edited.join(ts.to_string()).join(rel);
    if let Some(dir) = kept.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = tmp_sibling(&kept);
    remove_if_present(&tmp)?;
    copy_tree(&host, &tmp).with_context(|| format!("keeping a copy of {}", host.display()))?;
    fs::rename(&tmp, &kept).with_context(|| format!("creating {}", kept.display()))?;
    sync_parent(&kept)?;
    Ok(Some(kept))
}

/// The temp file a write to `path` goes through: fixed, so a rollback knows what to clean.
pub fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.preflight-tmp"))
}

/// Write through a temp sibling, fsync, rename, fsync the directory: readers see the old or the
/// new file, never half of one.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let tmp = tmp_sibling(path);
    write_durable(&tmp, bytes, mode)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", tmp.display()))?;
    }
    fault::point(&format!("inside write of {}", path.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    sync_parent(path)
}

fn write_durable(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", path.display()))?;
    Ok(())
}

pub fn sync_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", parent.display()))?;
    }
    Ok(())
}

pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path)?,
        Ok(_) => fs::remove_file(path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    Ok(())
}

pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Move `from` to `to`: a rename when both are on one file system, otherwise a copy (to a temp
/// name, then renamed, so `to` only ever exists complete) followed by removing `from`.
pub fn move_path(from: &Path, to: &Path) -> anyhow::Result<()> {
    match fs::rename(from, to) {
        Ok(()) => {
            sync_parent(to)?;
            sync_parent(from)
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = tmp_sibling(to);
            remove_if_present(&tmp)?;
            copy_tree(from, &tmp)?;
            fs::rename(&tmp, to)?;
            sync_parent(to)?;
            fault::point(&format!("inside move of {}", from.display()))?;
            remove_if_present(from)?;
            sync_parent(from)
        }
        Err(e) => Err(e).with_context(|| format!("moving {} to {}", from.display(), to.display())),
    }
}

/// Copy a file, symlink or directory tree keeping modes, owners and link targets.
pub fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(from).with_context(|| format!("reading {}", from.display()))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        symlink(fs::read_link(from)?, to)?;
    } else if ft.is_dir() {
        fs::create_dir(to).with_context(|| format!("creating {}", to.display()))?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    } else if ft.is_file() {
        let bytes = fs::read(from)?;
        write_durable(to, &bytes, meta.mode() & 0o7777)?;
    } else {
        bail!("{}: cannot copy a special file", from.display());
    }
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_and_restore_round_trip_every_kind() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        fs::write(&file, b"old\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let prior = capture(&file, &d.path().join("f.bak")).unwrap();
        write_atomic(&file, b"new", 0o600, None).unwrap();
        restore(&file, &prior).unwrap();
        restore(&file, &prior).unwrap(); // idempotent
        assert_eq!(fs::read(&file).unwrap(), b"old\n");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);

        let link = d.path().join("l");
        symlink("f", &link).unwrap();
        let prior = capture(&link, &d.path().join("l.bak")).unwrap();
        fs::remove_file(&link).unwrap();
        fs::write(&link, b"x").unwrap();
        restore(&link, &prior).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("f"));

        let absent = d.path().join("new");
        let prior = capture(&absent, &d.path().join("n.bak")).unwrap();
        assert_eq!(prior, Prior::Absent);
        fs::write(tmp_sibling(&absent), b"half").unwrap();
        fs::write(&absent, b"x").unwrap();
        restore(&absent, &prior).unwrap();
        assert!(!exists(&absent) && !exists(&tmp_sibling(&absent)));
    }

    #[test]
    fn copy_tree_keeps_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("a", src.join("l")).unwrap();
        copy_tree(&src, &d.path().join("dst")).unwrap();
        let dst = d.path().join("dst");
        assert_eq!(fs::metadata(dst.join("a")).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("a"));
    }
}

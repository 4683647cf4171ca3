//! File system primitives with exact undo: capture what a node path is (absent, a file with
//! its content, mode and owner, a symlink, a directory), restore it byte for byte, write
//! atomically, move aside. Every path is a node path and every access goes through the
//! root-confined [`HostRoot`] API; every restore is idempotent so a rollback can be re-run
//! after a crash.
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::fault;
use crate::host::{HostRoot, Kind};

pub use crate::host::write::tmp_sibling;

/// What a path was before a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Prior {
    Absent,
    /// A regular file; its bytes are in `backup` (a node path in the journal's backup dir).
    File {
        backup: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: std::path::PathBuf,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// Record what `path` is now; a regular file's bytes are copied to the new file `backup`
/// (fsynced) first.
pub fn capture(host: &HostRoot, path: &str, backup: &str) -> anyhow::Result<Prior> {
    let Some(meta) = host.lstat(path)? else {
        return Ok(Prior::Absent);
    };
    match meta.kind {
        Kind::Symlink => Ok(Prior::Symlink {
            target: host.read_link(path)?,
        }),
        Kind::Dir => Ok(Prior::Dir {
            mode: meta.mode,
            uid: meta.uid,
            gid: meta.gid,
        }),
        Kind::File => {
            let bytes = read_file(host, path)?;
            host.write_new(backup, &bytes, 0o600)?;
            Ok(Prior::File {
                backup: backup.to_string(),
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
            })
        }
        Kind::Special => bail!(
            "{}: not a regular file, symlink or directory",
            host.display(path)
        ),
    }
}

/// A regular file's bytes, a final symlink not followed.
pub fn read_file(host: &HostRoot, path: &str) -> anyhow::Result<Vec<u8>> {
    let file = host.open_regular(path, false, rustix::fs::OFlags::RDONLY)?;
    Ok(crate::host::read_capped(
        file,
        crate::host::MAX_FILE_BYTES,
        || host.display(path),
    )?)
}

/// Put `path` back to `prior`. Idempotent; also removes a temp file an interrupted write left.
pub fn restore(host: &HostRoot, path: &str, prior: &Prior) -> anyhow::Result<()> {
    host.remove_if_present(&tmp_sibling(path))?;
    let now = host.lstat(path)?;
    match prior {
        Prior::Absent => match now {
            None => Ok(()),
            Some(m) if m.is_dir() => host.remove_dir(path).with_context(|| {
                "the directory was absent before; something else put files in it".to_string()
            }),
            Some(_) => Ok(host.remove_file(path)?),
        },
        Prior::File {
            backup,
            mode,
            uid,
            gid,
        } => {
            let want =
                read_file(host, backup).with_context(|| format!("reading the backup of {path}"))?;
            if let Some(m) = &now
                && m.is_file()
                && m.mode == *mode
                && (m.uid, m.gid) == (*uid, *gid)
                && read_file(host, path).is_ok_and(|b| b == want)
            {
                return Ok(());
            }
            if now.as_ref().is_some_and(|m| m.is_dir()) {
                host.remove_if_present(path)?;
            }
            write_atomic(host, path, &want, *mode, Some((*uid, *gid)))
        }
        Prior::Symlink { target } => {
            if host.read_link(path).is_ok_and(|t| t == *target) {
                return Ok(());
            }
            let tmp = tmp_sibling(path);
            host.symlink(target, &tmp)?;
            if now.as_ref().is_some_and(|m| m.is_dir()) {
                host.remove_if_present(path)?;
            }
            host.rename(&tmp, path)?;
            Ok(())
        }
        Prior::Dir { mode, uid, gid } => {
            match now {
                Some(m) if m.is_dir() => {}
                Some(_) => host.remove_file(path)?,
                None => host.create_dir(path, *mode)?,
            }
            host.chmod(path, *mode)?;
            host.lchown(path, *uid, *gid)?;
            Ok(())
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// Where rollback keeps files somebody edited after preflight wrote them (a node path): outside
/// every directory a rollback may remove, and where no config loader looks.
pub const EDITED_DIR: &str = "/var/lib/preflight/edited";

/// Before a rollback overwrites the node path `path`: when it is a regular file that is
/// neither what preflight left (`after`, a sha256) nor what was there before (`prior`),
/// somebody edited it since. Copy it (mode and owner kept) to
/// `/var/lib/preflight/edited/<unix time>/<path>` and return that node path. A copy with the
/// same bytes from an interrupted earlier rollback is reused, so re-runs make no duplicates.
pub fn keep_if_edited(
    host: &HostRoot,
    path: &str,
    prior: &Prior,
    after: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let Some(after) = after else { return Ok(None) };
    let rel = path.trim_start_matches('/');
    let Some(now) = host.file_sha256(path) else {
        return Ok(None);
    };
    if now == after {
        return Ok(None);
    }
    if let Prior::File { backup, .. } = prior
        && host.file_sha256(backup).as_deref() == Some(now.as_str())
    {
        return Ok(None);
    }
    for stamp in host.read_dir_if_present(EDITED_DIR)? {
        let p = format!("{EDITED_DIR}/{stamp}/{rel}");
        if host.file_sha256(&p).as_deref() == Some(now.as_str()) {
            return Ok(Some(p));
        }
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kept = format!("{EDITED_DIR}/{ts}/{rel}");
    if let Some(dir) = std::path::Path::new(&kept).parent() {
        host.create_dir_all(&dir.display().to_string(), 0o700)?;
    }
    let tmp = tmp_sibling(&kept);
    host.remove_if_present(&tmp)?;
    host.copy_tree(path, &tmp)
        .with_context(|| format!("keeping a copy of {}", host.display(path)))?;
    host.rename(&tmp, &kept)?;
    Ok(Some(kept))
}

/// Write through a temp sibling, fsync, rename, fsync the directory (see
/// [`HostRoot::write_atomic`]); the fault hook sits between the temp file and the rename.
pub fn write_atomic(
    host: &HostRoot,
    path: &str,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    host.write_atomic(path, bytes, mode, owner, &mut || {
        fault::point(&format!("inside write of {}", host.display(path)))
    })
}

/// Move `from` to `to` (node paths): a rename when both are on one file system, otherwise a
/// copy (to a temp name, then renamed, so `to` only ever exists complete) followed by
/// removing `from`.
pub fn move_path(host: &HostRoot, from: &str, to: &str) -> anyhow::Result<()> {
    match host.rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = tmp_sibling(to);
            host.remove_if_present(&tmp)?;
            host.copy_tree(from, &tmp)?;
            host.rename(&tmp, to)?;
            fault::point(&format!("inside move of {}", host.display(from)))?;
            host.remove_if_present(from)?;
            host.sync_parent(from)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::{MetadataExt, PermissionsExt, symlink},
        path::Path,
    };

    use super::*;

    #[test]
    fn capture_and_restore_round_trip_every_kind() {
        let d = tempfile::tempdir().unwrap();
        let host = HostRoot::new(d.path());
        let file = d.path().join("f");
        fs::write(&file, b"old\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let prior = capture(&host, "/f", "/f.bak").unwrap();
        write_atomic(&host, "/f", b"new", 0o600, None).unwrap();
        restore(&host, "/f", &prior).unwrap();
        restore(&host, "/f", &prior).unwrap(); // idempotent
        assert_eq!(fs::read(&file).unwrap(), b"old\n");
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);

        let link = d.path().join("l");
        symlink("f", &link).unwrap();
        let prior = capture(&host, "/l", "/l.bak").unwrap();
        fs::remove_file(&link).unwrap();
        fs::write(&link, b"x").unwrap();
        restore(&host, "/l", &prior).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("f"));

        let prior = capture(&host, "/new", "/n.bak").unwrap();
        assert_eq!(prior, Prior::Absent);
        fs::write(d.path().join(".new.preflight-tmp"), b"half").unwrap();
        fs::write(d.path().join("new"), b"x").unwrap();
        restore(&host, "/new", &prior).unwrap();
        assert!(!d.path().join("new").exists());
        assert!(!d.path().join(".new.preflight-tmp").exists());
    }

    #[test]
    fn copy_tree_keeps_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"a").unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("a", src.join("l")).unwrap();
        HostRoot::new(d.path()).copy_tree("/src", "/dst").unwrap();
        let dst = d.path().join("dst");
        assert_eq!(fs::metadata(dst.join("a")).unwrap().mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("a"));
    }

    /// A backup never replaces a file that is there: `O_EXCL`.
    #[test]
    fn a_backup_name_that_exists_is_never_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let host = HostRoot::new(d.path());
        fs::write(d.path().join("f"), b"node file").unwrap();
        fs::write(d.path().join("bak"), b"someone's file").unwrap();
        assert!(capture(&host, "/f", "/bak").is_err());
        assert_eq!(fs::read(d.path().join("bak")).unwrap(), b"someone's file");
    }
}

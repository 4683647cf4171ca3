//! Writes to the node through the root-confined API: each acts on a name inside a parent
//! directory that was resolved inside the root and opened as an fd, with `*at` calls that
//! never follow a final symlink (a symlink is replaced or removed itself, never written
//! through). Files are written to a temp name and renamed inside that one directory fd.
use std::{
    ffi::{OsStr, OsString},
    io::Write,
    os::fd::OwnedFd,
    path::Path,
};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Uid};

use super::{HostRoot, Kind, MAX_FILE_BYTES, ReadError, confined};

/// Deepest directory tree removed or copied (Cilium's state dirs are 3 levels deep).
const MAX_TREE_DEPTH: usize = 32;

/// A write that failed: what, where (the node path as on disk), why.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct WriteError {
    pub op: &'static str,
    pub path: String,
    pub source: std::io::Error,
}

impl WriteError {
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
    pub fn is_not_found(&self) -> bool {
        self.raw_os_error() == Some(libc::ENOENT)
    }
}

fn io(e: rustix::io::Errno) -> std::io::Error {
    confined::to_io(e)
}

/// The temp name a write to `leaf` goes through: fixed, so a rollback knows what to clean.
pub fn tmp_name(leaf: &OsStr) -> OsString {
    let mut n = OsString::from(".");
    n.push(leaf);
    n.push(".preflight-tmp");
    n
}

/// The node path of the temp file a write to `path` goes through.
pub fn tmp_sibling(path: &str) -> String {
    let p = Path::new(path);
    let leaf = p.file_name().unwrap_or_default();
    p.with_file_name(tmp_name(leaf)).display().to_string()
}

impl HostRoot {
    fn failed(&self, op: &'static str, path: &str) -> impl Fn(std::io::Error) -> WriteError {
        let path = self.display(path);
        move |source| WriteError {
            op,
            path: path.clone(),
            source,
        }
    }

    /// The resolved parent directory of `path` and its last name.
    fn parent(&self, op: &'static str, path: &str) -> Result<(OwnedFd, OsString), WriteError> {
        let fail = self.failed(op, path);
        let root = self.dir().map_err(&fail)?;
        confined::parent_of(root, Path::new(path)).map_err(fail)
    }

    /// `mkdir` of one directory (its parent must exist).
    pub fn create_dir(&self, path: &str, mode: u32) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("creating directory", path)?;
        rfs::mkdirat(&dir, leaf.as_os_str(), Mode::from_raw_mode(mode))
            .map_err(|e| self.failed("creating directory", path)(io(e)))
    }

    /// Creates `path` and every missing directory above it; returns the ones it created
    /// (node paths, outermost first). Symlinks on the way are followed inside the root, a
    /// dangling one included: its target is created (as `mkdir -p` through a link would).
    pub fn create_dir_all(&self, path: &str, mode: u32) -> Result<Vec<String>, WriteError> {
        let target = self.canonical(path).map_err(|e| {
            self.failed("creating directory", path)(std::io::Error::other(e.to_string()))
        })?;
        let mut created = Vec::new();
        let mut at = String::new();
        for part in confined::parts(Path::new(&target)) {
            at.push('/');
            at.push_str(&part.to_string_lossy());
            match self.lstat(&at) {
                Ok(Some(m)) if m.is_dir() => continue,
                Ok(Some(_)) => {
                    return Err(self.failed("creating directory", &at)(
                        std::io::Error::from_raw_os_error(libc::ENOTDIR),
                    ));
                }
                _ => {}
            }
            self.create_dir(&at, mode)?;
            created.push(at.clone());
        }
        Ok(created)
    }

    /// A new file (`O_EXCL`: an existing file or symlink is never replaced or followed),
    /// written and fsynced.
    pub fn write_new(&self, path: &str, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("creating", path)?;
        write_file_at(&dir, &leaf, bytes, mode, None).map_err(self.failed("writing", path))?;
        rfs::fsync(&dir).map_err(|e| self.failed("fsync of the directory of", path)(io(e)))
    }

    /// Replaces `path` atomically: a temp file in the same (resolved) directory, fsynced,
    /// then renamed over the name; readers see the old or the new file, never half of one.
    /// `between` runs after the temp file is complete and before the rename (test hooks).
    pub fn write_atomic(
        &self,
        path: &str,
        bytes: &[u8],
        mode: u32,
        owner: Option<(u32, u32)>,
        between: &mut dyn FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (dir, leaf) = self.parent("writing", path)?;
        let tmp = tmp_name(&leaf);
        match rfs::unlinkat(&dir, tmp.as_os_str(), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(self.failed("removing the temp file of", path)(io(e)).into()),
        }
        write_file_at(&dir, &tmp, bytes, mode, owner).map_err(self.failed("writing", path))?;
        between()?;
        rfs::renameat(&dir, tmp.as_os_str(), &dir, leaf.as_os_str())
            .map_err(|e| self.failed("renaming into", path)(io(e)))?;
        rfs::fsync(&dir).map_err(|e| self.failed("fsync of the directory of", path)(io(e)))?;
        Ok(())
    }

    /// Removes a file or symlink (never what a symlink points to).
    pub fn remove_file(&self, path: &str) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("removing", path)?;
        rfs::unlinkat(&dir, leaf.as_os_str(), AtFlags::empty())
            .map_err(|e| self.failed("removing", path)(io(e)))
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &str) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("removing directory", path)?;
        rfs::unlinkat(&dir, leaf.as_os_str(), AtFlags::REMOVEDIR)
            .map_err(|e| self.failed("removing directory", path)(io(e)))
    }

    /// Removes whatever is at `path`, a directory with everything in it; symlinks inside are
    /// removed, never followed. Nothing there is not an error.
    pub fn remove_if_present(&self, path: &str) -> Result<(), WriteError> {
        let fail = self.failed("removing", path);
        let (dir, leaf) = match self.parent("removing", path) {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_at(&dir, &leaf, 0).map_err(fail)
    }

    /// A symlink at `path` with `target` as its text (where it points is not looked at).
    pub fn symlink(&self, target: &Path, path: &str) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("creating symlink", path)?;
        rfs::symlinkat(target, &dir, leaf.as_os_str())
            .map_err(|e| self.failed("creating symlink", path)(io(e)))
    }

    /// `rename(2)` inside the root. EXDEV (two file systems) comes back as it is: the caller
    /// decides whether to copy.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), WriteError> {
        let (fdir, fleaf) = self.parent("moving", from)?;
        let (tdir, tleaf) = self.parent("moving to", to)?;
        rfs::renameat(&fdir, fleaf.as_os_str(), &tdir, tleaf.as_os_str())
            .map_err(|e| self.failed("moving", from)(io(e)))?;
        rfs::fsync(&tdir).map_err(|e| self.failed("fsync of the directory of", to)(io(e)))?;
        rfs::fsync(&fdir).map_err(|e| self.failed("fsync of the directory of", from)(io(e)))
    }

    /// Permission bits of a file or directory (a symlink is refused, not followed).
    pub fn chmod(&self, path: &str, mode: u32) -> Result<(), WriteError> {
        let fail = self.failed("chmod", path);
        let (dir, leaf) = self.parent("chmod", path)?;
        let fd = rfs::openat(
            &dir,
            leaf.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(io(e)))?;
        match confined::kind(&fd).map_err(&fail)? {
            FileType::RegularFile | FileType::Directory => {}
            _ => {
                return Err(fail(std::io::Error::other(
                    "not a regular file or directory",
                )));
            }
        }
        let fd = confined::reopen(&fd, OFlags::RDONLY).map_err(&fail)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fail(io(e)))
    }

    /// Owner of `path` itself (lchown: a symlink's own owner).
    pub fn lchown(&self, path: &str, uid: u32, gid: u32) -> Result<(), WriteError> {
        let (dir, leaf) = self.parent("chown", path)?;
        rfs::chownat(
            &dir,
            leaf.as_os_str(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.failed("chown", path)(io(e)))
    }

    /// fsync of the directory holding `path`.
    pub fn sync_parent(&self, path: &str) -> Result<(), WriteError> {
        let (dir, _) = self.parent("fsync of the directory of", path)?;
        rfs::fsync(&dir).map_err(|e| self.failed("fsync of the directory of", path)(io(e)))
    }

    /// Writes into an existing regular file in place (a sysctl under `/proc/sys`): links
    /// followed inside the root only, no create, no truncate; a file with other hard links
    /// is refused (it could be a file outside the root).
    pub fn write_existing(&self, path: &str, bytes: &[u8]) -> Result<(), ReadError> {
        let mut f = self.open_for_write(path)?;
        f.write_all(bytes)
            .map_err(|e| ReadError::Io(self.display(path), e.to_string()))
    }

    /// Opens an existing regular file for writing, as [`write_existing`](Self::write_existing).
    pub fn open_for_write(&self, path: &str) -> Result<std::fs::File, ReadError> {
        let f = self.open_regular(path, true, OFlags::WRONLY)?;
        let links = f
            .metadata()
            .map(|m| std::os::unix::fs::MetadataExt::nlink(&m))
            .unwrap_or(1);
        if links > 1 {
            return Err(ReadError::Io(
                self.display(path),
                format!("has {links} hard links; not written through"),
            ));
        }
        Ok(f)
    }

    /// Copies a file, symlink or directory tree from `from` to the new `to`, keeping modes,
    /// owners and link targets; both inside the root.
    pub fn copy_tree(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.copy_tree_at(from, to, 0)
    }

    fn copy_tree_at(&self, from: &str, to: &str, depth: usize) -> anyhow::Result<()> {
        if depth > MAX_TREE_DEPTH {
            anyhow::bail!(
                "{}: more than {MAX_TREE_DEPTH} levels of directories",
                self.display(from)
            );
        }
        let meta = self
            .lstat(from)?
            .ok_or_else(|| ReadError::NotFound(self.display(from)))?;
        match meta.kind {
            Kind::Symlink => self.symlink(&self.read_link(from)?, to)?,
            Kind::Dir => {
                self.create_dir(to, 0o700)?;
                for name in self.read_dir(from)? {
                    self.copy_tree_at(
                        &format!("{from}/{name}"),
                        &format!("{to}/{name}"),
                        depth + 1,
                    )?;
                }
                self.chmod(to, meta.mode)?;
            }
            Kind::File => {
                let file = self.open_regular(from, false, OFlags::RDONLY)?;
                let bytes = super::read_capped(file, MAX_FILE_BYTES, || self.display(from))?;
                self.write_new(to, &bytes, meta.mode)?;
            }
            Kind::Special => anyhow::bail!("{}: cannot copy a special file", self.display(from)),
        }
        self.lchown(to, meta.uid, meta.gid)?;
        Ok(())
    }
}

/// Creates `name` in `dir` (`O_EXCL | O_NOFOLLOW`), writes, sets mode and owner, fsyncs.
fn write_file_at(
    dir: &OwnedFd,
    name: &OsStr,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> std::io::Result<()> {
    let fd = rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    // After the write, so a umask or a restrictive create mode cannot get in the way.
    rfs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(io)?;
    if let Some((uid, gid)) = owner {
        rfs::fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(io)?;
    }
    f.sync_all()
}

/// Removes `name` in `dir`: a directory with its contents (depth-bounded), anything else
/// unlinked. Symlinks are never followed.
fn remove_at(dir: &OwnedFd, name: &OsStr, depth: usize) -> std::io::Result<()> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(dir, name, AtFlags::empty()).map_err(io);
    }
    if depth > MAX_TREE_DEPTH {
        return Err(std::io::Error::other(format!(
            "more than {MAX_TREE_DEPTH} levels of directories; not removed"
        )));
    }
    let child = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io)?;
    let names: Vec<OsString> = {
        let listing = rfs::openat(
            &child,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let mut out = Vec::new();
        for e in rfs::Dir::new(listing).map_err(io)? {
            let e = e.map_err(io)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsString::from(
                    <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n),
                ));
            }
            if out.len() > super::MAX_DIR_ENTRIES {
                return Err(std::io::Error::other("too many entries; not removed"));
            }
        }
        out
    };
    for n in names {
        remove_at(&child, &n, depth + 1)?;
    }
    drop(child);
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io)
}

impl HostRoot {
    /// Opens the regular file at `path` for reading and writing, creating it (`mode`) when
    /// there is nothing there; a symlink, FIFO, device or directory there is refused, never
    /// opened. For lock files.
    pub fn open_or_create(&self, path: &str, mode: u32) -> Result<std::fs::File, WriteError> {
        let fail = self.failed("opening", path);
        let (dir, leaf) = self.parent("opening", path)?;
        for _ in 0..8 {
            match rfs::statat(&dir, leaf.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => {
                    return Err(fail(std::io::Error::other(format!(
                        "{}, not a regular file",
                        super::special_name(FileType::from_raw_mode(st.st_mode))
                    ))));
                }
                Ok(_) => {
                    match rfs::openat(
                        &dir,
                        leaf.as_os_str(),
                        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                        Mode::empty(),
                    ) {
                        Ok(fd) => {
                            let f = std::fs::File::from(fd);
                            if f.metadata().is_ok_and(|m| m.is_file()) {
                                return Ok(f);
                            }
                            return Err(fail(std::io::Error::other("not a regular file")));
                        }
                        Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(fail(io(e))),
                    }
                }
                Err(rustix::io::Errno::NOENT) => match rfs::openat(
                    &dir,
                    leaf.as_os_str(),
                    OFlags::RDWR
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                ) {
                    Ok(fd) => return Ok(std::fs::File::from(fd)),
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(e) => return Err(fail(io(e))),
                },
                Err(e) => return Err(fail(io(e))),
            }
        }
        Err(fail(std::io::Error::other("it keeps changing; not opened")))
    }

    /// The inode number at `path` (a final symlink not followed), None when nothing is there.
    pub fn inode(&self, path: &str) -> Option<u64> {
        let (dir, leaf) = self.parent("looking at", path).ok()?;
        rfs::statat(&dir, leaf.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| st.st_ino)
    }
}

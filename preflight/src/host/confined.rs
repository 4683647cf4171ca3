//! Path resolution confined to a root directory fd: the primitives under [`super::HostRoot`].
//!
//! Every path is a node path (`/etc/...` as the node sees it) resolved component by component
//! inside the root, as `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` does it: an
//! absolute symlink restarts at the root, `..` never climbs above it, magic links
//! (`/proc/PID/fd/*`, `exe`, `root`) are refused. The kernel does this where it can (Linux 5.6+);
//! elsewhere [`walk`] does the same in user space, one `openat(O_PATH | O_NOFOLLOW)` per
//! component relative to the directory fd before it, so a directory swapped for a symlink
//! between two steps cannot lead out of the root (no check-then-use on path strings).
//!
//! Files are first opened `O_PATH` (no side effects: a FIFO does not block, a device driver is
//! not called), their type checked with `fstat`, and only then reopened for I/O through
//! `/proc/self/fd/N` (the same inode, checked again).
use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    io,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicU8, Ordering},
};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};

/// Linux gives up after 40 links (MAXSYMLINKS); so do we.
pub const MAX_SYMLINKS: usize = 40;
/// procfs's statfs magic: a symlink there may be a magic link.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Who resolves paths: the kernel (openat2) or [`walk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Kernel,
    UserSpace,
}

#[cfg(test)]
thread_local! {
    /// Unit tests run each case with both resolvers on this thread.
    pub static FORCE: std::cell::Cell<Option<Resolver>> = const { std::cell::Cell::new(None) };
}

/// 0: not probed yet, 1: openat2 works, 2: it does not.
static KERNEL_RESOLVE: AtomicU8 = AtomicU8::new(0);

/// The resolver this process uses: openat2 where the kernel has it. The test hook
/// `PREFLIGHT_TEST_NO_OPENAT2` forces the user-space walk so both are tested on one kernel.
pub fn resolver() -> Resolver {
    #[cfg(test)]
    if let Some(r) = FORCE.with(|f| f.get()) {
        return r;
    }
    if std::env::var_os("PREFLIGHT_TEST_NO_OPENAT2").is_some() {
        return Resolver::UserSpace;
    }
    match KERNEL_RESOLVE.load(Ordering::Relaxed) {
        1 => Resolver::Kernel,
        2 => Resolver::UserSpace,
        _ => {
            let works = rfs::openat2(
                rfs::CWD,
                "/",
                OFlags::PATH | OFlags::CLOEXEC | OFlags::DIRECTORY,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
            .is_ok();
            KERNEL_RESOLVE.store(if works { 1 } else { 2 }, Ordering::Relaxed);
            if works {
                Resolver::Kernel
            } else {
                Resolver::UserSpace
            }
        }
    }
}

fn err(e: rustix::io::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// The names of a node path: normal components and `..`; `/`, `.` and empty ones dropped.
pub fn parts(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Opens the root directory itself (following links: the operator named it).
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    rfs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)
}

/// `path` inside the root as an `O_PATH` fd; with `follow_last` false a final symlink is
/// returned itself.
pub fn lookup(root: BorrowedFd, path: &Path, follow_last: bool) -> io::Result<OwnedFd> {
    match resolver() {
        Resolver::Kernel => {
            let names = parts(path);
            let rel: PathBuf = if names.is_empty() {
                PathBuf::from(".")
            } else {
                names.iter().collect()
            };
            let mut flags = OFlags::PATH | OFlags::CLOEXEC;
            if !follow_last {
                flags |= OFlags::NOFOLLOW;
            }
            // EAGAIN: a rename raced with `..` resolution; the kernel asks to retry.
            for _ in 0..64 {
                match rfs::openat2(
                    root,
                    &rel,
                    flags,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                ) {
                    Err(rustix::io::Errno::AGAIN) => continue,
                    r => return r.map_err(err),
                }
            }
            Err(errno(libc::EAGAIN))
        }
        Resolver::UserSpace => {
            let w = walk(root, path, follow_last)?;
            w.found.ok_or_else(|| errno(libc::ENOENT))
        }
    }
}

/// Where a user-space walk ended.
pub struct Walk {
    /// The object itself (`O_PATH`), None when it does not exist.
    pub found: Option<OwnedFd>,
    /// The path after resolution, inside the root (`/` for the root), missing tail included.
    pub node_path: PathBuf,
}

/// Resolves `path` inside `root` in user space, with `RESOLVE_IN_ROOT` semantics. Once a
/// component is missing, the rest is joined lexically (the caller may be about to create it).
pub fn walk(root: BorrowedFd, path: &Path, follow_last: bool) -> io::Result<Walk> {
    let mut pending: VecDeque<OsString> = parts(path).into();
    // Directories opened below the root, with their names: the path so far.
    let mut dirs: Vec<(OwnedFd, OsString)> = Vec::new();
    let mut last: Option<(OwnedFd, OsString)> = None;
    let mut missing: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if !missing.is_empty() {
            if part == ".." {
                missing.pop();
            } else {
                missing.push(part);
            }
            continue;
        }
        if last.is_some() {
            return Err(errno(libc::ENOTDIR));
        }
        if part == ".." {
            dirs.pop();
            continue;
        }
        let cur = dirs.last().map_or(root, |(fd, _)| fd.as_fd());
        let fd = match rfs::openat(
            cur,
            part.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                missing.push(part);
                continue;
            }
            Err(e) => return Err(err(e)),
        };
        let kind = FileType::from_raw_mode(rfs::fstat(&fd).map_err(err)?.st_mode);
        let is_last = pending.is_empty();
        match kind {
            FileType::Symlink if follow_last || !is_last => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(errno(libc::ELOOP));
                }
                let target = rfs::readlinkat(&fd, "", Vec::new()).map_err(err)?;
                let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                if is_magic(cur, target) {
                    return Err(errno(libc::ELOOP));
                }
                if target.is_absolute() {
                    dirs.clear();
                }
                for (i, c) in parts(target).into_iter().enumerate() {
                    pending.insert(i, c);
                }
            }
            FileType::Directory => dirs.push((fd, part)),
            _ => last = Some((fd, part)),
        }
    }
    let mut node_path = PathBuf::from("/");
    node_path.extend(dirs.iter().map(|(_, n)| n));
    if !missing.is_empty() {
        node_path.extend(&missing);
        return Ok(Walk {
            found: None,
            node_path,
        });
    }
    let found = match last {
        Some((fd, name)) => {
            node_path.push(name);
            fd
        }
        None => match dirs.pop() {
            Some((fd, _)) => fd,
            None => rfs::openat(
                root,
                ".",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)?,
        },
    };
    Ok(Walk {
        found: Some(found),
        node_path,
    })
}

/// A symlink on procfs whose target is not a plain relative path (`self` → `1234`, `net` →
/// `self/net`) is a magic link (`fd/3` → `pipe:[…]` or `/dev/pts/0`, `exe`, `root`, `cwd`):
/// RESOLVE_NO_MAGICLINKS refuses those, and so does the walk.
// `f_type`'s width differs between architectures: the cast is needed on some.
#[allow(clippy::unnecessary_cast)]
fn is_magic(dir: BorrowedFd, target: &Path) -> bool {
    let on_proc = rfs::fstatfs(dir).is_ok_and(|s| s.f_type as i64 == PROC_SUPER_MAGIC);
    on_proc && (target.is_absolute() || target.as_os_str().as_bytes().contains(&b':'))
}

/// The node path `path` resolves to inside the root (always the user-space walk: it keeps
/// names; the kernel's openat2 does not return them).
pub fn canonical(root: BorrowedFd, path: &Path) -> io::Result<PathBuf> {
    walk(root, path, true).map(|w| w.node_path)
}

/// The parent directory of `path` (resolved inside the root, opened for `*at` calls and
/// fsync) and the last name, which the caller acts on without following it.
pub fn parent_of(root: BorrowedFd, path: &Path) -> io::Result<(OwnedFd, OsString)> {
    let mut names = parts(path);
    let leaf = match names.pop() {
        Some(n) if n != ".." => n,
        // The root itself, or a path ending in `..`: there is no name to act on.
        _ => return Err(errno(libc::EINVAL)),
    };
    let parent: PathBuf = names.iter().collect();
    let fd = lookup(root, &parent, true)?;
    let dir = rfs::openat(
        &fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    Ok((dir, leaf))
}

/// Reopens an `O_PATH` fd for I/O with `flags`, through our own `/proc/self/fd`; the inode
/// must be the same one (it is by construction; checked anyway).
pub fn reopen(fd: &OwnedFd, flags: OFlags) -> io::Result<OwnedFd> {
    let before = rfs::fstat(fd).map_err(err)?;
    if FileType::from_raw_mode(before.st_mode) == FileType::Directory {
        return rfs::openat(
            fd,
            ".",
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err);
    }
    let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
    let new = rfs::open(
        proc.as_str(),
        flags | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(err)?;
    let after = rfs::fstat(&new).map_err(err)?;
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino) {
        return Err(io::Error::other("file changed while it was opened"));
    }
    Ok(new)
}

/// The file type of an fd.
pub fn kind(fd: &OwnedFd) -> io::Result<FileType> {
    Ok(FileType::from_raw_mode(
        rfs::fstat(fd).map_err(err)?.st_mode,
    ))
}

pub(super) fn to_io(e: rustix::io::Errno) -> io::Error {
    err(e)
}

//! Node facts and node files, every read and write through one root-confined API: `/` on the
//! node, `/host` in a Kubernetes Job, a fixture tree in tests.
//!
//! [`HostRoot`] holds a directory fd of the root; every path is resolved component by
//! component inside it ([`confined`]: openat2 `RESOLVE_IN_ROOT` where the kernel has it, the
//! same semantics in user space elsewhere), so an absolute symlink in a host tree mounted at
//! `/host` means `/host/<target>`, never the container's own file, and `..` stops at the root.
//! Reads take regular files only and are capped in size; a FIFO or device is refused without
//! being opened for I/O. Writes ([`write`]) act on a name inside a resolved parent directory
//! fd and never follow a final symlink. No other code touches a node's files (a test scans the
//! source for `std::fs` calls outside this module).
pub mod cni;
pub mod confined;
pub mod distro;
pub mod input;
pub mod k3s;
pub mod kconfig;
pub mod links;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod state;
pub mod sysctl;
pub mod write;

use std::{
    io::Read,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustix::fs::{FileType, OFlags};

pub use self::confined::MAX_SYMLINKS;
use crate::model::Node;

/// The largest file preflight reads. Kernel configs are ~300 KiB, modules.dep a few MiB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// The most entries read from one directory (a conflist dir has a handful).
pub const MAX_DIR_ENTRIES: usize = 100_000;

/// A read that failed, naming the file (as seen on disk, root included).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: symlink loop (more than {MAX_SYMLINKS} links) or a magic link")]
    SymlinkLoop(String),
    #[error("{0}: larger than {1} bytes; not read")]
    TooLarge(String, u64),
    #[error("{0}: {1}, not a regular file; not read")]
    NotRegular(String, &'static str),
    #[error("{0}: read-only file system")]
    ReadOnly(String),
    #[error("{path}:{line}: not UTF-8 text (binary or corrupt file)")]
    NotText { path: String, line: usize },
    #[error("{0}: {1}")]
    Io(String, String),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
    fn from_io(shown: String, e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) => Self::NotFound(shown),
            Some(libc::ELOOP) => Self::SymlinkLoop(shown),
            Some(libc::EROFS) => Self::ReadOnly(shown),
            _ => Self::Io(shown, e.to_string()),
        }
    }
}

/// What a path is, without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A FIFO, socket or device node.
    Special,
}

/// The parts of `stat(2)` the node code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub len: u64,
    pub nlink: u64,
}

impl Meta {
    // `st_nlink` and `st_size` differ in width between architectures: the casts are needed on some.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &rustix::fs::Stat) -> Self {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        };
        Self {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            len: st.st_size as u64,
            nlink: st.st_nlink as u64,
        }
    }
    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
    pub fn is_symlink(&self) -> bool {
        self.kind == Kind::Symlink
    }
}

/// What a special file is, for messages.
fn special_name(t: FileType) -> &'static str {
    match t {
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        _ => "a special file",
    }
}

/// The node's root (`--root`), and whether it is the live node: the one whose kernel preflight
/// runs on, where live probes (bpf(), canaries, netlink, statfs) apply.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
    live: bool,
    /// The root directory, or why it could not be opened (then every access fails with that).
    fd: Result<Arc<OwnedFd>, String>,
}

impl HostRoot {
    /// The root at `root`; live when it is this system's `/`. A root that cannot be opened is
    /// not an error here: every access then fails, naming it ([`HostRoot::open`] refuses it
    /// up front).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live = root == Path::new("/");
        let fd = confined::open_root(&root)
            .map(Arc::new)
            .map_err(|e| format!("{}: {e}", root.display()));
        Self { root, live, fd }
    }
    /// The root at `root`, which must be an openable directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ReadError> {
        let h = Self::new(root);
        match &h.fd {
            Ok(_) => Ok(h),
            Err(why) => Err(ReadError::Io(h.root.display().to_string(), why.clone())),
        }
    }
    /// `--root` as given on the command line: an openable directory, or an error naming it
    /// (exit 2).
    pub fn from_flag(root: &Path) -> Result<Self, String> {
        let h = Self::new(root);
        match &h.fd {
            Ok(_) => Ok(h),
            Err(_)
                if matches!(
                    confined::open_root(root).map_err(|e| e.raw_os_error()),
                    Err(Some(libc::ENOTDIR))
                ) =>
            {
                Err(format!("--root {}: not a directory", root.display()))
            }
            Err(why) => Err(format!("--root {why}")),
        }
    }
    /// The root is another view of the node this kernel runs (a pod with the host's `/` at
    /// `/host` shares the node's kernel, `run --host-kernel`): live probes apply even though
    /// the root is not `/`.
    pub fn with_host_kernel(mut self, host_kernel: bool) -> Self {
        self.live |= host_kernel;
        self
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Whether this root is the live node: live probes run against this kernel.
    pub fn is_live(&self) -> bool {
        self.live
    }
    /// Whether this root is this process's own `/`, so that paths such as `/proc/self` and
    /// access(2) on `/proc/sys` describe the node (through `/host` they describe the pod).
    pub fn is_own_root(&self) -> bool {
        self.root == Path::new("/")
    }
    /// `path` (absolute, as on the node) joined to the root, symlinks not resolved: for
    /// messages only, never to open (use the methods below).
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    /// How to name `path` in evidence and errors: the file on disk.
    pub fn display(&self, path: &str) -> String {
        self.path(path).display().to_string()
    }

    fn dir(&self) -> Result<std::os::fd::BorrowedFd<'_>, std::io::Error> {
        match &self.fd {
            Ok(fd) => Ok(fd.as_fd()),
            Err(why) => Err(std::io::Error::other(format!("the root {why}"))),
        }
    }

    /// The node path `path` resolves to inside the root, every symlink followed there; a
    /// missing tail is kept as written (a path about to be created).
    pub fn canonical(&self, path: &str) -> Result<String, ReadError> {
        let shown = || self.display(path);
        let dir = self.dir().map_err(|e| ReadError::from_io(shown(), e))?;
        confined::canonical(dir, Path::new(path))
            .map(|p| p.display().to_string())
            .map_err(|e| ReadError::from_io(shown(), e))
    }

    /// `path` with every symlink resolved inside the root, as a path on disk (root
    /// included): for messages and for the command lines of external tools.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ReadError> {
        Ok(self.path(&self.canonical(path)?))
    }

    /// The object at `path` as an `O_PATH` fd.
    fn lookup(&self, path: &str, follow: bool) -> Result<OwnedFd, ReadError> {
        let dir = self
            .dir()
            .map_err(|e| ReadError::from_io(self.display(path), e))?;
        confined::lookup(dir, Path::new(path), follow)
            .map_err(|e| ReadError::from_io(self.display(path), e))
    }

    fn meta(&self, path: &str, follow: bool) -> Result<Option<Meta>, ReadError> {
        match self.lookup(path, follow) {
            Ok(fd) => rustix::fs::fstat(&fd)
                .map(|st| Some(Meta::of(&st)))
                .map_err(|e| ReadError::Io(self.display(path), e.to_string())),
            Err(ReadError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// What `path` is, a final symlink not followed (None: nothing there).
    pub fn lstat(&self, path: &str) -> Result<Option<Meta>, ReadError> {
        self.meta(path, false)
    }
    /// What `path` is, symlinks followed inside the root (None: nothing there).
    pub fn stat(&self, path: &str) -> Result<Option<Meta>, ReadError> {
        self.meta(path, true)
    }

    /// Opens a regular file for reading (following links inside the root); anything else is
    /// refused before it is opened for I/O.
    pub(crate) fn open_regular(
        &self,
        path: &str,
        follow: bool,
        flags: OFlags,
    ) -> Result<std::fs::File, ReadError> {
        let shown = || self.display(path);
        let fd = self.lookup(path, follow)?;
        let kind = confined::kind(&fd).map_err(|e| ReadError::Io(shown(), e.to_string()))?;
        if kind != FileType::RegularFile {
            return Err(ReadError::NotRegular(shown(), special_name(kind)));
        }
        let io = confined::reopen(&fd, flags).map_err(|e| ReadError::from_io(shown(), e))?;
        Ok(std::fs::File::from(io))
    }

    /// Up to [`MAX_FILE_BYTES`] of a regular file.
    pub fn read_bytes(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        self.read_bytes_max(path, MAX_FILE_BYTES)
    }

    /// Up to `max` bytes of a regular file; a larger one is an error, not a truncation.
    pub fn read_bytes_max(&self, path: &str, max: u64) -> Result<Vec<u8>, ReadError> {
        let file = self.open_regular(path, true, OFlags::RDONLY)?;
        read_capped(file, max, || self.display(path))
    }

    /// A text file; binary content is an error naming the first bad line.
    pub fn read_text(&self, path: &str) -> Result<String, ReadError> {
        let bytes = self.read_bytes(path)?;
        text(bytes, || self.display(path))
    }

    /// A symlink's target as written (not resolved).
    pub fn read_link(&self, path: &str) -> Result<PathBuf, ReadError> {
        let fd = self.lookup(path, false)?;
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())
            .map_err(|e| ReadError::from_io(self.display(path), confined::to_io(e)))?;
        let bytes: Vec<u8> = target.into_bytes();
        Ok(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
        ))
    }

    /// Sorted entry names of a directory (following links inside the root).
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>, ReadError> {
        let shown = || self.display(path);
        let fd = self.lookup(path, true)?;
        let dir = confined::reopen(&fd, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| ReadError::from_io(shown(), e))?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(dir).map_err(|e| ReadError::Io(shown(), e.to_string()))? {
            let entry = entry.map_err(|e| ReadError::Io(shown(), e.to_string()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() >= MAX_DIR_ENTRIES {
                return Err(ReadError::Io(
                    shown(),
                    format!("more than {MAX_DIR_ENTRIES} entries; not read"),
                ));
            }
            if let Ok(n) = std::str::from_utf8(name) {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Like [`read_dir`](Self::read_dir), but a directory that does not exist is empty; any
    /// other failure (permissions, a symlink loop, not a directory) stays an error to report.
    pub fn read_dir_if_present(&self, path: &str) -> Result<Vec<String>, ReadError> {
        match self.read_dir(path) {
            Err(ReadError::NotFound(_)) => Ok(Vec::new()),
            other => other,
        }
    }

    /// Whether `path` exists (following links inside the root).
    pub fn exists(&self, path: &str) -> bool {
        self.stat(path).ok().flatten().is_some()
    }
    pub fn is_dir(&self, path: &str) -> bool {
        self.stat(path).ok().flatten().is_some_and(|m| m.is_dir())
    }
    pub fn is_file(&self, path: &str) -> bool {
        self.stat(path).ok().flatten().is_some_and(|m| m.is_file())
    }
    /// Whether anything (a dangling symlink included) is at `path`.
    pub fn lexists(&self, path: &str) -> bool {
        self.lstat(path).ok().flatten().is_some()
    }

    /// statfs(2) magic of the file system `path` is on.
    // `f_type`'s width differs between architectures: the cast is needed on some.
    #[allow(clippy::unnecessary_cast)]
    pub fn fs_magic(&self, path: &str) -> Option<i64> {
        let fd = self.lookup(path, true).ok()?;
        rustix::fs::fstatfs(&fd).ok().map(|s| s.f_type as i64)
    }

    /// sha256 (hex) of a regular file at `path` (a final symlink is not followed); None for
    /// anything else or when unreadable.
    pub fn file_sha256(&self, path: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let file = self.open_regular(path, false, OFlags::RDONLY).ok()?;
        let bytes = read_capped(file, MAX_FILE_BYTES, || self.display(path)).ok()?;
        Some(format!("{:x}", Sha256::digest(bytes)))
    }

    /// The node's kernel release (`proc/sys/kernel/osrelease`).
    pub fn kernel_release(&self) -> Option<String> {
        self.read_text("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.contains('/'))
    }

    /// Hostname, kernel release and distribution as the node reports them.
    pub fn node(&self, live: bool) -> Node {
        let read = |p: &str| self.read_text(p).ok().map(|s| s.trim().to_string());
        let distro = distro::OsRelease::gather(self)
            .ok()
            .and_then(|o| o.pretty_name);
        Node {
            hostname: self.hostname().unwrap_or_else(|| "unknown".into()),
            kernel_release: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            distro,
            arch: std::env::consts::ARCH.to_string(),
            root: self.root.display().to_string(),
            live,
        }
    }

    pub fn hostname(&self) -> Option<String> {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| self.read_text(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

/// Reads at most `max` bytes; more is an error (a /proc file reports size 0, so the cap is
/// applied while reading, not from the metadata).
pub fn read_capped(
    file: impl Read,
    max: u64,
    shown: impl Fn() -> String,
) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ReadError::Io(shown(), e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(shown(), max));
    }
    Ok(bytes)
}

/// Bytes as UTF-8, or an error naming the line of the first invalid byte.
pub fn text(bytes: Vec<u8>, path: impl Fn() -> String) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count() + 1;
        ReadError::NotText { path: path(), line }
    })
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::symlink};

    use super::{confined::Resolver, *};

    const SECRET: &str = "OUTSIDE-SENTINEL-c0ffee";

    /// Runs `case` once with the kernel's openat2 and once with the user-space walk.
    fn both(case: impl Fn(Resolver)) {
        for r in [Resolver::Kernel, Resolver::UserSpace] {
            confined::FORCE.with(|f| f.set(Some(r)));
            case(r);
            confined::FORCE.with(|f| f.set(None));
        }
    }

    /// A root with every kind of hostile entry, next to an outside dir with a sentinel.
    struct Hostile {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn hostile() -> Hostile {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), SECRET).unwrap();
        fs::write(root.join("etc/real"), "inside").unwrap();
        let out = outside.display().to_string();
        symlink(format!("{out}/secret"), root.join("etc/abs")).unwrap();
        symlink("../../../../outside/secret", root.join("etc/rel")).unwrap();
        symlink(&out, root.join("dirlink")).unwrap();
        symlink("/etc/real", root.join("etc/link")).unwrap();
        symlink("../../../../etc/real", root.join("etc/up")).unwrap();
        symlink("/a", root.join("a")).unwrap();
        symlink("/b", root.join("b")).unwrap();
        nix::unistd::mkfifo(&root.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &root.join("etc/zero"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::S_IRUSR,
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap();
        }
        fs::create_dir_all(root.join("proc/self/fd")).unwrap();
        Hostile {
            _tmp: tmp,
            root,
            outside,
        }
    }

    #[test]
    fn the_root_knows_whether_it_is_the_live_node() {
        let own = HostRoot::new("/");
        assert!(own.is_live() && own.is_own_root());
        let fixture = HostRoot::new("fixtures/nodes/k3s-flannel");
        assert!(!fixture.is_live() && !fixture.is_own_root());
        // A pod's view of the host (`run --root /host --host-kernel`): this kernel is the
        // node's, but /proc/self under the root is still the pod's.
        let pod = HostRoot::new("/host").with_host_kernel(true);
        assert!(pod.is_live() && !pod.is_own_root());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            HostRoot::from_flag(&file).unwrap_err(),
            format!("--root {}: not a directory", file.display())
        );
        assert!(!HostRoot::from_flag(dir.path()).unwrap().is_live());
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_never_reach_outside() {
        both(|r| {
            let h = hostile();
            let host = HostRoot::new(&h.root);
            assert_eq!(host.read_text("/etc/link").unwrap(), "inside", "{r:?}");
            assert_eq!(host.read_text("/etc/up").unwrap(), "inside", "{r:?}");
            // Absolute and relative links to the outside land inside the root, where there is
            // nothing: not found, never the sentinel.
            for p in [
                "/etc/abs",
                "/etc/rel",
                "/dirlink/secret",
                "/../outside/secret",
            ] {
                let got = host.read_text(p);
                assert!(
                    matches!(got, Err(ReadError::NotFound(_))),
                    "{r:?} {p}: {got:?}"
                );
            }
            assert_eq!(
                host.canonical("/dirlink/secret").unwrap(),
                format!("{}/secret", h.outside.display()),
                "{r:?}: the outside path, taken inside the root"
            );
            assert!(host.read_dir("/dirlink").is_err(), "{r:?}");
            // Writes through the same links stay inside too.
            host.write_atomic("/dirlink/secret", b"x", 0o600, None, &mut || Ok(()))
                .unwrap_err();
            host.create_dir_all(&host.canonical("/dirlink").unwrap(), 0o700)
                .unwrap();
            host.write_atomic("/dirlink/secret", b"x", 0o600, None, &mut || Ok(()))
                .unwrap();
            assert_eq!(
                fs::read_to_string(h.outside.join("secret")).unwrap(),
                SECRET
            );
            assert!(
                h.root
                    .join(h.outside.strip_prefix("/").unwrap())
                    .join("secret")
                    .exists(),
                "{r:?}"
            );
        });
    }

    #[test]
    fn loops_fifos_devices_and_magic_links_are_refused_without_opening_them() {
        both(|r| {
            let h = hostile();
            let host = HostRoot::new(&h.root);
            let err = host.read_text("/a").unwrap_err();
            assert!(matches!(err, ReadError::SymlinkLoop(_)), "{r:?} {err}");
            assert!(err.to_string().contains("/a: symlink loop"), "{err}");
            // A FIFO would block open(2) for reading until a writer came.
            let err = host.read_text("/etc/fifo").unwrap_err();
            assert!(
                matches!(err, ReadError::NotRegular(_, "a FIFO")),
                "{r:?} {err}"
            );
            if nix::unistd::geteuid().is_root() {
                let err = host.read_bytes("/etc/zero").unwrap_err();
                assert!(matches!(err, ReadError::NotRegular(..)), "{r:?} {err}");
                assert!(host.write_existing("/etc/zero", b"1").is_err());
            }
            assert!(host.write_existing("/etc/fifo", b"1").is_err());
            // Our own /proc/self/fd/N links lead to whatever fd N is: never through a root.
            let live = HostRoot::new("/");
            let err = live.read_bytes("/proc/self/fd/0").unwrap_err();
            assert!(matches!(err, ReadError::SymlinkLoop(_)), "{r:?} {err}");
        });
    }

    #[test]
    fn a_hardlink_is_replaced_never_written_through() {
        both(|r| {
            let h = hostile();
            let host = HostRoot::new(&h.root);
            if fs::hard_link(h.outside.join("secret"), h.root.join("etc/hard")).is_err() {
                return;
            }
            assert!(host.write_existing("/etc/hard", b"x").is_err(), "{r:?}");
            host.write_atomic("/etc/hard", b"new", 0o644, None, &mut || Ok(()))
                .unwrap();
            assert_eq!(
                fs::read_to_string(h.outside.join("secret")).unwrap(),
                SECRET
            );
            host.remove_file("/etc/hard").unwrap();
            assert_eq!(
                fs::read_to_string(h.outside.join("secret")).unwrap(),
                SECRET
            );
        });
    }

    #[test]
    fn removal_and_chmod_never_follow_a_link_out() {
        both(|r| {
            let h = hostile();
            let host = HostRoot::new(&h.root);
            host.remove_if_present("/dirlink").unwrap();
            assert!(h.outside.join("secret").exists(), "{r:?}");
            assert!(!h.root.join("dirlink").exists(), "{r:?}");
            assert!(host.chmod("/etc/abs", 0o777).is_err(), "{r:?}");
            host.lchown("/etc/abs", 0, 0).unwrap();
            let mode = fs::metadata(h.outside.join("secret"))
                .unwrap()
                .permissions();
            assert_ne!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o777
            );
            // A tree with a link out inside it: the link goes, the outside stays.
            fs::create_dir_all(h.root.join("t/sub")).unwrap();
            symlink(&h.outside, h.root.join("t/sub/out")).unwrap();
            host.remove_if_present("/t").unwrap();
            assert!(!h.root.join("t").exists());
            assert_eq!(
                fs::read_to_string(h.outside.join("secret")).unwrap(),
                SECRET
            );
        });
    }

    #[test]
    fn binary_files_name_the_line_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("bin"), b"ok\nok\n\xff\xfe").unwrap();
        let host = HostRoot::new(dir.path());
        let err = host.read_text("/bin").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}/bin:3: not UTF-8 text (binary or corrupt file)",
                dir.path().display()
            )
        );
        let big = fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(MAX_FILE_BYTES + 10).unwrap();
        assert!(matches!(
            host.read_bytes("/big"),
            Err(ReadError::TooLarge(..))
        ));
        assert!(host.read_bytes("/missing").unwrap_err().is_not_found());
        // A root that is not there: every access fails, naming it.
        let gone = HostRoot::new(dir.path().join("nope"));
        assert!(
            gone.read_text("/etc/x")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
        assert!(HostRoot::open(dir.path().join("nope")).is_err());
    }
}

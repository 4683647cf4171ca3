//! Read-only node facts, every read through a root prefix (`--root`): `/` on the node, `/host`
//! in a Kubernetes Job, a fixture tree in tests.
//!
//! Symlinks are resolved by us, component by component, inside the root: an absolute link in a
//! host tree mounted at `/host` means `/host/<target>`, never the container's own file. Every
//! read is bounded in size so a huge or endless file cannot exhaust memory.
pub mod cni;
pub mod distro;
pub mod k3s;
pub mod kconfig;
pub mod links;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod state;
pub mod sysctl;

use std::{
    collections::VecDeque,
    ffi::OsString,
    io::Read,
    path::{Component, Path, PathBuf},
};

use crate::model::Node;

/// Linux gives up after 40 links (MAXSYMLINKS); so do we.
const MAX_SYMLINKS: usize = 40;
/// The largest file preflight reads. Kernel configs are ~300 KiB, modules.dep a few MiB.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A read that failed, naming the file (as seen on disk, root included).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: symlink loop (more than {MAX_SYMLINKS} links)")]
    SymlinkLoop(String),
    #[error("{0}: larger than {MAX_FILE_BYTES} bytes; not read")]
    TooLarge(String),
    #[error("{path}:{line}: not UTF-8 text (binary or corrupt file)")]
    NotText { path: String, line: usize },
    #[error("{0}: {1}")]
    Io(String, String),
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// The node's root (`--root`), and whether it is the live node: the one whose kernel preflight
/// runs on, where live probes (bpf(), canaries, netlink, statfs) apply.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
    live: bool,
}

impl HostRoot {
    /// A root; live when it is this system's `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let live = root == Path::new("/");
        Self { root, live }
    }
    /// `--root` as given on the command line: a directory, or an error naming it (exit 2).
    pub fn from_flag(root: &Path) -> Result<Self, String> {
        if !root.is_dir() {
            return Err(format!("--root {}: not a directory", root.display()));
        }
        Ok(Self::new(root))
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
    /// `path` (absolute, as on the node) inside the root, symlinks not resolved.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    /// How to name `path` in evidence and errors: the file on disk.
    pub fn display(&self, path: &str) -> String {
        self.path(path).display().to_string()
    }

    /// `path` with every symlink resolved inside the root. A missing component is not an error
    /// here (the caller's open reports it); a loop is.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ReadError> {
        let mut pending: VecDeque<OsString> = components(Path::new(path));
        let mut resolved: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let mut candidate = self.root.clone();
            candidate.extend(&resolved);
            candidate.push(&part);
            match std::fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ReadError::SymlinkLoop(self.display(path)));
                    }
                    let target = std::fs::read_link(&candidate)
                        .map_err(|e| ReadError::Io(self.display(path), e.to_string()))?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    for (i, c) in components(&target).into_iter().enumerate() {
                        pending.insert(i, c);
                    }
                }
                _ => resolved.push(part),
            }
        }
        let mut out = self.root.clone();
        out.extend(&resolved);
        Ok(out)
    }

    /// Up to [`MAX_FILE_BYTES`] of a file.
    pub fn read_bytes(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let real = self.resolve(path)?;
        let shown = self.display(path);
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound(shown.clone()),
            _ => ReadError::Io(shown.clone(), e.to_string()),
        };
        // Look before opening: open(2) on a FIFO blocks until a writer comes, and a device
        // node may do anything. Node files are regular files (/proc and /sys ones too).
        let kind = std::fs::metadata(&real).map_err(io)?.file_type();
        if !kind.is_file() {
            let what = if kind.is_dir() {
                "is a directory"
            } else {
                "not a regular file (FIFO, socket or device)"
            };
            return Err(ReadError::Io(shown, what.into()));
        }
        let file = std::fs::File::open(&real).map_err(io)?;
        // /proc files report size 0, so read with a cap instead of trusting the metadata.
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ReadError::Io(shown.clone(), e.to_string()))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ReadError::TooLarge(shown));
        }
        Ok(bytes)
    }

    /// A text file; binary content is an error naming the first bad line.
    pub fn read_text(&self, path: &str) -> Result<String, ReadError> {
        let bytes = self.read_bytes(path)?;
        text(bytes, || self.display(path))
    }

    /// Sorted entry names of a directory (empty when it does not exist).
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>, ReadError> {
        let real = self.resolve(path)?;
        let mut names: Vec<String> = match std::fs::read_dir(&real) {
            Ok(rd) => rd
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ReadError::NotFound(self.display(path)));
            }
            Err(e) => return Err(ReadError::Io(self.display(path), e.to_string())),
        };
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
        self.resolve(path).is_ok_and(|p| p.exists())
    }
    pub fn is_dir(&self, path: &str) -> bool {
        self.resolve(path).is_ok_and(|p| p.is_dir())
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

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
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
    use super::*;

    fn tree() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
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
        let dir = tree();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            HostRoot::from_flag(&file).unwrap_err(),
            format!("--root {}: not a directory", file.display())
        );
        assert!(!HostRoot::from_flag(dir.path()).unwrap().is_live());
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_root() {
        let dir = tree();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/real"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc/real", dir.path().join("etc/link")).unwrap();
        // A link that climbs above the root stops at the root.
        std::os::unix::fs::symlink("../../../../etc/real", dir.path().join("etc/up")).unwrap();
        let host = HostRoot::new(dir.path());
        assert_eq!(host.read_text("/etc/link").unwrap(), "inside");
        assert_eq!(host.read_text("/etc/up").unwrap(), "inside");
    }

    #[test]
    fn symlink_loops_are_an_error_naming_the_file() {
        let dir = tree();
        std::os::unix::fs::symlink("/b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/a", dir.path().join("b")).unwrap();
        let err = HostRoot::new(dir.path()).read_text("/a").unwrap_err();
        assert!(matches!(err, ReadError::SymlinkLoop(_)), "{err}");
        assert!(err.to_string().contains("/a: symlink loop"), "{err}");
    }

    #[test]
    fn binary_files_name_the_line_and_huge_files_are_refused() {
        let dir = tree();
        std::fs::write(dir.path().join("bin"), b"ok\nok\n\xff\xfe").unwrap();
        let host = HostRoot::new(dir.path());
        let err = host.read_text("/bin").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}/bin:3: not UTF-8 text (binary or corrupt file)",
                dir.path().display()
            )
        );
        let big = std::fs::File::create(dir.path().join("big")).unwrap();
        big.set_len(MAX_FILE_BYTES + 10).unwrap();
        assert!(matches!(
            host.read_bytes("/big"),
            Err(ReadError::TooLarge(_))
        ));
        assert!(host.read_bytes("/missing").unwrap_err().is_not_found());
    }
}

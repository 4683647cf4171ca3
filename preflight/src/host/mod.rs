//! Read-only node facts, every read through a root prefix (`--root`): `/` on the node, `/host`
//! in a Kubernetes Job, a fixture tree in tests.
use std::path::{Path, PathBuf};

use crate::report::Node;

#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `path` (absolute, as on the node) inside the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    pub fn read_to_string(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.path(path))
    }

    /// Hostname, kernel release and distribution as the node reports them.
    pub fn node(&self, live: bool) -> Node {
        let read = |p: &str| self.read_to_string(p).ok().map(|s| s.trim().to_string());
        let distro = read("/etc/os-release").and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        });
        Node {
            hostname: read("/proc/sys/kernel/hostname")
                .or_else(|| read("/etc/hostname"))
                .unwrap_or_else(|| "unknown".into()),
            kernel_release: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            distro,
            arch: std::env::consts::ARCH.to_string(),
            root: self.root.display().to_string(),
            live,
        }
    }
}

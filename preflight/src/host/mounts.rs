//! The mount table (procfs mountinfo): bpffs at /sys/fs/bpf (type, propagation, how many
//! times), cgroup v2 and v1 mounts. The table is read through the root, so a Job with the host's
//! /proc at /host/proc sees the host's; a fixture may carry a recorded one. The statfs magic
//! check is live-only.
use super::{HostRoot, ReadError};
use crate::model::Gathered;

/// BPF_FS_MAGIC from linux/magic.h.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, Clone, PartialEq)]
pub struct MountEntry {
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// Optional fields such as `shared:5`, `master:3`.
    pub propagation: Vec<String>,
    pub options: String,
}

impl MountEntry {
    pub fn shared(&self) -> bool {
        self.propagation.iter().any(|p| p.starts_with("shared:"))
    }
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountTable {
    /// The mountinfo file (evidence).
    pub source: String,
    pub entries: Vec<MountEntry>,
}

impl MountTable {
    pub fn at(&self, mount_point: &str) -> Vec<&MountEntry> {
        self.entries
            .iter()
            .filter(|e| e.mount_point == mount_point)
            .collect()
    }
    pub fn of_type(&self, fstype: &str) -> Vec<&MountEntry> {
        self.entries.iter().filter(|e| e.fstype == fstype).collect()
    }
    /// The mount that holds `path` (longest mount point prefix; the last one mounted wins).
    pub fn covering(&self, path: &str) -> Option<&MountEntry> {
        self.entries
            .iter()
            .filter(|e| {
                path == e.mount_point
                    || e.mount_point == "/"
                    || path.starts_with(&format!("{}/", e.mount_point))
            })
            .max_by_key(|e| e.mount_point.len())
    }
}

/// The node's mount table: `Unknown` when it exists but is unusable (file and line), `Skipped`
/// when this root has none.
pub type MountsFact = Gathered<MountTable>;

/// Where the node's mount table is: our own when the root is `/`; PID 1's (the host's init) through a
/// host root; a recorded `proc/self/mountinfo` in a fixture.
pub fn gather(host: &HostRoot) -> MountsFact {
    let candidates: &[&str] = if host.is_own_root() {
        &["/proc/self/mountinfo"]
    } else {
        &["/proc/1/mountinfo", "/proc/self/mountinfo"]
    };
    for path in candidates {
        match host.read_text(path) {
            Ok(text) => {
                return match parse(&text) {
                    Ok(entries) => MountsFact::Got(MountTable {
                        source: host.display(path),
                        entries,
                    }),
                    Err((line, why)) => {
                        MountsFact::Unknown(format!("{}:{line}: {why}", host.display(path)))
                    }
                };
            }
            Err(ReadError::NotFound(_)) => continue,
            Err(e) => return MountsFact::Unknown(e.to_string()),
        }
    }
    MountsFact::Skipped(format!(
        "the mount table is live-only and {} has no proc/1/mountinfo",
        host.root().display()
    ))
}

/// mountinfo: `id parent maj:min root mount_point options [optional...] - fstype source super`.
pub fn parse(text: &str) -> Result<Vec<MountEntry>, (usize, String)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| (i + 1, why.to_string());
        let (left, right) = line
            .split_once(" - ")
            .ok_or_else(|| bad("no ' - ' separator: not a mountinfo line"))?;
        let fields: Vec<&str> = left.split_whitespace().collect();
        if fields.len() < 6 {
            return Err(bad("fewer than 6 fields before ' - '"));
        }
        let mut after = right.split_whitespace();
        let fstype = after.next().ok_or_else(|| bad("no filesystem type"))?;
        let source = after.next().unwrap_or("");
        entries.push(MountEntry {
            mount_point: unescape(fields[4]),
            fstype: fstype.to_string(),
            source: unescape(source),
            propagation: fields[6..].iter().map(|s| s.to_string()).collect(),
            options: fields[5].to_string(),
        });
    }
    if entries.is_empty() {
        return Err((1, "empty mount table".into()));
    }
    Ok(entries)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// statfs(2) magic of a live path: `Ok(None)` when nothing is there.
pub fn fs_magic(path: &str) -> Result<i64, String> {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0)
        .map_err(|e| format!("statfs {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_propagation_and_escapes() {
        let t = "36 35 0:30 / /sys/fs/bpf rw,nosuid shared:14 - bpf bpf rw,mode=700\n\
                 37 35 0:31 / /my\\040dir ro master:1 - ext4 /dev/sda1 rw\n";
        let e = parse(t).unwrap();
        assert_eq!(e[0].fstype, "bpf");
        assert!(e[0].shared());
        assert_eq!(e[1].mount_point, "/my dir");
        assert!(!e[1].shared());
        assert!(e[1].read_only());
    }

    #[test]
    fn garbage_names_its_line() {
        assert_eq!(
            parse("36 35 0:30 / / rw - ext4 x rw\nnonsense\n")
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(parse("1 2 3 - bpf\n").unwrap_err().0, 1);
        assert_eq!(unescape("a\\04"), "a\\04");
    }

    #[test]
    fn covering_picks_the_longest_prefix() {
        let e = parse("1 0 0:1 / / rw - ext4 a rw\n2 1 0:2 / /proc rw - proc p rw\n3 2 0:3 / /proc/sys ro - proc p ro\n").unwrap();
        let t = MountTable {
            source: String::new(),
            entries: e,
        };
        assert_eq!(
            t.covering("/proc/sys/net/x").unwrap().mount_point,
            "/proc/sys"
        );
        assert_eq!(t.covering("/etc").unwrap().mount_point, "/");
    }
}

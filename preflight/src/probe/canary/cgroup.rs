//! The scratch cgroup v2 directory the sock_addr canary attaches to.
use std::path::{Path, PathBuf};

pub const PREFIX: &str = "preflight-canary-";

/// Where cgroup v2 is mounted (first cgroup2 entry of /proc/self/mountinfo).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .into_iter()
        .find(|m| m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
}

/// The cgroup v2 path of this process ("0::/path" in /proc/self/cgroup).
pub fn own_cgroup(mount: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(mount.join(rel.trim_start_matches('/')))
}

pub fn scratch_dir(mount: &Path) -> PathBuf {
    mount.join(format!("{PREFIX}{}", std::process::id()))
}

/// Removes scratch directories whose worker is gone (a janitor that was itself killed).
pub fn sweep_stale() {
    let Some(mount) = cgroup2_mount() else { return };
    let Ok(entries) = std::fs::read_dir(&mount) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

pub fn move_into(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
}

//! One `install`, `rollback` or `fallback` per root at a time: an `flock(2)` on
//! `/var/lib/preflight/lock` inside the root (through the confined API), held for the whole
//! command and released by the kernel when the process ends, however it ends. The file says
//! who holds it (pid, boot id, command, start time) so a refusal can name the holder; a record
//! left by a holder that is gone (its pid is not running, or it ran before the last boot:
//! `/proc/sys/kernel/random/boot_id` differs) is stale and taken over, also on a file system
//! without flock.
use std::{
    io::{Read, Seek, Write},
    os::fd::AsFd,
};

use anyhow::bail;
use rustix::fs::FlockOperation;

use crate::host::HostRoot;

pub const LOCK_FILE: &str = "/var/lib/preflight/lock";
const STATE_DIR: &str = "/var/lib/preflight";

/// Held while a command changes the node; dropping it removes the lock file.
#[derive(Debug)]
pub struct Lock {
    host: HostRoot,
    file: std::fs::File,
    /// State dirs created to hold the lock file (node paths, outermost first): the journal
    /// records them so a rollback removes them again.
    pub created: Vec<String>,
}

/// Who holds (or last held) a lock: the file's one line.
#[derive(Debug, Clone, PartialEq)]
struct Holder {
    pid: i32,
    boot_id: String,
    command: String,
    since: u64,
}

impl Holder {
    fn me(command: &str) -> Self {
        Self {
            pid: std::process::id() as i32,
            boot_id: boot_id(),
            command: command.to_string(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
    fn parse(text: &str) -> Option<Self> {
        let mut f = text.split_whitespace();
        Some(Self {
            pid: f.next()?.parse().ok()?,
            boot_id: f.next()?.to_string(),
            command: f.next()?.to_string(),
            since: f.next()?.parse().ok()?,
        })
    }
    fn line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.pid, self.boot_id, self.command, self.since
        )
    }
    /// Whether the holder may still run: same boot, and its pid exists.
    fn alive(&self) -> bool {
        self.boot_id == boot_id()
            && rustix::process::Pid::from_raw(self.pid)
                .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
    }
    fn describe(&self) -> String {
        format!(
            "`preflight {}` (pid {}, started at unix time {})",
            self.command, self.pid, self.since
        )
    }
}

/// This boot's id, from the running kernel (not the root's files: the lock is about the
/// processes on this machine).
fn boot_id() -> String {
    HostRoot::new("/")
        .read_text("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Lock {
    /// Take the lock of `host` for `command` (install, rollback, fallback). Err, naming the
    /// holder, when another preflight holds it; nothing is changed then.
    pub fn acquire(host: &HostRoot, command: &str) -> anyhow::Result<Self> {
        let shown = host.display(LOCK_FILE);
        let created = host.create_dir_all(STATE_DIR, 0o755)?;
        for _ in 0..8 {
            let mut file = host.open_or_create(LOCK_FILE, 0o600)?;
            let mut text = String::new();
            let _ = (&file).take(4096).read_to_string(&mut text);
            let previous = Holder::parse(&text);
            match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let who = previous
                        .map(|h| h.describe())
                        .unwrap_or_else(|| "another preflight".into());
                    bail!(
                        "{shown}: {who} is changing this node right now; one install, rollback \
                         or fallback at a time: wait for it to finish. Nothing was changed"
                    );
                }
                // No flock on this file system: the record decides.
                Err(_) if previous.as_ref().is_some_and(Holder::alive) => {
                    let who = previous.map(|h| h.describe()).unwrap_or_default();
                    bail!(
                        "{shown}: {who} is changing this node right now (its pid runs in this \
                         boot); wait for it to finish. Nothing was changed"
                    );
                }
                Err(_) => {}
            }
            // The file may have been removed by the holder that just let go: lock the file
            // that is at the path, not an orphan.
            let now = file
                .metadata()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok();
            if now.is_none() || host.inode(LOCK_FILE) != now {
                continue;
            }
            if let Some(h) = previous.filter(|h| h.pid != std::process::id() as i32) {
                let why = if h.boot_id != boot_id() {
                    "it ran before the last boot"
                } else {
                    "its process is gone"
                };
                eprintln!(
                    "preflight: taking over the stale lock {shown} of {}: {why}",
                    h.describe()
                );
            }
            file.set_len(0)?;
            file.rewind()?;
            file.write_all(Holder::me(command).line().as_bytes())?;
            file.sync_all()?;
            return Ok(Self {
                host: host.clone(),
                file,
                created,
            });
        }
        bail!("{shown}: the lock file keeps changing; try again")
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, so nobody takes the old file; a waiting process checks
        // the inode and opens the new one.
        let _ = self.host.remove_file(LOCK_FILE);
        let _ = rustix::fs::flock(self.file.as_fd(), FlockOperation::Unlock);
        // Only preflight uses /var/lib/preflight; parents the lock created go when empty.
        let _ = self.host.remove_dir(STATE_DIR);
        for dir in self.created.iter().rev() {
            let _ = self.host.remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let host = HostRoot::new(d.path());
        let first = Lock::acquire(&host, "install").unwrap();
        let err = Lock::acquire(&host, "rollback").unwrap_err().to_string();
        assert!(err.contains("`preflight install`"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(!d.path().join("var/lib/preflight").exists());
        let again = Lock::acquire(&host, "rollback").unwrap();
        drop(again);
    }

    #[test]
    fn a_record_of_a_dead_holder_or_an_earlier_boot_is_stale() {
        let gone = Holder {
            pid: i32::MAX - 1,
            boot_id: boot_id(),
            command: "install".into(),
            since: 1,
        };
        assert!(!gone.alive());
        let other_boot = Holder {
            pid: std::process::id() as i32,
            boot_id: "not-this-boot".into(),
            ..gone.clone()
        };
        assert!(!other_boot.alive());
        let me = Holder::me("install");
        assert!(me.alive());
        assert_eq!(Holder::parse(&me.line()), Some(me));
        // A stale record in the file does not block: flock decides, and says it took over.
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/preflight")).unwrap();
        std::fs::write(d.path().join("var/lib/preflight/lock"), gone.line()).unwrap();
        let host = HostRoot::new(d.path());
        let lock = Lock::acquire(&host, "install").unwrap();
        drop(lock);
    }
}

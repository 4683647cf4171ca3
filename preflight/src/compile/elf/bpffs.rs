//! A scratch bpffs for pinning, never the node's `/sys/fs/bpf`: a worker thread unshares its
//! mount namespace (a thread may: CLONE_NEWNS implies only CLONE_FS), makes every mount in it
//! private so nothing propagates back to the host, and mounts a fresh bpffs on an empty
//! scratch directory. Loads run on that thread, so pin paths resolve in its namespace only.
//!
//! Nothing outlives preflight: pins live in that bpffs, whose last reference is the
//! namespace, which dies with the thread — or with the process, however it ends. What a kill
//! can leave is the empty scratch directory on the host's /tmp; the next run removes those
//! of dead processes (their pid is in the name).
use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
};

const PREFIX: &str = "preflight-bpffs.";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Where maps get pinned, or why they are not.
#[derive(Debug, Clone)]
pub struct Pins {
    /// The scratch bpffs mount point (in the worker's namespace only).
    pub root: Option<PathBuf>,
    pub why_not: Option<String>,
}

type Job = Box<dyn FnOnce(&Pins) + Send>;

/// The worker thread with its private bpffs. Drop unmounts it (and every pin with it).
pub struct Scratch {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    pins: Pins,
    _dir: Option<tempfile::TempDir>,
}

fn is_bpffs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false)
}

fn enter_private_bpffs(dir: &Path) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e} (needs CAP_SYS_ADMIN)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    mount(
        Some("bpf"),
        dir,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("mount -t bpf on {}: {e}", dir.display()))?;
    if !is_bpffs(dir) {
        return Err(format!("{} is not a bpffs after mounting", dir.display()));
    }
    Ok(())
}

/// Removes empty scratch directories left by killed runs.
pub fn sweep(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            // Only ever empty: a bpffs is mounted on it in a namespace that died with its run.
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

impl Scratch {
    /// Starts the worker. Never fails: without a private bpffs (no CAP_SYS_ADMIN, no bpffs
    /// support) loads still run, without pinning, and [`Pins::why_not`] says why.
    pub fn new() -> Self {
        let tmp = std::env::temp_dir();
        sweep(&tmp);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}.", std::process::id()))
            .tempdir();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Pins>();
        let mount_dir = dir.as_ref().ok().map(|d| d.path().to_path_buf());
        let dir_error = dir.as_ref().err().map(|e| format!("scratch dir: {e}"));
        let thread = std::thread::Builder::new()
            .name("bpffs-loader".into())
            .spawn(move || {
                let pins = match (mount_dir, dir_error) {
                    (Some(d), _) => match enter_private_bpffs(&d) {
                        Ok(()) => Pins {
                            root: Some(d),
                            why_not: None,
                        },
                        Err(e) => Pins {
                            root: None,
                            why_not: Some(e),
                        },
                    },
                    (None, e) => Pins {
                        root: None,
                        why_not: e,
                    },
                };
                let _ = ready_tx.send(pins.clone());
                for job in rx {
                    job(&pins);
                }
                if let Some(d) = &pins.root {
                    let _ = umount2(d, MntFlags::MNT_DETACH);
                }
            });
        let (thread, pins) = match thread {
            Ok(t) => {
                let pins = ready_rx.recv().unwrap_or(Pins {
                    root: None,
                    why_not: Some("loader thread died".into()),
                });
                (Some(t), pins)
            }
            Err(e) => (
                None,
                Pins {
                    root: None,
                    why_not: Some(format!("loader thread: {e}")),
                },
            ),
        };
        Self {
            tx: thread.as_ref().map(|_| tx),
            thread,
            pins,
            _dir: dir.ok(),
        }
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Runs `f` on the worker thread (inside the private mount namespace) and returns its
    /// result; runs it here, without pins, when there is no worker. A panic in `f` (a loader
    /// bug an odd object found) comes back as an error and the worker carries on.
    pub fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Pins) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |pins| {
            let r =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(pins))).map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into())
                });
            let _ = rtx.send(r);
        });
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    job(&Pins {
                        root: None,
                        why_not: Some("loader thread gone".into()),
                    });
                }
            }
            None => job(&self.pins),
        }
        rrx.recv()
            .unwrap_or_else(|_| Err("loader thread ended without an answer".into()))
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn sweep_removes_only_dirs_of_dead_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join(format!("{PREFIX}{}.x", u32::MAX - 1));
        let alive = tmp.path().join(format!("{PREFIX}{}.x", std::process::id()));
        let other = tmp.path().join("preflight-bpffs-notes");
        for d in [&dead, &alive, &other] {
            std::fs::create_dir(d).unwrap();
        }
        sweep(tmp.path());
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists());
    }

    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "Linux only")]
    fn the_bpffs_is_seen_by_the_worker_only_and_gone_after_drop() {
        if !is_root() {
            // Without privileges the worker says why instead of pinning.
            let s = Scratch::new();
            assert!(s.pins().root.is_none() && s.pins().why_not.is_some());
            return;
        }
        let s = Scratch::new();
        let root = s
            .pins()
            .root
            .clone()
            .expect("root can mount a private bpffs");
        let r = root.clone();
        assert!(
            s.run(move |_| is_bpffs(&r)).unwrap(),
            "a bpffs in the worker's namespace"
        );
        let boom = s.run(|_| -> () { panic!("boom") });
        assert!(boom.unwrap_err().contains("boom"));
        assert_eq!(
            s.run(|_| 7).unwrap(),
            7,
            "the worker survives a panicking job"
        );
        assert!(
            !is_bpffs(&root),
            "the host's view of the dir is the plain tmp dir"
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(
            !mounts.contains(root.to_str().unwrap()),
            "not in this thread's mounts"
        );
        drop(s);
        assert!(!root.exists(), "scratch dir removed");
    }
}

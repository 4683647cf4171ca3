//! The write-ahead journal: before each change, what is needed to undo it is written to
//! `<root>/var/lib/preflight/journal/journal.json` atomically (temp file, fsync, rename, fsync
//! of the directory). A crash at any point leaves either the old or the new journal, and the
//! journal always covers every change that may have happened, so `rollback` can finish the job.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{fault, fsops, fsops::Prior};

pub const JOURNAL_DIR: &str = "/var/lib/preflight/journal";
const FORMAT_VERSION: u32 = 1;

/// A network link as `ip -d -j addr show` described it: enough to recreate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkSpec {
    pub name: String,
    pub kind: Option<String>,
    pub mtu: Option<u64>,
    pub address: Option<String>,
    /// vxlan: id, local address, parent device, UDP port.
    pub vxlan_id: Option<u64>,
    pub vxlan_local: Option<String>,
    pub vxlan_dev: Option<String>,
    pub vxlan_port: Option<u64>,
    /// Addresses in CIDR form.
    pub addresses: Vec<String>,
    pub up: bool,
}

/// How to undo one change. Every undo is idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// Put a path (node path, e.g. `/etc/...`) back to what it was. `after` is the sha256 of
    /// the file preflight left there (what it wrote, or for files k3s and the agent write, what
    /// they had written when the run completed): a file that no longer matches it was edited
    /// since, and rollback keeps that version aside instead of discarding it.
    Path {
        path: String,
        prior: Prior,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A path moved aside to `backup` (a host path): move it back.
    Moved { path: String, backup: PathBuf },
    /// A link deleted (prior = its description) or one that did not exist (prior = None:
    /// delete it if something created it).
    Link {
        name: String,
        prior: Option<LinkSpec>,
    },
    /// `mount --make-shared` on a mount that was private.
    MadeShared { path: String },
    /// `systemctl enable --now` of a unit that was not enabled.
    Enabled { unit: String, was_active: bool },
    /// Files under systemd's control changed: `systemctl daemon-reload` after the files are back.
    DaemonReload,
    /// A service was restarted: restart it again once everything else is restored.
    Restart {
        unit: String,
        /// Restarted with `rc-service` (OpenRC), not systemctl.
        #[serde(default)]
        openrc: bool,
    },
    /// `helm upgrade --install`: uninstall, or roll back to the revision that was there.
    Helm {
        release: String,
        namespace: String,
        prior_revision: Option<u64>,
        extra_args: Vec<String>,
        /// What this install applied, once it succeeded: a re-run that would apply the same
        /// again, to a release still at that revision, skips helm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied: Option<HelmApplied>,
    },
    /// `helm uninstall` of a release that was there: install that chart version again with the
    /// values it had (kept in `values`, a host path in the backup dir).
    HelmUninstalled {
        release: String,
        namespace: String,
        chart_version: String,
        values: PathBuf,
        extra_args: Vec<String>,
    },
    /// `kubectl rollout restart`: run it again once the rest is undone (the pods then get
    /// addresses from the restored network).
    RolloutRestart { args: Vec<String> },
    /// A kernel module loaded that was not loaded.
    Module { name: String },
    /// A sysctl changed at runtime from `prior` (None: the key did not exist yet).
    Sysctl { key: String, prior: Option<String> },
    /// flannel's iptables chains removed: `iptables-restore` of the tables they were in, as
    /// `iptables-save` printed them before (`snapshot`, a host path in the backup dir).
    Iptables { snapshot: PathBuf },
    /// A firewalld rule added: the arguments that remove it again.
    Firewall { remove_args: Vec<String> },
    /// Nothing changed on the node (a wait, a check).
    Nothing,
}

/// A `helm upgrade --install` that succeeded: the chart version, the command line (chart
/// source, values file, kubeconfig), the sha256 of the values, and the release revision helm
/// reported afterwards (None when `helm status` did not answer: then nothing is skipped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelmApplied {
    pub chart_version: String,
    pub args: Vec<String>,
    pub values_sha256: String,
    pub revision: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Written before the change: it may or may not have happened.
    Intent,
    Done,
    Undone,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u32,
    /// The plan step this change belongs to.
    pub step: String,
    pub undo: Undo,
    pub state: EntryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Changes are being made (or the run crashed): rollback is the way out.
    InProgress,
    /// The run finished; rollback still undoes it.
    Complete,
    RollingBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFile {
    pub version: u32,
    pub status: Status,
    /// What made the changes: "install", "fallback-flannel".
    pub runs: Vec<String>,
    /// State directories preflight created (node paths), removed once everything is undone.
    pub created_dirs: Vec<String>,
    pub entries: Vec<Entry>,
}

pub struct Journal {
    root: PathBuf,
    dir: PathBuf,
    pub file: JournalFile,
}

impl Journal {
    pub fn dir_for(root: &Path) -> PathBuf {
        root.join(JOURNAL_DIR.trim_start_matches('/'))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self) -> PathBuf {
        self.dir.join("journal.json")
    }

    /// Load the journal of `root`, if any. A corrupt journal is an error naming the file.
    pub fn load(root: &Path) -> anyhow::Result<Option<Self>> {
        let dir = Self::dir_for(root);
        let path = dir.join("journal.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: JournalFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}:{}: corrupt journal: {e}", path.display(), e.line())
        })?;
        if file.version != FORMAT_VERSION {
            bail!(
                "{}: journal format {} (this preflight reads {FORMAT_VERSION})",
                path.display(),
                file.version
            );
        }
        Ok(Some(Self {
            root: root.to_path_buf(),
            dir,
            file,
        }))
    }

    /// Open the journal for a new run: continue a complete one (its changes stay undoable),
    /// refuse an interrupted one (roll it back first).
    pub fn begin(root: &Path, run: &str) -> anyhow::Result<Self> {
        if let Some(mut j) = Self::load(root)? {
            if j.file.status != Status::Complete {
                bail!(
                    "{}: an earlier run was interrupted ({:?}); run `preflight rollback --root {}` first",
                    j.path().display(),
                    j.file.status,
                    root.display()
                );
            }
            j.file.status = Status::InProgress;
            j.file.runs.push(run.to_string());
            j.persist()?;
            return Ok(j);
        }
        let dir = Self::dir_for(root);
        let mut created = Vec::new();
        let mut node_path = PathBuf::from("/");
        for part in Path::new(JOURNAL_DIR).components().skip(1) {
            node_path.push(part);
            let host = root.join(node_path.strip_prefix("/").unwrap_or(&node_path));
            if !fsops::exists(&host) {
                fs::create_dir(&host)
                    .with_context(|| format!("creating the state directory {}", host.display()))?;
                created.push(node_path.display().to_string());
            }
        }
        fs::create_dir_all(dir.join("backup"))?;
        let j = Self {
            root: root.to_path_buf(),
            dir,
            file: JournalFile {
                version: FORMAT_VERSION,
                status: Status::InProgress,
                runs: vec![run.to_string()],
                created_dirs: created,
                entries: Vec::new(),
            },
        };
        if let Err(e) = j.persist() {
            // Nothing was changed yet: leave no state dir behind.
            let _ = clean_empty_state_dirs(root, &j.file.created_dirs);
            return Err(e);
        }
        Ok(j)
    }

    /// Where a backup for entry `seq` goes.
    pub fn backup_path(&self, seq: u32, name: &str) -> PathBuf {
        self.dir.join("backup").join(format!("{seq:04}-{name}"))
    }

    pub fn next_seq(&self) -> u32 {
        self.file.entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1
    }

    pub fn host_path(&self, node_path: &str) -> PathBuf {
        self.root.join(node_path.trim_start_matches('/'))
    }

    /// Write-ahead: record `undo` before the change is made.
    pub fn intent(&mut self, step: &str, undo: Undo) -> anyhow::Result<u32> {
        let seq = self.next_seq();
        self.file.entries.push(Entry {
            seq,
            step: step.to_string(),
            undo,
            state: EntryState::Intent,
        });
        self.persist()?;
        fault::point(&format!("after journaling entry {seq} of {step}"))?;
        Ok(seq)
    }

    /// Entries of earlier runs (and this one) whose change was made: what a re-run compares
    /// against to tell a step that is done.
    pub fn done(&self) -> impl Iterator<Item = &Entry> {
        self.file
            .entries
            .iter()
            .filter(|e| e.state == EntryState::Done)
    }

    /// Record what a change did once it is made (e.g. the Helm revision), then mark it done.
    pub fn finish(&mut self, seq: u32, undo: Undo) -> anyhow::Result<()> {
        if let Some(e) = self.file.entries.iter_mut().find(|e| e.seq == seq) {
            e.undo = undo;
        }
        self.set_state(seq, EntryState::Done)
    }

    pub fn set_state(&mut self, seq: u32, state: EntryState) -> anyhow::Result<()> {
        if let Some(e) = self.file.entries.iter_mut().find(|e| e.seq == seq) {
            e.state = state;
        }
        self.persist()
    }

    /// The run is over: record the hash of every journaled file that has none yet (files k3s
    /// and the agent wrote after the guard step), then mark the journal complete. From here on
    /// rollback can tell a file somebody edited from the one the run left.
    pub fn complete(&mut self) -> anyhow::Result<()> {
        for e in &mut self.file.entries {
            if let Undo::Path {
                path,
                after: after @ None,
                ..
            } = &mut e.undo
                && e.state == EntryState::Done
            {
                *after = fsops::file_sha256(&self.root.join(path.trim_start_matches('/')));
            }
        }
        self.set_status(Status::Complete)
    }

    pub fn set_status(&mut self, status: Status) -> anyhow::Result<()> {
        self.file.status = status;
        self.persist()
    }

    pub fn persist(&self) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(&self.file)?;
        fsops::write_atomic(&self.path(), &text, 0o600, None)
            .with_context(|| format!("writing the journal {}", self.path().display()))
    }

    /// Everything is undone: remove the journal, its backups and the state dirs it created.
    /// journal.json goes last, so a crash here leaves a journal that a re-run finishes.
    pub fn remove(self) -> anyhow::Result<()> {
        fsops::remove_if_present(&self.dir.join("backup"))?;
        fault::point("removing the journal")?;
        fs::remove_file(self.path())?;
        fsops::sync_parent(&self.path())?;
        clean_empty_state_dirs(&self.root, &self.file.created_dirs)
    }
}

/// Remove the state dirs a finished rollback left (also called when a crash came between the
/// journal's removal and theirs). `created` names the dirs preflight made; its own journal dir
/// is always removed when empty.
pub fn clean_empty_state_dirs(root: &Path, created: &[String]) -> anyhow::Result<()> {
    let dir = Journal::dir_for(root);
    let _ = fs::remove_file(fsops::tmp_sibling(&dir.join("journal.json")));
    let _ = fs::remove_dir(dir.join("backup"));
    let _ = fs::remove_dir(&dir);
    // Only preflight uses /var/lib/preflight: once empty it goes, even when a crash lost the
    // record of whether we created it.
    let _ = fs::remove_dir(root.join("var/lib/preflight"));
    for node_path in created.iter().rev() {
        let host = root.join(node_path.trim_start_matches('/'));
        let _ = fs::remove_dir(&host);
    }
    Ok(())
}

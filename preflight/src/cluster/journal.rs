//! The cluster journal (`<state dir>/cluster-journal.json`): before each cluster step, what is
//! needed to undo it; which node has reached which stage. Written atomically (temp file, fsync,
//! rename, fsync of the directory), so a run killed at any point leaves a journal that covers
//! every change that may have happened: `install --cluster` resumes from it, `rollback
//! --cluster` undoes it newest first. Each node's own changes are in that node's journal; an
//! entry here only says which stage to roll back there.
use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::runbook::NodeStage;
/// An entry, its state and the run's status mean here what they mean in a node's journal.
pub use crate::plan::journal::{EntryState, Status};

pub const FILE: &str = "cluster-journal.json";
const FORMAT_VERSION: u32 = 1;
/// A journal larger than this is not ours.
const MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    /// A node stage ran (or may have): `rollback --migration-stage STAGE` on that node.
    NodeStage {
        node: String,
        stage: NodeStage,
        rollback: Vec<String>,
    },
    /// `helm upgrade --install`: uninstall, or roll back to the revision that was there.
    Helm {
        release: String,
        namespace: String,
        prior_revision: Option<u64>,
        kube_args: Vec<String>,
    },
    /// The `CiliumNodeConfig` applied: delete it, or put back the one that was there.
    NodeConfigApplied {
        api_version: String,
        name: String,
        prior: Option<Value>,
    },
    /// The `CiliumNodeConfig` deleted: create it again.
    NodeConfigDeleted { manifest: Value },
    /// `spec.unschedulable` changed from `prior`.
    Schedulable { node: String, prior: bool },
    /// The migration label changed from `prior` (None: absent); after putting it back the
    /// node's Cilium pod is restarted so the agent runs with or without the per-node config.
    Label { node: String, prior: Option<String> },
    /// Nothing to put back (a wait, an eviction, a pod deleted for its controller to recreate).
    Nothing,
}

/// A runbook step's entry (`step`: its id, `node.k3s-agent-1.cordon`).
pub type Entry = crate::plan::journal::Entry<Undo>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFile {
    pub version: u32,
    pub status: Status,
    /// What the run installs, to refuse resuming with another plan.
    pub pod_cidr: String,
    pub tunnel_port: u16,
    pub namespace: String,
    /// The last node stage each node completed (absent: none yet).
    pub nodes: BTreeMap<String, NodeStage>,
    pub entries: Vec<Entry>,
}

pub struct ClusterJournal {
    dir: PathBuf,
    pub file: JournalFile,
}

impl ClusterJournal {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The journal in `dir`, if any; a corrupt one is an error naming the file and line.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path_in(dir);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        if !meta.is_file() || meta.len() > MAX_BYTES {
            bail!(
                "{}: not a cluster journal (not a regular file, or larger than 16 MiB)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let file: JournalFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: corrupt cluster journal: {e}",
                path.display(),
                e.line()
            )
        })?;
        if file.version != FORMAT_VERSION {
            bail!(
                "{}: cluster journal format {} (this preflight reads {FORMAT_VERSION})",
                path.display(),
                file.version
            );
        }
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            file,
        }))
    }

    pub fn create(
        dir: &Path,
        pod_cidr: &str,
        tunnel_port: u16,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let j = Self {
            dir: dir.to_path_buf(),
            file: JournalFile {
                version: FORMAT_VERSION,
                status: Status::InProgress,
                pod_cidr: pod_cidr.into(),
                tunnel_port,
                namespace: namespace.into(),
                nodes: BTreeMap::new(),
                entries: Vec::new(),
            },
        };
        j.persist()?;
        Ok(j)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest entry of a step.
    pub fn entry(&self, step: &str) -> Option<&Entry> {
        self.file.entries.iter().rev().find(|e| e.step == step)
    }

    /// Write-ahead: record `undo` before the step changes anything.
    pub fn intent(&mut self, step: &str, undo: Undo) -> anyhow::Result<u32> {
        let seq = self.file.entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        self.file.entries.push(Entry {
            seq,
            step: step.into(),
            undo,
            state: EntryState::Intent,
        });
        self.persist()?;
        Ok(seq)
    }

    pub fn set_state(&mut self, seq: u32, state: EntryState) -> anyhow::Result<()> {
        if let Some(e) = self.file.entries.iter_mut().find(|e| e.seq == seq) {
            e.state = state;
        }
        self.persist()
    }

    pub fn node_reached(&mut self, node: &str, stage: NodeStage) -> anyhow::Result<()> {
        self.file.nodes.insert(node.into(), stage);
        self.persist()
    }

    pub fn set_status(&mut self, status: Status) -> anyhow::Result<()> {
        self.file.status = status;
        self.persist()
    }

    pub fn persist(&self) -> anyhow::Result<()> {
        let path = Self::path_in(&self.dir);
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
        let text = serde_json::to_vec_pretty(&self.file)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("writing the cluster journal {}", path.display()))
    }

    /// Everything undone: the journal and the values files go; the state dir too when empty.
    pub fn remove(self) -> anyhow::Result<()> {
        for f in ["values-migration.yaml", "values-final.yaml"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        std::fs::remove_file(Self::path_in(&self.dir))
            .with_context(|| format!("removing {}", Self::path_in(&self.dir).display()))?;
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }
}

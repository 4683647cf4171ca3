//! The write-ahead journal: before each change, what is needed to undo it is written to
//! `/var/lib/preflight/journal/journal.json` inside the root atomically (temp file, fsync,
//! rename, fsync of the directory), through the root-confined [`HostRoot`] API. A crash at any
//! point leaves either the old or the new journal, and the journal always covers every change
//! that may have happened, so `rollback` can finish the job.
//!
//! A journal is input like any other: on load every path must be a clean node path, every
//! backup a file this journal reserved in its own backup dir, every argument it would hand to
//! a tool one that preflight itself writes ([`check`]); a journal that breaks a rule is
//! refused whole and nothing is touched. Rollback removes only the backups this journal
//! reserved, never other files in the backup dir.
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::{fault, fsops, fsops::Prior};
use crate::host::HostRoot;

pub const JOURNAL_DIR: &str = "/var/lib/preflight/journal";
pub const BACKUP_DIR: &str = "/var/lib/preflight/journal/backup";
pub const JOURNAL_FILE: &str = "/var/lib/preflight/journal/journal.json";
/// 2: node paths everywhere and the reserved backups listed (1: host paths, translated on load).
const FORMAT_VERSION: u32 = 2;
/// The largest journal read (a real one is a few KiB).
const MAX_JOURNAL_BYTES: u64 = 4 << 20;

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
    /// A path moved aside to `backup` (a node path: in the backup dir, or for a bpffs pin
    /// `.preflight-moved-NAME` beside it): move it back.
    Moved { path: String, backup: String },
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
        /// The release and namespace this run installed (`--release-name`, `--namespace`);
        /// a journal written before they were recorded meant cilium in kube-system.
        #[serde(default = "default_release")]
        release: String,
        #[serde(default = "default_namespace")]
        namespace: String,
        prior_revision: Option<u64>,
        extra_args: Vec<String>,
        /// What this install applied, once it succeeded: a re-run that would apply the same
        /// again, to a release still at that revision, skips helm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        applied: Option<HelmApplied>,
    },
    /// `helm uninstall` of a release that was there: install that chart version again with the
    /// values it had (kept in `values`, a node path in the backup dir).
    HelmUninstalled {
        #[serde(default = "default_release")]
        release: String,
        #[serde(default = "default_namespace")]
        namespace: String,
        chart_version: String,
        values: String,
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
    /// `iptables-save` printed them before (`snapshot`, a node path in the backup dir).
    Iptables { snapshot: String },
    /// A firewalld rule added: the arguments that remove it again.
    Firewall { remove_args: Vec<String> },
    /// Nothing changed on the node (a wait, a check).
    Nothing,
}

/// The release an old journal without a release name means: the only one preflight installed.
fn default_release() -> String {
    "cilium".into()
}

/// The namespace an old journal without one means.
fn default_namespace() -> String {
    "kube-system".into()
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

/// One journaled change: a node's ([`Undo`]) or, with the cluster's undo type, a cluster
/// step's (cluster/journal.rs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<U = Undo> {
    pub seq: u32,
    /// The plan step (or runbook step) this change belongs to.
    pub step: String,
    pub undo: U,
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
    /// Names in the backup dir this journal reserved before writing them: the only files
    /// there that rollback removes.
    #[serde(default)]
    pub backups: Vec<String>,
    pub entries: Vec<Entry>,
}

pub struct Journal {
    host: HostRoot,
    pub file: JournalFile,
}

impl Journal {
    pub fn host(&self) -> &HostRoot {
        &self.host
    }

    /// The journal file on disk, for messages.
    pub fn shown(&self) -> String {
        self.host.display(JOURNAL_FILE)
    }

    /// Load the journal of `host`, if any. A corrupt journal, or one that breaks the rules of
    /// [`check`], is an error naming the file; nothing is changed.
    pub fn load(host: &HostRoot) -> anyhow::Result<Option<Self>> {
        Self::load_trusting(host, None)
    }

    /// [`load`](Self::load), also accepting `kubeconfig` (the operator's own `--kubeconfig`,
    /// absolute) where the journal hands a kubeconfig outside the root to helm or kubectl.
    pub fn load_trusting(
        host: &HostRoot,
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Option<Self>> {
        let shown = host.display(JOURNAL_FILE);
        let bytes = match host.read_bytes_max(JOURNAL_FILE, MAX_JOURNAL_BYTES) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => bail!("reading the journal: {e}"),
        };
        let mut file: JournalFile = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{shown}:{}: corrupt journal: {e}", e.line()))?;
        match file.version {
            FORMAT_VERSION => {}
            1 => upgrade_v1(&mut file, host.root())
                .map_err(|why| anyhow::anyhow!("{shown}: refused: {why}; nothing was changed"))?,
            v => bail!("{shown}: journal format {v} (this preflight reads {FORMAT_VERSION})"),
        }
        check(&file, host.root(), kubeconfig)
            .map_err(|why| anyhow::anyhow!("{shown}: refused: {why}; nothing was changed"))?;
        Ok(Some(Self {
            host: host.clone(),
            file,
        }))
    }

    /// Open the journal for a new run: continue a complete one (its changes stay undoable),
    /// refuse an interrupted one (roll it back first). `created` are state dirs the caller
    /// (the lock) already created for this run. `kubeconfig`: the operator's `--kubeconfig`, as
    /// [`load_trusting`](Self::load_trusting) takes it.
    pub fn begin(
        host: &HostRoot,
        run: &str,
        created: &[String],
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Self> {
        if let Some(mut j) = Self::load_trusting(host, kubeconfig)? {
            if j.file.status != Status::Complete {
                bail!(
                    "{}: an earlier run was interrupted ({:?}); run `preflight rollback --root {}` first",
                    j.shown(),
                    j.file.status,
                    host.root().display()
                );
            }
            j.file.status = Status::InProgress;
            j.file.runs.push(run.to_string());
            j.persist()?;
            return Ok(j);
        }
        let mut created: Vec<String> = created.to_vec();
        created.extend(host.create_dir_all(BACKUP_DIR, 0o700).with_context(|| {
            format!("creating the state directory {}", host.display(BACKUP_DIR))
        })?);
        // The backup dir itself goes with the journal dir; only the ones above are recorded.
        created.retain(|d| STATE_DIRS.contains(&d.as_str()));
        let j = Self {
            host: host.clone(),
            file: JournalFile {
                version: FORMAT_VERSION,
                status: Status::InProgress,
                runs: vec![run.to_string()],
                created_dirs: created,
                backups: Vec::new(),
                entries: Vec::new(),
            },
        };
        if let Err(e) = j.persist() {
            // Nothing was changed yet: leave no state dir behind.
            let _ = clean_empty_state_dirs(host, &j.file.created_dirs);
            return Err(e);
        }
        Ok(j)
    }

    /// Reserve a new file in the backup dir for entry `seq` and return its node path. The
    /// name is journaled before the file is written, and one that is taken (a file this
    /// journal does not know) is never reused: rollback removes only reserved names.
    pub fn backup_path(&mut self, seq: u32, name: &str) -> anyhow::Result<String> {
        let clean: String = name
            .chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .take(100)
            .collect();
        let clean = clean.trim_start_matches('.');
        let mut candidate = format!("{seq:04}-{clean}");
        let mut n = 1;
        while self.file.backups.contains(&candidate)
            || self.host.lexists(&format!("{BACKUP_DIR}/{candidate}"))
        {
            n += 1;
            candidate = format!("{seq:04}-{n}-{clean}");
        }
        self.file.backups.push(candidate.clone());
        self.persist()?;
        Ok(format!("{BACKUP_DIR}/{candidate}"))
    }

    pub fn next_seq(&self) -> u32 {
        self.file.entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1
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
                *after = self.host.file_sha256(path);
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
        fsops::write_atomic(&self.host, JOURNAL_FILE, &text, 0o600, None)
            .with_context(|| format!("writing the journal {}", self.shown()))
    }

    /// Everything is undone: remove the backups this journal reserved, the journal, and the
    /// state dirs it created (each only when empty). journal.json goes last but one, so a
    /// crash here leaves a journal that a re-run finishes.
    pub fn remove(self) -> anyhow::Result<()> {
        for name in &self.file.backups {
            self.host
                .remove_if_present(&format!("{BACKUP_DIR}/{name}"))?;
        }
        fault::point("removing the journal")?;
        self.host.remove_file(JOURNAL_FILE)?;
        self.host.sync_parent(JOURNAL_FILE)?;
        clean_empty_state_dirs(&self.host, &self.file.created_dirs)
    }
}

/// The state dirs preflight may create, outermost first.
const STATE_DIRS: [&str; 4] = [
    "/var",
    "/var/lib",
    "/var/lib/preflight",
    "/var/lib/preflight/journal",
];

/// Remove the state dirs a finished rollback left (also called when a crash came between the
/// journal's removal and theirs), each only when empty. `created` names the dirs preflight
/// made; its own journal dir is always removed when empty.
pub fn clean_empty_state_dirs(host: &HostRoot, created: &[String]) -> anyhow::Result<()> {
    let _ = host.remove_file(&fsops::tmp_sibling(JOURNAL_FILE));
    let _ = host.remove_dir(BACKUP_DIR);
    let _ = host.remove_dir(JOURNAL_DIR);
    // Only preflight uses /var/lib/preflight: once empty it goes, even when a crash lost the
    // record of whether we created it.
    let _ = host.remove_dir("/var/lib/preflight");
    for node_path in created.iter().rev() {
        let _ = host.remove_dir(node_path);
    }
    Ok(())
}

/// A version-1 journal held host paths (root included): translate those inside this root's
/// backup dir to node paths; anything else is refused.
fn upgrade_v1(file: &mut JournalFile, root: &Path) -> Result<(), String> {
    let to_node = |p: &mut String| -> Result<(), String> {
        let rel = Path::new(p.as_str())
            .strip_prefix(root)
            .map_err(|_| format!("backup {p} is not inside the root {}", root.display()))?;
        *p = format!("/{}", rel.display());
        Ok(())
    };
    let mut names = Vec::new();
    for e in &mut file.entries {
        let backup = match &mut e.undo {
            Undo::Path {
                prior: Prior::File { backup, .. },
                ..
            }
            | Undo::HelmUninstalled { values: backup, .. }
            | Undo::Iptables { snapshot: backup } => backup,
            Undo::Moved { backup, .. } => {
                to_node(backup)?;
                if let Some(name) = backup.strip_prefix(&format!("{BACKUP_DIR}/")) {
                    names.push(name.to_string());
                }
                continue;
            }
            _ => continue,
        };
        to_node(backup)?;
        if let Some(name) = backup.strip_prefix(&format!("{BACKUP_DIR}/")) {
            names.push(name.to_string());
        }
    }
    file.backups = names;
    file.version = FORMAT_VERSION;
    Ok(())
}

/// The rules a journal must keep before rollback acts on it. Err says which entry broke which.
pub fn check(file: &JournalFile, root: &Path, kubeconfig: Option<&Path>) -> Result<(), String> {
    for d in &file.created_dirs {
        if !STATE_DIRS.contains(&d.as_str()) {
            return Err(format!(
                "created_dirs names {d:?}, which is not one of preflight's state dirs"
            ));
        }
    }
    for name in &file.backups {
        if !plain_name(name) {
            return Err(format!("backup name {name:?} is not a plain file name"));
        }
    }
    let reserved = |p: &str| -> bool {
        p.strip_prefix(BACKUP_DIR)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|n| file.backups.iter().any(|b| b == n))
    };
    for e in &file.entries {
        let at = |why: String| format!("entry {} ({}): {why}", e.seq, e.step);
        match &e.undo {
            Undo::Path { path, prior, .. } => {
                target_path(path).map_err(at)?;
                if let Prior::File { backup, .. } = prior
                    && !reserved(backup)
                {
                    return Err(at(format!(
                        "backup {backup:?} is not a file this journal reserved in {BACKUP_DIR}"
                    )));
                }
            }
            Undo::Moved { path, backup } => {
                target_path(path).map_err(at)?;
                let beside = Path::new(path).with_file_name(format!(
                    ".preflight-moved-{}",
                    Path::new(path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ));
                if !reserved(backup) && Path::new(backup) != beside {
                    return Err(at(format!(
                        "backup {backup:?} is neither a file this journal reserved nor {}",
                        beside.display()
                    )));
                }
            }
            Undo::HelmUninstalled {
                release,
                namespace,
                chart_version,
                values,
                extra_args,
            } => {
                if !reserved(values) {
                    return Err(at(format!("values {values:?} is not a reserved backup")));
                }
                word(release, "release").map_err(at)?;
                word(namespace, "namespace").map_err(at)?;
                if !chart_version.is_empty() {
                    word(chart_version, "chart version").map_err(at)?;
                }
                kube_args(extra_args, root, kubeconfig).map_err(at)?;
            }
            Undo::Iptables { snapshot } => {
                if !reserved(snapshot) {
                    return Err(at(format!(
                        "snapshot {snapshot:?} is not a reserved backup"
                    )));
                }
            }
            Undo::MadeShared { path } => {
                if path != super::node::BPFFS {
                    return Err(at(format!("make-shared of {path:?}, not /sys/fs/bpf")));
                }
            }
            Undo::Link { name, prior } => {
                link_name(name).map_err(at)?;
                if let Some(spec) = prior {
                    link_spec(spec).map_err(at)?;
                }
            }
            Undo::Enabled { unit, .. } | Undo::Restart { unit, .. } => {
                word(unit, "unit").map_err(at)?
            }
            Undo::Helm {
                release,
                namespace,
                extra_args,
                ..
            } => {
                word(release, "release").map_err(at)?;
                word(namespace, "namespace").map_err(at)?;
                kube_args(extra_args, root, kubeconfig).map_err(at)?;
            }
            Undo::RolloutRestart { args } => rollout_args(args, root, kubeconfig).map_err(at)?,
            Undo::Module { name } => word(name, "module").map_err(at)?,
            Undo::Sysctl { key, prior } => {
                word(key, "sysctl key").map_err(at)?;
                if prior
                    .as_deref()
                    .is_some_and(|p| p.contains(['\n', '\0']) || p.len() > 4096)
                {
                    return Err(at("sysctl value is not one line".into()));
                }
            }
            Undo::Firewall { remove_args } => firewall_args(remove_args).map_err(at)?,
            Undo::DaemonReload | Undo::Nothing => {}
        }
    }
    Ok(())
}

/// A clean absolute node path: no `.`/`..`/empty components, no NUL, not the root itself, and
/// outside the journal's own dir (a journal cannot restore its own files).
fn target_path(p: &str) -> Result<(), String> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && p.len() <= 4096
        && !p.contains('\0')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(format!("path {p:?} is not a clean absolute node path"));
    }
    if p == "/var/lib/preflight" || p.starts_with("/var/lib/preflight/journal") {
        return Err(format!("path {p:?} is inside preflight's own state dir"));
    }
    Ok(())
}

fn plain_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n != "." && n != ".." && !n.contains(['/', '\0'])
}

/// A unit, module, release, namespace, key or version as preflight writes them: letters,
/// digits and `@._:+/-`, not starting with `-` (it would read as an option).
fn word(w: &str, what: &str) -> Result<(), String> {
    let ok = !w.is_empty()
        && w.len() <= 253
        && !w.starts_with('-')
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._:+/-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {w:?} is not one preflight would write"))
    }
}

fn link_name(n: &str) -> Result<(), String> {
    if n.len() <= 15 && word(n, "link").is_ok() && !n.contains('/') {
        Ok(())
    } else {
        Err(format!("link name {n:?} is not a network interface name"))
    }
}

fn link_spec(l: &LinkSpec) -> Result<(), String> {
    link_name(&l.name)?;
    for (what, v) in [
        ("kind", &l.kind),
        ("address", &l.address),
        ("vxlan local", &l.vxlan_local),
    ] {
        if let Some(v) = v {
            word(v, what)?;
        }
    }
    if let Some(dev) = &l.vxlan_dev {
        link_name(dev)?;
    }
    for a in &l.addresses {
        word(a, "address")?;
    }
    Ok(())
}

/// Cluster-access flags as preflight passes them (`context_flag`: helm's `--kube-context` or
/// kubectl's `--context`): `[--kubeconfig PATH] [CONTEXT_FLAG NAME]`, PATH inside the root or
/// the operator's own `trusted` one, NAME a context name preflight accepts. Returns what
/// follows them.
fn access_args<'a>(
    args: &'a [String],
    root: &Path,
    trusted: Option<&Path>,
    context_flag: &str,
) -> Result<&'a [String], String> {
    let mut rest = args;
    if let [flag, path, more @ ..] = rest
        && flag == "--kubeconfig"
    {
        if !inside(path, root) && trusted != Some(Path::new(path)) {
            return Err(format!(
                "kubeconfig {path:?} is not inside the node's root (if it is the --kubeconfig \
                 you gave install, give it again: --kubeconfig {path})"
            ));
        }
        rest = more;
    }
    if let [flag, name, more @ ..] = rest
        && flag == context_flag
    {
        if let Some(why) = crate::model::context_name_error(name) {
            return Err(format!("context {name:?} {why}"));
        }
        rest = more;
    }
    Ok(rest)
}

/// helm's `[--kubeconfig PATH] [--kube-context NAME]`, or nothing.
fn kube_args(args: &[String], root: &Path, trusted: Option<&Path>) -> Result<(), String> {
    match access_args(args, root, trusted, "--kube-context")? {
        [] => Ok(()),
        _ => Err(format!(
            "arguments {args:?} are not the --kubeconfig and --kube-context preflight passes"
        )),
    }
}

fn inside(path: &str, root: &Path) -> bool {
    Path::new(path).is_absolute()
        && Path::new(path).starts_with(root)
        && !path.split('/').any(|c| c == "..")
}

/// `[--kubeconfig PATH] [--context NAME] -n NS rollout restart KIND/NAME`.
fn rollout_args(args: &[String], root: &Path, trusted: Option<&Path>) -> Result<(), String> {
    match access_args(args, root, trusted, "--context")? {
        [n, ns, r, s, what] if n == "-n" && r == "rollout" && s == "restart" => {
            word(ns, "namespace")?;
            word(what, "workload")
        }
        _ => Err(format!(
            "arguments {args:?} are not a `kubectl rollout restart` preflight runs"
        )),
    }
}

/// The firewall-cmd arguments the fallback's undo uses.
fn firewall_args(args: &[String]) -> Result<(), String> {
    let ok = |a: &str| {
        a == "--permanent"
            || a == "--reload"
            || a.strip_prefix("--zone=")
                .is_some_and(|z| word(z, "zone").is_ok())
            || a.strip_prefix("--remove-port=")
                .is_some_and(|p| word(p, "port").is_ok())
            || a.strip_prefix("--remove-source=")
                .is_some_and(|p| word(p, "source").is_ok())
    };
    if !args.is_empty() && args.iter().all(|a| ok(a)) {
        Ok(())
    } else {
        Err(format!(
            "firewall-cmd arguments {args:?} are not an undo preflight writes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal written before the release and namespace were recorded meant the only
    /// release preflight then installed: cilium in kube-system.
    #[test]
    fn an_old_helm_entry_without_release_or_namespace_means_cilium_in_kube_system() {
        let old: Undo = serde_json::from_str(
            r#"{"undo":"helm","prior_revision":null,"extra_args":["--kubeconfig","/r/k.yaml"]}"#,
        )
        .unwrap();
        assert_eq!(
            old,
            Undo::Helm {
                release: "cilium".into(),
                namespace: "kube-system".into(),
                prior_revision: None,
                extra_args: vec!["--kubeconfig".into(), "/r/k.yaml".into()],
                applied: None,
            }
        );
    }

    #[test]
    fn access_flags_are_the_ones_preflight_passes() {
        let root = Path::new("/r");
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            kube_args(
                &a(&["--kubeconfig", "/r/k.yaml", "--kube-context", "edge"]),
                root,
                None
            )
            .is_ok()
        );
        // The operator's own kubeconfig outside the root: only when rollback is given it.
        let theirs = a(&["--kubeconfig", "/home/op/.kube/config"]);
        assert!(kube_args(&theirs, root, None).is_err());
        assert!(kube_args(&theirs, root, Some(Path::new("/home/op/.kube/config"))).is_ok());
        assert!(kube_args(&theirs, root, Some(Path::new("/home/op/other"))).is_err());
        assert!(
            kube_args(
                &a(&["--kube-context", "arn:aws:eks:x:1:cluster/y"]),
                root,
                None
            )
            .is_ok()
        );
        for bad in [
            a(&["--kube-context", "-x"]),
            a(&["--kube-context", "a b"]),
            a(&["--kubeconfig", "/elsewhere/k.yaml"]),
            a(&["--context", "edge"]),
            a(&["--kube-context", "edge", "--kubeconfig", "/r/k.yaml"]),
        ] {
            assert!(kube_args(&bad, root, None).is_err(), "{bad:?}");
        }
        let restart = "-n kube-system rollout restart deployment/coredns";
        for (access, ok) in [
            ("--kubeconfig /r/k --context edge", true),
            ("--context edge", true),
            ("--context edge;rm", false),
            ("--kube-context edge", false),
        ] {
            let argv: Vec<String> = format!("{access} {restart}")
                .split(' ')
                .map(String::from)
                .collect();
            assert_eq!(rollout_args(&argv, root, None).is_ok(), ok, "{argv:?}");
        }
    }
}

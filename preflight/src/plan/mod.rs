//! Migration plan: the ordered, idempotent steps that take a k3s node from flannel to Cilium,
//! each saying what it changes, why, and how it is undone; the executor that carries them out
//! under a write-ahead journal; rollback; and the flannel fallback.
//!
//! Three parts, in the order data flows:
//! - read: [`node::NodeState`] (k3s config, containerd's CNI dirs, links, mounts, leftovers),
//!   every file through host/'s root-confined API, never `std::fs` (tests/node_fs_lint.rs);
//! - decide: [`decide`] builds the plan from that state, one function per phase; [`fallback`]
//!   and [`stages`] build the flannel fallback and the whole-cluster node stages; pure;
//! - apply: [`apply`], one file per action family (files, links, mounts, services, k3s, helm,
//!   kubectl, iptables, kernel, firewall), each with its do, its undo and its command line;
//!   [`exec`] walks the plan under the [`journal`] and hands each action and undo to its family.
//!
//! Files are changed directly under the root prefix; everything on the running system (links,
//! mounts, services, Helm, Kubernetes) goes through [`runner::Runner`].
pub mod apply;
pub mod decide;
pub mod exec;
pub mod fallback;
pub mod fault;
pub mod fsops;
pub mod gitops;
pub mod iptables;
pub mod journal;
pub mod lock;
pub mod node;
pub mod runner;
pub mod stages;

use std::fmt::Write as _;

pub use apply::services::service_command;
pub use decide::{build_install, drop_in_text, values_for, wants_kube_proxy_replacement};
use node::{CniPaths, NodeState};

/// k3s deploys CoreDNS into kube-system whatever namespace Cilium goes into (`--namespace`
/// moves the Helm release and its DaemonSet, not CoreDNS).
pub const COREDNS_NAMESPACE: &str = "kube-system";
pub const VALUES_FILE: &str = "/var/lib/preflight/cilium-values.yaml";
pub const BPFFS_UNIT_TEXT: &str = "\
# Written by preflight: bpffs at /sys/fs/bpf, shared, so Cilium's pins survive agent restarts.
[Unit]
Description=BPF file system
Documentation=man:bpf(2)
DefaultDependencies=no
Before=local-fs.target umount.target
After=swap.target

[Mount]
What=bpffs
Where=/sys/fs/bpf
Type=bpf
Options=rw,nosuid,nodev,noexec,relatime,mode=700

[Install]
WantedBy=local-fs.target
";

/// What a step does to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    WriteFile {
        path: String,
        content: String,
        mode: u32,
    },
    /// Move into the journal's backup dir (never delete).
    MoveAside {
        path: String,
    },
    DeleteLink {
        name: String,
    },
    /// `mount --make-shared /sys/fs/bpf`.
    MakeShared,
    /// `systemctl enable --now UNIT`.
    EnableUnit {
        unit: String,
    },
    DaemonReload,
    /// `systemctl restart|reload UNIT`, or `rc-service UNIT restart|reload` under OpenRC.
    Service {
        unit: String,
        verb: String,
        openrc: bool,
    },
    /// Record the state of paths and links that a later program (k3s, the Cilium agent) will
    /// write, so that rollback returns them too.
    Guard {
        paths: Vec<String>,
        links: Vec<String>,
    },
    /// After k3s restarted: containerd's CNI dirs must be the ones the values name.
    CheckCniPaths {
        expect: CniPaths,
    },
    Helm {
        release: String,
        namespace: String,
        version: String,
        args: Vec<String>,
        values: serde_json::Value,
    },
    /// `helm uninstall RELEASE` when the release exists; its chart version and values are
    /// journaled so that rollback can install it again.
    HelmUninstall {
        release: String,
        namespace: String,
        kube_args: Vec<String>,
    },
    /// `kubectl rollout restart …`: journaled, and run again after a rollback.
    RolloutRestart {
        args: Vec<String>,
    },
    /// `--restart-pods`: delete every pod that is not hostNetwork and has a controller.
    RestartPods {
        list_args: Vec<String>,
        kube_args: Vec<String>,
    },
    /// A kubectl command that must exit 0 (waits and post-checks).
    Kubectl {
        args: Vec<String>,
        check: PostCheck,
    },
    Modprobe {
        module: String,
    },
    Sysctl {
        key: String,
        value: String,
    },
    Firewall {
        add_args: Vec<String>,
        remove_args: Vec<String>,
    },
    /// Remove flannel's iptables chains (FLANNEL-POSTRTG, FLANNEL-FWD) and the rules that jump
    /// to them, after `iptables-save` of their tables into the journal.
    FlannelIptables,
    /// Nothing to change; advice for the operator.
    Advice,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PostCheck {
    ExitZero,
    /// `namespace/name phase podIP` lines: every Running pod has an IP.
    PodsHaveIps,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepState {
    Todo,
    /// Already in the wanted state: running it changes nothing.
    Done(String),
    /// Decided when it runs (e.g. a link we could not query).
    AtRunTime(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub changes: String,
    pub why: String,
    pub undo: String,
    pub action: Action,
    pub state: StepState,
    /// Check ids whose failure this step fixes (they do not block `install`).
    pub fixes: Vec<String>,
}

impl Step {
    fn new(id: impl Into<String>, title: impl Into<String>, action: Action) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            changes: String::new(),
            why: String::new(),
            undo: String::new(),
            action,
            state: StepState::Todo,
            fixes: Vec::new(),
        }
    }
    fn changes(mut self, s: impl Into<String>) -> Self {
        self.changes = s.into();
        self
    }
    fn why(mut self, s: impl Into<String>) -> Self {
        self.why = s.into();
        self
    }
    fn undo(mut self, s: impl Into<String>) -> Self {
        self.undo = s.into();
        self
    }
    fn state(mut self, s: StepState) -> Self {
        self.state = s;
        self
    }
    fn fixes(mut self, ids: &[&str]) -> Self {
        self.fixes = ids.iter().map(|s| s.to_string()).collect();
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub title: String,
    pub steps: Vec<Step>,
    /// Things the operator should know that are not steps.
    pub notes: Vec<String>,
    pub values: Option<serde_json::Value>,
}

/// What to migrate to.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub cilium_version: String,
    pub kube_proxy_replacement: bool,
    pub k8s_service_host: Option<String>,
    pub k8s_service_port: u16,
    /// `--release-name`: the Helm release (a DNS-1123 label of at most 53 characters).
    pub release: String,
    /// `--namespace`: the release's namespace, where the Cilium DaemonSet runs.
    pub namespace: String,
    /// `--context`: the kubeconfig context helm and kubectl use (None: the current one).
    pub context: Option<String>,
    pub wait_timeout_s: u64,
    pub dns_check_image: Option<String>,
    /// Also recreate every non-hostNetwork pod that has a controller (`--restart-pods`).
    pub restart_pods: bool,
    /// The user's Helm values (-f, --set), merged.
    pub user_values: serde_json::Value,
    /// The verdict's value fixes (its values_patch), applied last.
    pub values_fix: Option<serde_json::Value>,
    /// `--chart DIR|TGZ` (absolute): helm installs this chart instead of the Cilium repo's.
    pub chart: Option<std::path::PathBuf>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            // The default of every command: the newest release preflight knows.
            cilium_version: crate::cilium::releases::BUILTIN
                .default_version()
                .to_string(),
            kube_proxy_replacement: false,
            k8s_service_host: None,
            k8s_service_port: 6443,
            release: "cilium".into(),
            namespace: "kube-system".into(),
            context: None,
            wait_timeout_s: 300,
            dns_check_image: Some("busybox:1.36".into()),
            restart_pods: false,
            user_values: serde_json::json!({}),
            values_fix: None,
            chart: None,
        }
    }
}

/// How `tool` (helm or kubectl) reaches the cluster: `--kubeconfig` (k3s writes its admin
/// kubeconfig on servers, or the operator's --kubeconfig), and the context, which helm calls
/// `--kube-context` and kubectl `--context`.
pub fn kube_args(node: &NodeState, context: Option<&str>, tool: runner::Tool) -> Vec<String> {
    let mut a: Vec<String> = node
        .kubeconfig
        .as_ref()
        .map(|k| vec!["--kubeconfig".into(), k.display().to_string()])
        .unwrap_or_default();
    if let Some(c) = context {
        let flag = match tool {
            runner::Tool::Helm => "--kube-context",
            _ => "--context",
        };
        a.extend([flag.to_string(), c.to_string()]);
    }
    a
}

/// The plan as text: numbered steps with what/why/undo, and the commands they run.
pub fn render(plan: &Plan, runner: &runner::Runner) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", plan.title);
    let done = plan
        .steps
        .iter()
        .filter(|s| matches!(s.state, StepState::Done(_)))
        .count();
    let _ = writeln!(out, "{} steps ({} already done)\n", plan.steps.len(), done);
    for (i, s) in plan.steps.iter().enumerate() {
        let tag = match &s.state {
            StepState::Todo => "todo".to_string(),
            StepState::Done(why) => format!("done: {why}"),
            StepState::AtRunTime(why) => format!("decided when run: {why}"),
        };
        let _ = writeln!(out, "{:>2}. {}  [{}]", i + 1, s.title, tag);
        let _ = writeln!(out, "      id:      {}", s.id);
        let _ = writeln!(out, "      changes: {}", s.changes);
        let _ = writeln!(out, "      why:     {}", s.why);
        let _ = writeln!(out, "      undo:    {}", s.undo);
        if let Some(cmd) = command_line(&s.action, runner) {
            let _ = writeln!(out, "      runs:    {cmd}");
        }
        if let Action::WriteFile { content, .. } = &s.action
            && content.lines().count() <= 20
        {
            for l in content.lines() {
                let _ = writeln!(out, "      | {l}");
            }
        }
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// The command a step runs, as it will be run.
pub fn command_line(action: &Action, runner: &runner::Runner) -> Option<String> {
    let (tool, args) = command_parts(action)?;
    Some(runner.display(tool, &args))
}

/// The tool and argument vector a step runs (None for file steps).
pub fn command_parts(action: &Action) -> Option<(runner::Tool, Vec<String>)> {
    use runner::Tool;
    Some(match action {
        Action::DeleteLink { name } => apply::links::delete_command(name),
        Action::MakeShared => apply::mounts::make_shared_command(),
        Action::EnableUnit { unit } => apply::services::enable_command(unit),
        Action::DaemonReload => apply::services::daemon_reload_command(),
        Action::Service { unit, verb, openrc } => service_command(unit, verb, *openrc),
        // The plan made these command lines whole (decide): printed and run as they are.
        Action::Helm { args, .. } => (Tool::Helm, args.clone()),
        Action::Kubectl { args, .. } | Action::RolloutRestart { args } => {
            (Tool::Kubectl, args.clone())
        }
        Action::RestartPods { list_args, .. } => (Tool::Kubectl, list_args.clone()),
        Action::Firewall { add_args, .. } => (Tool::FirewallCmd, add_args.clone()),
        Action::HelmUninstall {
            release,
            namespace,
            kube_args,
        } => apply::helm::uninstall_command(release, namespace, kube_args),
        Action::Modprobe { module } => apply::kernel::modprobe_command(module),
        Action::Sysctl { key, value } => apply::kernel::sysctl_command(key, value),
        Action::FlannelIptables => (Tool::IptablesSave, Vec::new()),
        _ => return None,
    })
}

/// Every external tool the plan's steps (and their undo) run, including the queries a step
/// makes before it changes anything (`ip -j addr show`, `systemctl is-active`, `helm status`).
pub fn tools_needed(plan: &Plan) -> std::collections::BTreeSet<runner::Tool> {
    use runner::Tool;
    let mut tools = std::collections::BTreeSet::new();
    for s in &plan.steps {
        match &s.action {
            Action::Guard { links, .. } if !links.is_empty() => {
                tools.insert(Tool::Ip);
            }
            Action::EnableUnit { .. } => {
                tools.insert(Tool::Systemctl);
            }
            // Optional: a node without iptables-save has nothing for it to remove that
            // preflight could see; the step says so instead of refusing the install.
            Action::FlannelIptables => {}
            action => {
                if let Some((tool, _)) = command_parts(action) {
                    tools.insert(tool);
                }
            }
        }
    }
    tools
}

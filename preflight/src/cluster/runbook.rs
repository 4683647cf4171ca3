//! The ordered runbook of a dual-overlay migration: cluster steps (Helm stages, the
//! `CiliumNodeConfig`, waits) and per-node steps (cordon, drain respecting PodDisruptionBudgets,
//! label, restart the node's Cilium pod, the node's own stages, validate, uncordon), each with
//! what it changes, why, and how it is undone.
//!
//! Order (the guide's, with k3s's specifics): every node prepared; Cilium installed next to
//! flannel; the per-node config; agents migrated one by one, then the servers ("it is not
//! recommended to start with a control-plane node"); the final values; the per-node config
//! deleted; flannel off, servers first (agents take `flannel-backend` from their server); the
//! migration label removed.
use std::path::{Path, PathBuf};

use super::plan::ClusterPlan;

/// What runs on a node, as `preflight install --migration-stage STAGE` there.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStage {
    /// bpffs mounted shared and persistent, stale Cilium state moved aside, and the files and
    /// links Cilium will write recorded (before Cilium is installed anywhere).
    Prepare,
    /// Restart k3s on a labelled node whose agent wrote its conflist: the node's pods get
    /// Cilium networking from here on.
    CiliumCni,
    /// flannel off: the servers' drop-in (`flannel-backend: none`), k3s restarted, flannel's
    /// links, iptables chains and conflists cleared.
    FlannelOff,
}

impl NodeStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepare => "prepare",
            Self::CiliumCni => "cilium-cni",
            Self::FlannelOff => "flannel-off",
        }
    }
}

/// Which Helm values a stage installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValuesStage {
    Migration,
    Final,
}

impl ValuesStage {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Migration => "values-migration.yaml",
            Self::Final => "values-final.yaml",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClusterAction {
    /// `preflight install --migration-stage STAGE` on the node.
    NodeStage {
        node: String,
        stage: NodeStage,
    },
    /// `helm upgrade --install` with a stage's values file.
    Helm {
        stage: ValuesStage,
        args: Vec<String>,
    },
    /// The Cilium DaemonSet rolled out on every node (updated and ready).
    WaitDaemonSet,
    /// `kubectl rollout restart daemonset/cilium`, then wait.
    RestartDaemonSet,
    ApplyNodeConfig,
    DeleteNodeConfig,
    Cordon {
        node: String,
    },
    /// Evict every pod but DaemonSet and mirror pods; an eviction a PodDisruptionBudget refuses
    /// (429) is retried until the budget allows it or the wait ends.
    Drain {
        node: String,
    },
    Label {
        node: String,
    },
    /// Delete the node's Cilium pod; the DaemonSet recreates it with the per-node config.
    RestartAgent {
        node: String,
    },
    /// Delete the pods left on the node (DaemonSet pods that are not hostNetwork), so that
    /// they are recreated on Cilium's network.
    RecreatePods {
        node: String,
    },
    /// The node Ready, its Cilium pod Ready, its pods' IPs in Cilium's pod CIDR.
    Validate {
        node: String,
    },
    Uncordon {
        node: String,
    },
    /// The node Ready again after a stage restarted k3s.
    WaitNodeReady {
        node: String,
    },
    Unlabel {
        node: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStep {
    pub id: String,
    /// The node it concerns (None: the cluster).
    pub node: Option<String>,
    pub title: String,
    pub changes: String,
    pub why: String,
    pub undo: String,
    pub action: ClusterAction,
}

/// How the runbook reaches the cluster and the nodes.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Where the staged values files and the cluster journal live.
    pub state_dir: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// How a node stage is started: an argument template, `{node}` replaced by the node's name;
    /// the stage's arguments go where `{args}` is, or at the end. None: `preflight` on the node.
    pub node_exec: Option<String>,
}

impl Access {
    /// helm's flags for the cluster.
    pub fn helm_kube_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(k) = &self.kubeconfig {
            a.extend(["--kubeconfig".to_string(), k.display().to_string()]);
        }
        if let Some(c) = &self.context {
            a.extend(["--kube-context".to_string(), c.clone()]);
        }
        a
    }

    /// The argument vector that runs `stage` on `node`.
    pub fn node_command(&self, node: &str, stage: NodeStage) -> Vec<String> {
        let stage_args: Vec<String> = ["install", "--migration-stage", stage.as_str(), "--yes"]
            .map(String::from)
            .to_vec();
        node_argv(self.node_exec.as_deref(), node, &stage_args)
    }

    /// The argument vector that rolls `stage` back on `node`.
    pub fn node_rollback_command(&self, node: &str, stage: NodeStage) -> Vec<String> {
        let args: Vec<String> = ["rollback", "--migration-stage", stage.as_str()]
            .map(String::from)
            .to_vec();
        node_argv(self.node_exec.as_deref(), node, &args)
    }
}

fn node_argv(template: Option<&str>, node: &str, args: &[String]) -> Vec<String> {
    let template = template.unwrap_or("preflight");
    let mut out = Vec::new();
    let mut placed = false;
    for word in template.split_whitespace() {
        if word == "{args}" {
            out.extend(args.iter().cloned());
            placed = true;
        } else {
            out.push(word.replace("{node}", node));
        }
    }
    if !placed {
        out.extend(args.iter().cloned());
    }
    out
}

/// The helm command line of a stage.
pub fn helm_args(plan: &ClusterPlan, access: &Access, stage: ValuesStage) -> Vec<String> {
    let o = &plan.opts;
    let mut a: Vec<String> = vec!["upgrade".into(), "--install".into(), o.release.clone()];
    match &o.chart {
        Some(chart) => a.push(chart.display().to_string()),
        None => a.extend([
            "cilium".into(),
            "--repo".into(),
            crate::plan::gitops::CILIUM_HELM_REPO.into(),
            "--version".into(),
            o.cilium_version.clone(),
        ]),
    }
    a.extend([
        "--namespace".into(),
        o.namespace.clone(),
        "--values".into(),
        values_path(&access.state_dir, stage).display().to_string(),
    ]);
    a.extend(access.helm_kube_args());
    a
}

pub fn values_path(state_dir: &Path, stage: ValuesStage) -> PathBuf {
    state_dir.join(stage.file_name())
}

fn step(id: String, node: Option<&str>, title: String, action: ClusterAction) -> ClusterStep {
    ClusterStep {
        id,
        node: node.map(String::from),
        title,
        changes: String::new(),
        why: String::new(),
        undo: String::new(),
        action,
    }
}

impl ClusterStep {
    fn says(
        mut self,
        changes: impl Into<String>,
        why: impl Into<String>,
        undo: impl Into<String>,
    ) -> Self {
        self.changes = changes.into();
        self.why = why.into();
        self.undo = undo.into();
        self
    }
}

/// Migration order: agents first, then servers (each group by name).
pub fn migration_order(plan: &ClusterPlan) -> Vec<String> {
    plan.agents()
        .chain(plan.servers())
        .map(|n| n.hostname.clone())
        .collect()
}

/// The whole runbook.
pub fn build(plan: &ClusterPlan, access: &Access) -> Vec<ClusterStep> {
    use ClusterAction as A;
    let c = &plan.choices;
    let mut steps = Vec::new();
    let ns = &plan.opts.namespace;

    // 1. Every node prepared, before Cilium lands anywhere.
    for n in &plan.nodes {
        let h = n.hostname.as_str();
        steps.push(
            step(
                format!("node.{h}.prepare"),
                Some(h),
                format!("{h}: preflight install --migration-stage prepare"),
                A::NodeStage { node: h.into(), stage: NodeStage::Prepare },
            )
            .says(
                "bpffs mounted shared and persistent; stale Cilium state and pins moved into the node's journal; the files and links Cilium will write (its conflist in both CNI dirs, cilium-cni, flannel's conflist, containerd's config.toml, cilium_host/cilium_net/cilium_vxlan) recorded as they are",
                "the agent needs a shared bpffs; a stale node_config.h breaks its compile (docs/compile.md); recording before Cilium starts lets the node's rollback return everything it will write",
                format!("`preflight rollback --migration-stage prepare` on {h}: every recorded path and link back to what it is now"),
            ),
        );
    }

    // 2. Cilium next to flannel.
    steps.push(
        step(
            "cluster.helm.migration".into(),
            None,
            format!(
                "helm upgrade --install {} (Cilium {}) with {}",
                plan.opts.release,
                plan.opts.cilium_version,
                ValuesStage::Migration.file_name()
            ),
            A::Helm { stage: ValuesStage::Migration, args: helm_args(plan, access, ValuesStage::Migration) },
        )
        .says(
            format!(
                "Helm release {ns}/{} installed: agents on every node with VXLAN on UDP {}, pod CIDR {}, no CNI config of their own",
                plan.opts.release, c.tunnel_port, c.pod_cidr
            ),
            "the guide's \"secondary\" mode: Cilium builds its overlay next to flannel's but manages no pod yet (cni.customConf=true); policy enforcement is off so flannel pods are not dropped; legacy host routing lets the kernel route between the two overlays",
            "helm uninstall (or helm rollback to the revision that was there)",
        ),
    );
    steps.push(
        step(
            "cluster.wait.cilium".into(),
            None,
            "Wait for daemonset/cilium on every node".into(),
            A::WaitDaemonSet,
        )
        .says(
            "nothing",
            "every node's agent must be up before any node moves",
            "nothing to undo",
        ),
    );
    steps.push(
        step(
            "cluster.node-config".into(),
            None,
            format!("Create CiliumNodeConfig {ns}/{}", super::NODE_CONFIG_NAME),
            A::ApplyNodeConfig,
        )
        .says(
            format!(
                "a {} CiliumNodeConfig selecting nodes labelled {}=true",
                c.node_config_api,
                super::MIGRATION_LABEL
            ),
            "on a labelled node the agent writes its conflist (write-cni-conf-when-ready) into the dir containerd reads, and sets flannel's aside (cni-exclusive); it selects no node yet",
            "deleted",
        ),
    );

    // 3. Node by node: agents first, servers last.
    for h in migration_order(plan) {
        let h = h.as_str();
        let n = Some(h);
        steps.push(
            step(
                format!("node.{h}.cordon"),
                n,
                format!("{h}: cordon"),
                A::Cordon { node: h.into() },
            )
            .says(
                "spec.unschedulable=true",
                "no new pod lands on the node while its network changes",
                "uncordoned (when it was schedulable before)",
            ),
        );
        steps.push(
            step(format!("node.{h}.drain"), n, format!("{h}: drain (Eviction API, PodDisruptionBudgets respected)"), A::Drain { node: h.into() })
                .says(
                    "every pod but DaemonSet and mirror pods is evicted; their controllers recreate them on other nodes",
                    "pods keep the network they were created with: they must move off before the node changes CNI; evictions (not deletes) let PodDisruptionBudgets hold a drain until the workload can spare the pod",
                    "not undone: evicted pods were recreated elsewhere; uncordoning lets them come back",
                ),
        );
        steps.push(
            step(format!("node.{h}.label"), n, format!("{h}: label {}=true", super::MIGRATION_LABEL), A::Label { node: h.into() })
                .says("one node label", "the CiliumNodeConfig now applies to this node", "label removed, then the node's Cilium pod restarted so the agent runs without the per-node config"),
        );
        steps.push(
            step(format!("node.{h}.restart-agent"), n, format!("{h}: restart its Cilium pod"), A::RestartAgent { node: h.into() })
                .says(
                    format!("the node's Cilium pod is deleted and recreated; once ready it writes 05-cilium.conflist into {}", c.migration_cni.0),
                    "the agent reads its per-node config only at start",
                    "nothing of its own (the label's undo restarts it again)",
                ),
        );
        steps.push(
            step(
                format!("node.{h}.cilium-cni"),
                n,
                format!("{h}: preflight install --migration-stage cilium-cni"),
                A::NodeStage { node: h.into(), stage: NodeStage::CiliumCni },
            )
            .says(
                "k3s restarted on the node",
                "the guide reboots the node here; restarting k3s makes containerd take the new conflist at once (running containers keep running)",
                format!("`preflight rollback --migration-stage cilium-cni` on {h}, after the prepare stage's record put the conflists back: k3s restarted again"),
            ),
        );
        steps.push(
            step(format!("node.{h}.recreate-pods"), n, format!("{h}: recreate its remaining pods"), A::RecreatePods { node: h.into() })
                .says(
                    "the pods still on the node that are not hostNetwork (DaemonSet pods) are deleted; their DaemonSets recreate them",
                    "they were created on flannel's network; recreated, they get addresses from Cilium's pod CIDR (the guide's reboot does this)",
                    "not undone: after a rollback they are recreated once more, on flannel",
                ),
        );
        steps.push(
            step(format!("node.{h}.validate"), n, format!("{h}: validate"), A::Validate { node: h.into() })
                .says(
                    "nothing",
                    format!("the node Ready, its Cilium pod Ready and every pod on it (not hostNetwork) addressed from {}", c.pod_cidr),
                    "nothing to undo",
                ),
        );
        steps.push(
            step(format!("node.{h}.uncordon"), n, format!("{h}: uncordon"), A::Uncordon { node: h.into() })
                .says("spec.unschedulable=false", "the node takes pods again, now on Cilium; they reach pods on unmigrated nodes through the two overlays", "cordoned again"),
        );
    }

    // 4. Final values, per-node config gone.
    steps.push(
        step(
            "cluster.helm.final".into(),
            None,
            format!("helm upgrade {} with {}", plan.opts.release, ValuesStage::Final.file_name()),
            A::Helm { stage: ValuesStage::Final, args: helm_args(plan, access, ValuesStage::Final) },
        )
        .says(
            format!(
                "Cilium writes its own conflist into {} (cni.customConf=false), enforces policy, restarts unmanaged pods; tunnel port {} and pod CIDR {} stay",
                c.final_cni.0, c.tunnel_port, c.pod_cidr
            ),
            "the guide's post-migration values; the tunnel port is not moved back to 8472: agents restart one by one and would split the cluster",
            "helm rollback to the migration revision",
        ),
    );
    steps.push(
        step(
            "cluster.restart.cilium".into(),
            None,
            "Restart daemonset/cilium and wait".into(),
            A::RestartDaemonSet,
        )
        .says(
            "every agent restarts with the final values",
            "the guide restarts the DaemonSet after the upgrade",
            "the helm rollback's own rollout restarts them",
        ),
    );
    steps.push(
        step(
            "cluster.node-config.delete".into(),
            None,
            format!("Delete CiliumNodeConfig {ns}/{}", super::NODE_CONFIG_NAME),
            A::DeleteNodeConfig,
        )
        .says(
            "the per-node config is gone",
            "every node runs the final values; the override is no longer needed",
            "created again",
        ),
    );

    // 5. flannel off: servers first.
    for n in plan.servers().chain(plan.agents()) {
        let h = n.hostname.as_str();
        let what = if n.is_server() {
            "drop-in flannel-backend: none and disable-network-policy: true, k3s restarted"
        } else {
            "k3s-agent restarted (it takes flannel-backend: none from its server)"
        };
        steps.push(
            step(
                format!("node.{h}.flannel-off"),
                Some(h),
                format!("{h}: preflight install --migration-stage flannel-off"),
                A::NodeStage { node: h.into(), stage: NodeStage::FlannelOff },
            )
            .says(
                format!("{what}; containerd then reads {} and {}; flannel.1 and cni0 deleted; flannel's iptables chains removed; its conflist moved aside", c.final_cni.0, c.final_cni.1),
                "k3s's embedded flannel stops only with flannel-backend: none on the servers and a restart (k3s-io/k3s#8100); its devices and rules outlive it",
                format!("`preflight rollback --migration-stage flannel-off` on {h}: drop-in removed, links recreated, chains restored, k3s restarted with flannel"),
            ),
        );
        steps.push(
            step(
                format!("node.{h}.ready"),
                Some(h),
                format!("{h}: wait until Ready"),
                A::WaitNodeReady { node: h.into() },
            )
            .says(
                "nothing",
                "k3s restarted: the node must be back before the next one goes",
                "nothing to undo",
            ),
        );
    }

    // 6. Leftovers.
    for n in &plan.nodes {
        let h = n.hostname.as_str();
        steps.push(
            step(
                format!("node.{h}.unlabel"),
                Some(h),
                format!("{h}: remove label {}", super::MIGRATION_LABEL),
                A::Unlabel { node: h.into() },
            )
            .says(
                "one node label",
                "the per-node config is gone: the label selects nothing any more",
                "labelled again",
            ),
        );
    }
    steps
}

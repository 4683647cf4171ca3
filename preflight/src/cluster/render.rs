//! The cluster plan as text: preconditions, the values chosen, then the runbook step by step.
use std::fmt::Write as _;

use super::{
    plan::ClusterPlan,
    runbook::{Access, ClusterAction, ClusterStep, ValuesStage},
};
use crate::model::Status;

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::Warn => "WARN",
        Status::Unknown => "UNKNOWN",
        Status::Skip => "SKIP",
    }
}

/// What a step runs, as a command line or an API call.
pub fn runs(step: &ClusterStep, plan: &ClusterPlan, access: &Access) -> String {
    use ClusterAction as A;
    let ns = &plan.opts.namespace;
    let label = super::MIGRATION_LABEL;
    match &step.action {
        A::NodeStage { node, stage } => format!(
            "on {node}: {}",
            crate::plan::runner::Argv(
                std::path::Path::new(&access.node_command(node, *stage)[0]),
                &access.node_command(node, *stage)[1..]
            )
        ),
        A::Helm { args, .. } => {
            crate::plan::runner::Argv(std::path::Path::new("helm"), args).to_string()
        }
        A::WaitDaemonSet => format!(
            "API: watch {ns}/daemonset/cilium until every scheduled pod is updated and ready"
        ),
        A::RestartDaemonSet => format!(
            "API: patch {ns}/daemonset/cilium pod template annotation kubectl.kubernetes.io/restartedAt, then wait"
        ),
        A::ApplyNodeConfig => format!(
            "API: server-side apply {} CiliumNodeConfig {ns}/{}",
            plan.choices.node_config_api,
            super::NODE_CONFIG_NAME
        ),
        A::DeleteNodeConfig => format!(
            "API: delete CiliumNodeConfig {ns}/{}",
            super::NODE_CONFIG_NAME
        ),
        A::Cordon { node } => format!("API: patch node {node} spec.unschedulable=true"),
        A::Drain { node } => format!(
            "API: list pods spec.nodeName={node}; POST pods/<name>/eviction for each (429 from a PodDisruptionBudget: retried); wait until gone"
        ),
        A::Label { node } => format!("API: patch node {node} metadata.labels {label}=true"),
        A::RestartAgent { node } => format!(
            "API: delete pods -l k8s-app=cilium spec.nodeName={node} in {ns}; wait for its replacement Ready"
        ),
        A::RecreatePods { node } => {
            format!("API: delete pods spec.nodeName={node} that are not hostNetwork")
        }
        A::Validate { node } => format!(
            "API: get node {node} (Ready), Cilium pod on it (Ready), pods on it (IP in {})",
            plan.choices.pod_cidr
        ),
        A::Uncordon { node } => format!("API: patch node {node} spec.unschedulable=false"),
        A::WaitNodeReady { node } => format!("API: watch node {node} until Ready"),
        A::Unlabel { node } => format!("API: patch node {node} metadata.labels {label}=null"),
    }
}

/// The part of the procedure a step belongs to, as a heading: the runbook reads as the guide's
/// phases, and in the per-node phase, node by node.
fn phase(step: &ClusterStep) -> String {
    let kind = step.id.rsplit('.').next().unwrap_or_default();
    match (&step.node, kind) {
        (Some(_), "prepare") => "Prepare every node (before Cilium lands anywhere)".into(),
        (Some(_), "flannel-off" | "ready") => {
            "Turn flannel off, servers first (every node runs Cilium now)".into()
        }
        (Some(_), "unlabel") => "Clean up".into(),
        (Some(node), _) => {
            format!("Move {node} to Cilium (cordon, drain, label, restart, validate, uncordon)")
        }
        (None, _)
            if step.id.starts_with("cluster.helm.migration")
                || step.id == "cluster.wait.cilium"
                || step.id == "cluster.node-config" =>
        {
            "Cilium next to flannel (its own pod CIDR and VXLAN port; it manages no pod yet)".into()
        }
        (None, _) => "Final values: Cilium manages the CNI config everywhere".into(),
    }
}

pub fn render(plan: &ClusterPlan, steps: &[ClusterStep], access: &Access) -> String {
    let mut out = String::new();
    let servers: Vec<&str> = plan.servers().map(|n| n.hostname.as_str()).collect();
    let agents: Vec<&str> = plan.agents().map(|n| n.hostname.as_str()).collect();
    let _ = writeln!(
        out,
        "Migrate the cluster from flannel to Cilium {} by dual overlay ({} node(s): server {}; agent {})",
        plan.opts.cilium_version,
        plan.nodes.len(),
        if servers.is_empty() {
            "none".into()
        } else {
            servers.join(", ")
        },
        if agents.is_empty() {
            "none".into()
        } else {
            agents.join(", ")
        },
    );
    let _ = writeln!(out, "Procedure: {}\n", super::GUIDE);

    let _ = writeln!(out, "Preconditions");
    for p in &plan.preconditions {
        let _ = writeln!(
            out,
            "  {:<7} {:<22} {}",
            status_word(p.status),
            p.id,
            p.detail
        );
        for e in &p.evidence {
            let _ = writeln!(out, "          - {e}");
        }
        if let Some(r) = &p.remedy {
            let _ = writeln!(out, "          fix: {r}");
        }
    }

    let c = &plan.choices;
    let _ = writeln!(out, "\nChosen");
    let _ = writeln!(
        out,
        "  pod CIDR      {} (cluster-pool IPAM; flannel keeps {})",
        c.pod_cidr,
        c.flannel_cidrs.join(",")
    );
    let _ = writeln!(
        out,
        "  tunnel        vxlan on UDP {} (flannel keeps UDP {})",
        c.tunnel_port,
        super::plan::FLANNEL_VXLAN_PORT
    );
    let _ = writeln!(
        out,
        "  CNI dirs      while flannel runs: conf {}, bin {}; after: conf {}, bin {}",
        c.migration_cni.0, c.migration_cni.1, c.final_cni.0, c.final_cni.1
    );
    let _ = writeln!(
        out,
        "  node config   {} CiliumNodeConfig",
        c.node_config_api
    );
    for (stage, v) in [
        (ValuesStage::Migration, &plan.migration_values),
        (ValuesStage::Final, &plan.final_values),
    ] {
        let _ = writeln!(
            out,
            "\n{} ({})",
            stage.file_name(),
            super::runbook::values_path(&access.state_dir, stage).display()
        );
        for l in serde_norway::to_string(v).unwrap_or_default().lines() {
            let _ = writeln!(out, "  | {l}");
        }
    }
    let _ = writeln!(out, "\nCiliumNodeConfig");
    for l in serde_norway::to_string(&plan.node_config)
        .unwrap_or_default()
        .lines()
    {
        let _ = writeln!(out, "  | {l}");
    }

    let _ = writeln!(out, "\nRunbook: {} steps", steps.len());
    let mut heading = String::new();
    for (i, s) in steps.iter().enumerate() {
        let h = phase(s);
        if h != heading {
            let _ = writeln!(out, "\n  -- {h}");
            heading = h;
        }
        let _ = writeln!(out, "{:>3}. {}", i + 1, s.title);
        let _ = writeln!(out, "       id:      {}", s.id);
        let _ = writeln!(out, "       changes: {}", s.changes);
        let _ = writeln!(out, "       why:     {}", s.why);
        let _ = writeln!(out, "       undo:    {}", s.undo);
        let _ = writeln!(out, "       runs:    {}", runs(s, plan, access));
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &plan.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        match plan.exit_code() {
            0 =>
                "READY: every precondition holds; `preflight install --cluster` carries this out (or --emit-gitops for Argo CD)",
            1 => "NOT READY: a precondition fails (above)",
            _ => "UNDECIDED: a precondition could not be checked (above)",
        }
    );
    out
}

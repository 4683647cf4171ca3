//! `plan --cluster --emit-gitops DIR`: the migration's cluster-side stages as manifests an Argo
//! CD app-of-apps syncs one stage at a time. Each `stage-N-*/` directory is the whole desired
//! state of that stage (the root Application's `path` moves from one to the next, and its
//! `prune` removes what a later stage no longer holds, such as the `CiliumNodeConfig`):
//!
//! 1. `stage-1-install/`: Cilium with the migration values (next to flannel, no pod managed);
//! 2. `stage-2-node-config/`: the same, plus the `CiliumNodeConfig` (labelled nodes move);
//! 3. `stage-3-final/`: Cilium with the final values, the `CiliumNodeConfig` gone.
//!
//! Node steps (prepare, per-node moves, flannel off) cannot be synced from Git: `runbook.txt`
//! says which run between which stages. Each stage also holds a ConfigMap
//! `kube-system/preflight-migration-stage` naming the stage, so the cluster shows where it is.
use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use anyhow::Context;
use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use serde_json::{Value, json};

use super::{
    plan::ClusterPlan,
    runbook::{Access, ClusterStep, ValuesStage},
};
use crate::plan::gitops::CILIUM_HELM_REPO;

/// The stages, their directories, and the values each installs.
pub const STAGES: [(&str, ValuesStage, bool); 3] = [
    ("stage-1-install", ValuesStage::Migration, false),
    ("stage-2-node-config", ValuesStage::Migration, true),
    ("stage-3-final", ValuesStage::Final, false),
];

/// The Cilium Application of a stage: the chart from Cilium's repository at the target
/// version, values inline. Sync wave 0: the CRDs the operator registers exist before wave 1.
pub fn cilium_application(plan: &ClusterPlan, values: &Value) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": plan.opts.release,
            "namespace": "argocd",
            "annotations": {"argocd.argoproj.io/sync-wave": "0"},
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": CILIUM_HELM_REPO,
                "chart": "cilium",
                "targetRevision": plan.opts.cilium_version,
                "helm": {"releaseName": plan.opts.release, "valuesObject": values},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": plan.opts.namespace},
            "syncPolicy": {"automated": {"prune": false, "selfHeal": true}},
        },
    })
}

/// The per-node config with what Argo CD needs to sync a custom resource whose CRD the Cilium
/// operator registers: a later wave, and no dry run while the CRD is missing.
pub fn node_config_manifest(plan: &ClusterPlan) -> Value {
    let mut v = plan.node_config.clone();
    v["metadata"]["annotations"] = json!({
        "argocd.argoproj.io/sync-wave": "1",
        "argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true",
    });
    v
}

/// The stage marker.
pub fn stage_configmap(plan: &ClusterPlan, stage: &str, next: &str) -> ConfigMap {
    let mut data = BTreeMap::new();
    data.insert("stage".to_string(), stage.to_string());
    data.insert("podCIDR".to_string(), plan.choices.pod_cidr.clone());
    data.insert(
        "tunnelPort".to_string(),
        plan.choices.tunnel_port.to_string(),
    );
    data.insert("next".to_string(), next.to_string());
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("preflight-migration-stage".into()),
            namespace: Some("kube-system".into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "preflight".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// The root Application: points at the current stage directory of the user's Git repository.
pub fn app_of_apps(repo: &str, path: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "cilium-migration", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo, "targetRevision": "HEAD", "path": path},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "argocd"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    })
}

fn yaml(v: &impl serde::Serialize) -> anyhow::Result<String> {
    serde_norway::to_string(v).context("serialising a manifest")
}

/// What runs between the stages, for `runbook.txt`.
fn between(steps: &[ClusterStep], from: &str, to: &str) -> Vec<String> {
    let start = steps
        .iter()
        .position(|s| s.id == from)
        .map(|i| i + 1)
        .unwrap_or(0);
    let end = steps.iter().position(|s| s.id == to).unwrap_or(steps.len());
    steps
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .map(|s| s.title.clone())
        .collect()
}

/// Write every stage into `dir` (created when missing). Returns the files written.
pub fn emit(
    plan: &ClusterPlan,
    steps: &[ClusterStep],
    access: &Access,
    dir: &Path,
    repo: &str,
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let mut write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        written.push(rel.to_string());
        Ok(())
    };
    let header =
        "# Written by preflight plan --cluster (dual-overlay migration); see runbook.txt.\n";
    let nexts = [
        "wait until daemonset/cilium is ready on every node, then sync stage-2-node-config",
        "move each node (runbook.txt: cordon, drain, label, restart its Cilium pod, cilium-cni stage, validate, uncordon), then sync stage-3-final",
        "run the flannel-off stage on the servers, then on the agents, then remove the node label",
    ];
    for (i, (name, values_stage, with_node_config)) in STAGES.iter().enumerate() {
        let values = match values_stage {
            ValuesStage::Migration => &plan.migration_values,
            ValuesStage::Final => &plan.final_values,
        };
        write(
            &format!("{name}/cilium-application.yaml"),
            &format!("{header}{}", yaml(&cilium_application(plan, values))?),
        )?;
        write(
            &format!("{name}/preflight-migration-stage.yaml"),
            &format!("{header}{}", yaml(&stage_configmap(plan, name, nexts[i]))?),
        )?;
        if *with_node_config {
            write(
                &format!("{name}/ciliumnodeconfig.yaml"),
                &format!("{header}{}", yaml(&node_config_manifest(plan))?),
            )?;
        }
    }
    for stage in [ValuesStage::Migration, ValuesStage::Final] {
        let v = match stage {
            ValuesStage::Migration => &plan.migration_values,
            ValuesStage::Final => &plan.final_values,
        };
        write(stage.file_name(), &format!("{header}{}", yaml(v)?))?;
    }
    write(
        "app-of-apps.yaml",
        &format!(
            "{header}# Point `path` at stage-2-node-config, then stage-3-final, as runbook.txt says.\n{}",
            yaml(&app_of_apps(repo, STAGES[0].0))?
        ),
    )?;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Dual-overlay migration, stage by stage ({})\n",
        super::GUIDE
    );
    let blocks: [(&str, Vec<String>); 4] = [
        (
            "Before stage-1-install (on every node)",
            between(steps, "", "cluster.helm.migration"),
        ),
        (
            "Sync stage-1-install, then",
            between(steps, "cluster.helm.migration", "cluster.node-config"),
        ),
        (
            "Sync stage-2-node-config, then node by node",
            between(steps, "cluster.node-config", "cluster.helm.final"),
        ),
        (
            "Sync stage-3-final, then",
            between(steps, "cluster.restart.cilium", "\u{0}"),
        ),
    ];
    for (title, lines) in blocks {
        let _ = writeln!(text, "{title}:");
        for l in lines {
            let _ = writeln!(text, "  - {l}");
        }
    }
    let _ = writeln!(
        text,
        "\nThe full runbook with what each step changes, why, and how it is undone:\n\n{}",
        super::render::render(plan, steps, access)
    );
    write("runbook.txt", &text)?;
    Ok(written)
}

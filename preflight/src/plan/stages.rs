//! The node's part of a whole-cluster dual-overlay migration (`install --migration-stage`):
//! three stages cut from the node's install plan, each under the node's journal with its step
//! ids prefixed `STAGE/`, so that `rollback --migration-stage STAGE` undoes one stage and leaves
//! the others (the cluster rollback walks them in reverse order).
//!
//! - `prepare` (before Cilium lands anywhere): bpffs mounted shared and persistent, stale
//!   Cilium state and pins moved aside, and everything the agent, k3s and cni-exclusive will
//!   write recorded as it is now;
//! - `cilium-cni` (the node is labelled and its agent wrote its conflist): k3s restarted;
//! - `flannel-off` (every node on Cilium, final values installed): the server's drop-in, k3s
//!   restarted, containerd's CNI dirs checked, flannel's links, iptables chains and conflists
//!   cleared. The install plan's Helm, wait and post-check steps are the cluster's.
use super::{Action, Plan, PlanOptions, Step, build_install, node::NodeState};

/// The stages, by the name the command line and the cluster journal use.
pub const STAGES: [&str; 3] = ["prepare", "cilium-cni", "flannel-off"];

/// Journal step ids of a stage start with this.
pub fn prefix(stage: &str) -> String {
    format!("{stage}/")
}

/// Paths and links Cilium (the agent, its install-cni init container, cni-exclusive) and k3s
/// will write on this node at any point of the migration: recorded by `prepare`, so that its
/// rollback returns each to what it was.
fn guarded(node: &NodeState) -> (Vec<String>, Vec<String>) {
    let conf_now = node
        .cni_now
        .as_ref()
        .map(|c| c.conf_dir.clone())
        .unwrap_or_else(|| super::node::K3S_CNI_CONF_DIR.into());
    let bin_now = node
        .cni_now
        .as_ref()
        .map(|c| super::node::versionless(&c.bin_dir))
        .unwrap_or_else(|| "/var/lib/rancher/k3s/data/current/bin".into());
    let mut paths = vec![
        super::node::CONTAINERD_CONFIG.to_string(),
        format!("{conf_now}/05-cilium.conflist"),
        format!("{bin_now}/cilium-cni"),
        format!("{}/05-cilium.conflist", node.cni_after.conf_dir),
        format!("{}/cilium-cni", node.cni_after.bin_dir),
    ];
    // cni-exclusive renames every other config in the agent's conf dir to NAME.cilium_bak.
    for f in &node.flannel_conflists {
        paths.push(f.clone());
        paths.push(format!("{f}.cilium_bak"));
    }
    paths.dedup();
    let links = ["cilium_host", "cilium_net", "cilium_vxlan"]
        .map(String::from)
        .to_vec();
    (paths, links)
}

/// The plan of one stage on this node.
pub fn build(node: &NodeState, opts: &PlanOptions, stage: &str) -> anyhow::Result<Plan> {
    let install = build_install(node, opts)?;
    let keep = |s: &Step| -> bool {
        let id = s.id.as_str();
        match stage {
            "prepare" => id.starts_with("bpffs.") || id.starts_with("state.stale:"),
            "cilium-cni" => false,
            "flannel-off" => {
                id == "k3s.drop-in"
                    || id == "k3s.guard"
                    || id == "k3s.cni-paths"
                    || id.starts_with("cni.conflist:")
                    || id.starts_with("links.delete:")
                    || id == "iptables.flannel"
                    || (id == "k3s.restart")
            }
            _ => false,
        }
    };
    let mut steps: Vec<Step> = install.steps.iter().filter(|s| keep(s)).cloned().collect();
    let k3s_unit = node
        .k3s
        .as_ref()
        .map(|k| k.unit.clone())
        .unwrap_or_else(|| "k3s".into());
    match stage {
        "prepare" => {
            let (paths, links) = guarded(node);
            steps.push(
                Step::new(
                    "migration.guard",
                    "Record what Cilium and k3s will write during the migration",
                    Action::Guard { paths, links },
                )
                .changes("nothing (journal only)")
                .why(
                    "the agent writes its conflist in both CNI dirs and cilium-cni, cni-exclusive \
                     renames flannel's conflist, k3s rewrites containerd's config.toml, the agent \
                     creates cilium_host/cilium_net/cilium_vxlan: recorded now, before Cilium \
                     runs here, this stage's rollback returns each of them",
                )
                .undo("each path and link back to what it is now"),
            );
        }
        "cilium-cni" => {
            let restart = install
                .steps
                .iter()
                .find(|s| s.id == "k3s.restart")
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("the node plan has no k3s restart"))?;
            steps.push(
                Step {
                    state: super::StepState::Todo,
                    fixes: Vec::new(),
                    ..restart
                }
                .changes(format!(
                    "{k3s_unit} restarts; containerd reads the agent's 05-cilium.conflist, new pods get Cilium's network"
                ))
                .why("the node is labelled and its agent wrote its conflist (the guide reboots the node here)")
                .undo("restarted again once the conflists are back"),
            );
        }
        "flannel-off" => {}
        other => anyhow::bail!(
            "--migration-stage {other}: not a stage (one of {})",
            STAGES.join(", ")
        ),
    }
    for s in &mut steps {
        s.id = format!("{}{}", prefix(stage), s.id);
    }
    Ok(Plan {
        title: format!(
            "Migration stage {stage} on {} (dual-overlay migration to Cilium {})",
            node.root.display(),
            opts.cilium_version
        ),
        steps,
        notes: vec![format!(
            "one stage of `preflight install --cluster`; `preflight rollback --migration-stage {stage}` undoes only this stage"
        )],
        values: None,
    })
}

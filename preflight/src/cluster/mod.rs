//! Whole-cluster migration from flannel to Cilium by Cilium's dual-overlay procedure ("Migrating
//! a cluster to Cilium", Documentation/installation/k8s-install-migration.rst): Cilium runs
//! next to flannel on its own pod CIDR and VXLAN port, nodes move one by one through a
//! `CiliumNodeConfig`, and flannel is turned off only at the end.
//!
//! - [`plan`]: the preconditions checked on every node's report and the values chosen;
//! - [`runbook`]: the ordered cluster and per-node steps, each with what it changes, why, and
//!   how it is undone; [`gitops`]: the same stages as manifests for an Argo CD app-of-apps;
//! - [`kube`]: the Kubernetes API (kube-rs); [`journal`] and [`run`]: carrying the runbook out
//!   and undoing it, node stages through `preflight install --migration-stage` on each node.
//!
//! Placed above `plan` and `fleet`: it reads reports with fleet's reader and builds on the node
//! plan's values and runner.
pub mod gitops;
pub mod journal;
pub mod kube;
pub mod plan;
pub mod render;
pub mod run;
pub mod runbook;

/// The guide this procedure follows, as cited in output and docs.
pub const GUIDE: &str = "Cilium, \"Migrating a cluster to Cilium\" (Documentation/installation/k8s-install-migration.rst)";
/// The label the `CiliumNodeConfig` selects (the guide's name).
pub const MIGRATION_LABEL: &str = "io.cilium.migration/cilium-default";
/// The `CiliumNodeConfig`'s name and namespace (the guide's).
pub const NODE_CONFIG_NAME: &str = "cilium-default";

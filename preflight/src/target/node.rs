//! Values against this node: what the user's values say next to what the node's runtime does.
//! The facts come from the host facts (`host::cni`, `host::k3s`); the k3s settings themselves
//! (flannel, kube-proxy) are judged by `checks::k3s`. The judgement is a pure function over a
//! small struct, so it is tested without a node.
use super::{Target, values::as_text};
use crate::{facts::Facts, report::Status, target::validate::Finding};

/// FACTS §5: Rancher Desktop's CNI plugin dir.
pub const RANCHER_DESKTOP_CNI_BIN: &str = crate::host::cni::RANCHER_DESKTOP_BIN;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHints {
    pub rancher_desktop: bool,
    /// Where this node's kubelet/containerd looks for CNI plugins; `None`: could not tell.
    pub cni_bin_dirs: Option<Vec<String>>,
    /// Where that was read (a config file, or why defaults apply).
    pub cni_dirs_source: Option<String>,
}

impl NodeHints {
    pub fn from_facts(facts: &Facts) -> Self {
        let cni = &facts.cni;
        Self {
            rancher_desktop: facts.k3s.rancher_desktop,
            // An empty list means the runtime's config could not be read at all.
            cni_bin_dirs: (!cni.bin_dirs.is_empty()).then(|| cni.bin_dirs.clone()),
            cni_dirs_source: (!cni.dirs_source.is_empty()).then(|| cni.dirs_source.clone()),
        }
    }
}

/// `cni.binPath` must be where this node's runtime looks for plugins, or pods never get a
/// network (`failed to find plugin "cilium-cni" in path [...]`, cilium/cilium#27702).
pub fn cni_bin_path(t: &Target, node: &NodeHints) -> Finding {
    let bin_path =
        as_text(t.value("cni.binPath").as_ref()).unwrap_or_else(|| "/opt/cni/bin".into());
    let Some(dirs) = &node.cni_bin_dirs else {
        return Finding {
            status: Status::Unknown,
            detail: "could not tell where this node's container runtime looks for CNI plugins"
                .into(),
            remedy: None,
            patch: None,
        };
    };
    let source = node
        .cni_dirs_source
        .clone()
        .unwrap_or_else(|| "the container runtime's config".into());
    if dirs.iter().any(|d| d == &bin_path) {
        if bin_path.contains("/var/lib/rancher/k3s/data/") {
            return Finding::warn(format!(
                "cni.binPath {bin_path} is a k3s data dir that changes on every k3s upgrade"
            ))
            .remedy("start k3s with `flannel-backend: none` so containerd uses /opt/cni/bin");
        }
        return Finding::pass(format!("cni.binPath {bin_path} is searched ({source})"));
    }
    // k3s with flannel points containerd at its own data dir; with `flannel-backend: none` it
    // uses /opt/cni/bin (FACTS §5). Pinning cni.binPath to the data dir breaks on upgrade.
    let k3s_data = "/var/lib/rancher/k3s/data/";
    if !dirs.is_empty() && dirs.iter().all(|d| d.starts_with(k3s_data)) {
        return Finding::warn(format!(
            "this node's runtime looks in {} because k3s runs flannel; cni.binPath {bin_path} \
             is right only once k3s runs with flannel-backend: none",
            dirs.join(", ")
        ))
        .remedy(
            "set `flannel-backend: none` in the k3s config (do not point cni.binPath at a k3s data dir)",
        );
    }
    let wanted = if node.rancher_desktop {
        RANCHER_DESKTOP_CNI_BIN.to_string()
    } else {
        dirs.first()
            .cloned()
            .unwrap_or_else(|| "/opt/cni/bin".into())
    };
    Finding::fail(format!(
        "cni.binPath {bin_path} is not where this node looks for CNI plugins ({}; from {source}): \
         the agent's cilium-cni would never be found",
        dirs.join(", ")
    ))
    .remedy(format!("set `cni.binPath: {wanted}`"))
    .patch(super::values::patch_of(
        "cni.binPath",
        serde_json::Value::String(wanted),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target(values: serde_json::Value) -> Target {
        let mut t = Target::chart_defaults("1.16.4");
        t.values = values;
        t
    }

    #[test]
    fn cni_bin_path_against_the_node() {
        let k3s_with_flannel = NodeHints {
            cni_bin_dirs: Some(vec!["/var/lib/rancher/k3s/data/current/bin".into()]),
            ..Default::default()
        };
        let rd = NodeHints {
            rancher_desktop: true,
            cni_bin_dirs: Some(vec![RANCHER_DESKTOP_CNI_BIN.into()]),
            ..Default::default()
        };
        let plain = NodeHints {
            cni_bin_dirs: Some(vec!["/opt/cni/bin".into()]),
            ..Default::default()
        };
        let default = target(json!({}));
        let f = cni_bin_path(&default, &rd);
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(f.remedy.as_deref().unwrap().contains("/usr/libexec/cni"));
        assert_eq!(
            f.patch,
            Some(json!({"cni": {"binPath": "/usr/libexec/cni"}}))
        );
        let fixed = target(json!({"cni": {"binPath": "/usr/libexec/cni"}}));
        assert_eq!(cni_bin_path(&fixed, &rd).status, Status::Pass);
        assert_eq!(cni_bin_path(&default, &plain).status, Status::Pass);
        let data_dir = target(json!({"cni": {"binPath": "/var/lib/rancher/k3s/data/current/bin"}}));
        assert_eq!(
            cni_bin_path(&data_dir, &k3s_with_flannel).status,
            Status::Warn
        );
        // Flannel still on: the runtime's dir is the k3s data dir; the fix is k3s, not a patch.
        let f = cni_bin_path(&default, &k3s_with_flannel);
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.patch.is_none());
        assert_eq!(
            cni_bin_path(&default, &NodeHints::default()).status,
            Status::Unknown
        );
    }
}

//! Values against this node: the facts the values cross-checks need, in one small struct, so the
//! checks are pure and tested without a node. `Option` fields are "could not tell" (→ unknown).
//! Filled from the host facts (issue 3's `host::k3s`/`host::cni`) by [`NodeHints::from_facts`].
use super::{Target, derive, values::as_text};
use crate::{report::Status, target::validate::Finding};

/// FACTS §5: Rancher Desktop's CNI plugin dir.
pub const RANCHER_DESKTOP_CNI_BIN: &str = "/usr/libexec/cni";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHints {
    /// Whether k3s is installed here; `None` when its config could not be read.
    pub k3s: Option<bool>,
    pub rancher_desktop: bool,
    /// k3s `flannel-backend` (None: k3s default, vxlan).
    pub k3s_flannel_backend: Option<String>,
    /// k3s `disable-kube-proxy`.
    pub k3s_disable_kube_proxy: Option<bool>,
    /// Where this node's kubelet/containerd looks for CNI plugins, and where that was read.
    pub cni_bin_dirs: Option<Vec<String>>,
    pub cni_dirs_source: Option<String>,
    /// `uname -r` of the node's kernel.
    pub kernel_release: Option<String>,
    /// Where the facts came from, for evidence lines.
    pub evidence: Vec<String>,
}

fn unknown(why: &str) -> Finding {
    Finding {
        status: Status::Unknown,
        detail: why.to_string(),
        remedy: None,
        patch: None,
    }
}

/// k3s must not run flannel under Cilium (FACTS §5: `flannel-backend: none`).
pub fn k3s_flannel(t: &Target, node: &NodeHints) -> Finding {
    let _ = t;
    match node.k3s {
        None => unknown("could not read the k3s configuration"),
        Some(false) => Finding::skip("k3s is not installed on this node"),
        Some(true) => match node.k3s_flannel_backend.as_deref() {
            Some("none") => Finding::pass("k3s runs with flannel-backend: none"),
            other => Finding::fail(format!(
                "k3s still runs flannel (flannel-backend: {}); two CNIs fight over pod networking \
                 and flannel.1 holds the VXLAN port 8472",
                other.unwrap_or("vxlan (default)")
            ))
            .remedy(
                "add `flannel-backend: none` and `disable-network-policy: true` to \
                 /etc/rancher/k3s/config.yaml and restart k3s before installing Cilium",
            ),
        },
    }
}

/// kube-proxy replacement next to a running kube-proxy double-handles Services.
pub fn k3s_kube_proxy(t: &Target, node: &NodeHints) -> Finding {
    if !derive::kube_proxy_replacement(&t.effective_values()) {
        return Finding::skip("kube-proxy is kept");
    }
    match (node.k3s, node.k3s_disable_kube_proxy) {
        (None, _) => unknown("could not read the k3s configuration"),
        (Some(false), _) => Finding::skip("k3s is not installed on this node"),
        (Some(true), Some(true)) => Finding::pass("k3s runs with disable-kube-proxy: true"),
        (Some(true), _) => Finding::fail(
            "kubeProxyReplacement is on but k3s still runs its kube-proxy",
        )
        .remedy("add `disable-kube-proxy: true` to /etc/rancher/k3s/config.yaml and restart k3s"),
    }
}

/// `cni.binPath` must be where this node's runtime looks for plugins, or pods never get a
/// network (`failed to find plugin "cilium-cni" in path [...]`, cilium/cilium#27702).
pub fn cni_bin_path(t: &Target, node: &NodeHints) -> Finding {
    let bin_path =
        as_text(t.value("cni.binPath").as_ref()).unwrap_or_else(|| "/opt/cni/bin".into());
    let Some(dirs) = &node.cni_bin_dirs else {
        return unknown("could not tell where this node's container runtime looks for CNI plugins");
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
        .remedy("set `flannel-backend: none` in the k3s config (do not point cni.binPath at a k3s data dir)");
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

impl NodeHints {
    /// Reads what the cross-checks need through the host root. Only the kernel release for now;
    /// k3s and CNI facts come from issue 3's host facts when merged (until then: unknown).
    pub fn gather(host: &crate::host::HostRoot) -> Self {
        let mut hints = Self::default();
        if let Ok(release) = host.read_text("/proc/sys/kernel/osrelease") {
            hints.kernel_release = Some(release.trim().to_string());
            hints.evidence.push("/proc/sys/kernel/osrelease".into());
        }
        hints
    }
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
    fn cross_checks_against_the_node() {
        let k3s_with_flannel = NodeHints {
            k3s: Some(true),
            k3s_flannel_backend: None,
            cni_bin_dirs: Some(vec!["/var/lib/rancher/k3s/data/current/bin".into()]),
            ..Default::default()
        };
        let rd = NodeHints {
            k3s: Some(true),
            rancher_desktop: true,
            k3s_flannel_backend: Some("none".into()),
            k3s_disable_kube_proxy: Some(true),
            cni_bin_dirs: Some(vec![RANCHER_DESKTOP_CNI_BIN.into()]),
            ..Default::default()
        };
        let plain = NodeHints {
            k3s: Some(false),
            cni_bin_dirs: Some(vec!["/opt/cni/bin".into()]),
            ..Default::default()
        };
        let kpr = target(json!({"kubeProxyReplacement": true}));
        let default = target(json!({}));
        assert_eq!(
            k3s_flannel(&default, &k3s_with_flannel).status,
            Status::Fail
        );
        assert_eq!(k3s_flannel(&default, &rd).status, Status::Pass);
        assert_eq!(k3s_flannel(&default, &plain).status, Status::Skip);
        assert_eq!(
            k3s_flannel(&default, &NodeHints::default()).status,
            Status::Unknown
        );
        assert_eq!(k3s_kube_proxy(&kpr, &k3s_with_flannel).status, Status::Fail);
        assert_eq!(k3s_kube_proxy(&kpr, &rd).status, Status::Pass);
        assert_eq!(
            k3s_kube_proxy(&default, &k3s_with_flannel).status,
            Status::Skip
        );

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
        assert_eq!(
            cni_bin_path(&default, &NodeHints::default()).status,
            Status::Unknown
        );
    }
}

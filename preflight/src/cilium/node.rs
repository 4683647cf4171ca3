//! Values against this node: what the user's values say next to what the node's runtime does.
//! The facts come from the host facts (`host::cni`, `host::k3s`); the k3s settings themselves
//! (flannel, kube-proxy) are judged by `checks::k3s`. The judgement is a pure function over a
//! small struct, so it is tested without a node.
use super::{
    Capability, Target,
    values::{as_text, truthy},
};
use crate::model::Outcome;

/// docs/upstream.md#k3s-and-rancher-desktop: Rancher Desktop's CNI plugin dir.
pub const RANCHER_DESKTOP_CNI_BIN: &str = crate::host::cni::RANCHER_DESKTOP_BIN;

/// What the values cross-checks need to know about the node (`Facts::node_hints` fills it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeHints {
    pub rancher_desktop: bool,
    /// Where this node's kubelet/containerd looks for CNI plugins; `None`: could not tell.
    pub cni_bin_dirs: Option<Vec<String>>,
    /// Where that was read (a config file, or why defaults apply).
    pub cni_dirs_source: Option<String>,
    /// The runtime's CNI conf dir.
    pub cni_conf_dir: Option<String>,
    /// Mount points of cgroup2 filesystems; `None`: the mount table was not readable.
    pub cgroup2_mounts: Option<Vec<String>>,
    /// The IPv4 pod CIDR from the k3s config (`cluster-cidr`), when it sets one.
    pub cluster_cidr: Option<String>,
    /// Whether kube-proxy keeps running on this node.
    pub kube_proxy: KubeProxy,
}

/// kube-proxy on this node, as far as its files tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum KubeProxy {
    /// k3s runs its embedded kube-proxy (no `disable-kube-proxy`).
    Runs,
    /// k3s is told `disable-kube-proxy: true`.
    Removed,
    /// Not a k3s node, or its config could not all be read: the cluster decides.
    #[default]
    CannotTell,
}

/// A values-against-node rule.
pub type CrossCheck = fn(&Target, &NodeHints) -> Outcome;

/// Every cross-check whose fix is a value, by check id (the verdict turns their patches into
/// recommendations).
pub const PATCHING: &[(&str, CrossCheck)] = &[
    ("values.node.cni-bin-path", cni_bin_path),
    ("values.node.cni-conf-path", cni_conf_path),
    ("values.node.cgroup-host-root", cgroup_host_root),
    ("values.native-routing-cidr", native_routing_cidr),
];

/// Native routing with masquerading needs `ipv4NativeRoutingCIDR`, or the agent exits at start:
/// cilium-agent's `checkIPv4NativeRoutingCIDR` (pkg/option/config.go, cilium/cilium#26179,
/// #27747) refuses a config with no IPv4 native-routing CIDR when IPv4 and IPv4 masquerading are
/// on, the BPF ip-masq-agent is off, routing is native, and IPAM is not `eni`/`alibabacloud`
/// (those read it from the cloud). `autoDirectNodeRoutes` does not exempt it. Its error text
/// (1.15+): "native routing cidr must be configured with option --ipv4-native-routing-cidr in
/// combination with --enable-ipv4=true --enable-ipv4-masquerade=true --enable-ip-masq-agent=false
/// --routing-mode=native --ipam=<mode>". The fix uses the node's k3s cluster-cidr when known.
pub fn native_routing_cidr(t: &Target, node: &NodeHints) -> Outcome {
    if super::derive::routing(&t.effective_values()) != super::derive::Routing::Native {
        return Outcome::skip("tunnel routing");
    }
    let on =
        |path: &str, default: bool| t.value(path).as_ref().map_or(default, |v| truthy(Some(v)));
    let ipam = as_text(t.value("ipam.mode").as_ref()).unwrap_or_else(|| "cluster-pool".into());
    let cidr = as_text(t.value("ipv4NativeRoutingCIDR").as_ref()).filter(|c| !c.is_empty());
    let needed = on("ipv4.enabled", true)
        && on("enableIPv4Masquerade", true)
        && !on("ipMasqAgent.enabled", false)
        && !matches!(ipam.as_str(), "eni" | "alibabacloud");
    if cidr.is_none() && needed {
        let (value, whence) = match &node.cluster_cidr {
            Some(c) => (c.clone(), "this node's k3s cluster-cidr".to_string()),
            None => (
                super::validate::K3S_DEFAULT_CLUSTER_CIDR.to_string(),
                "k3s's default pod CIDR; use your cluster's own".to_string(),
            ),
        };
        return Outcome::fail(format!(
            "native routing with IPv4 masquerading and no `ipv4NativeRoutingCIDR`: the agent \
             refuses to start (\"native routing cidr must be configured with option \
             --ipv4-native-routing-cidr in combination with --enable-ipv4=true \
             --enable-ipv4-masquerade=true --enable-ip-masq-agent=false --routing-mode=native \
             --ipam={ipam}\")"
        ))
        .remedy(format!(
            "set `ipv4NativeRoutingCIDR: {value}` ({whence}), or turn masquerading off \
             (`enableIPv4Masquerade: false`) if the network routes pod IPs"
        ))
        .patch(serde_json::json!({ "ipv4NativeRoutingCIDR": value }));
    }
    if !on("autoDirectNodeRoutes", false) {
        return Outcome::warn(
            "native routing without `autoDirectNodeRoutes`: pod routes between nodes must come \
             from your router or BGP",
        );
    }
    match cidr {
        Some(c) => Outcome::pass(format!("native routing for {c} with direct node routes")),
        None => Outcome::pass("native routing without masquerading: no CIDR needed"),
    }
}

/// Kube-proxy replacement without `k8sServiceHost`: once kube-proxy is gone nothing routes the
/// `kubernetes` Service, and the agent cannot reach the API server through it. Whether kube-proxy
/// is gone is the node's (k3s `disable-kube-proxy`); where that cannot be told, neither can this.
pub fn k8s_service_host(t: &Target, node: &NodeHints) -> Outcome {
    if !super::derive::kube_proxy_replacement(&t.effective_values()) {
        return Outcome::skip("kube-proxy is kept");
    }
    let host = as_text(t.value("k8sServiceHost").as_ref()).unwrap_or_default();
    if !host.is_empty() {
        let port = as_text(t.value("k8sServicePort").as_ref()).unwrap_or_else(|| "443".into());
        return Outcome::pass(format!("API server at {host}:{port}"));
    }
    let remedy = "set `k8sServiceHost` and `k8sServicePort` to the API server (k3s: the server's \
                  IP, 6443)";
    match node.kube_proxy {
        KubeProxy::Removed => Outcome::fail(
            "kube-proxy replacement without `k8sServiceHost`, and this node's k3s runs without \
             kube-proxy (disable-kube-proxy): the agent cannot reach the API server through the \
             kubernetes Service",
        )
        .remedy(remedy),
        KubeProxy::Runs => Outcome::warn(
            "kube-proxy replacement without `k8sServiceHost`: kube-proxy still runs here, so the \
             agent reaches the API server through the kubernetes Service for now; once kube-proxy \
             is removed it cannot",
        )
        .remedy(remedy),
        KubeProxy::CannotTell => unknown(
            "kube-proxy replacement without `k8sServiceHost`: whether kube-proxy is removed \
             from this cluster cannot be told from the node; without it the agent cannot reach \
             the API server through the kubernetes Service",
        )
        .remedy(remedy),
    }
}

/// `cni.binPath` must be where this node's runtime looks for plugins, or pods never get a
/// network (`failed to find plugin "cilium-cni" in path [...]`, cilium/cilium#27702).
pub fn cni_bin_path(t: &Target, node: &NodeHints) -> Outcome {
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
            return Outcome::warn(format!(
                "cni.binPath {bin_path} is a k3s data dir that changes on every k3s upgrade"
            ))
            .remedy("start k3s with `flannel-backend: none` so containerd uses /opt/cni/bin");
        }
        return Outcome::pass(format!("cni.binPath {bin_path} is searched ({source})"));
    }
    // k3s with flannel points containerd at its own data dir; with `flannel-backend: none` it uses
    // /opt/cni/bin (docs/upstream.md#k3s-and-rancher-desktop). Pinning cni.binPath to the data dir
    // breaks on upgrade.
    let k3s_data = "/var/lib/rancher/k3s/data/";
    if !dirs.is_empty() && dirs.iter().all(|d| d.starts_with(k3s_data)) {
        return Outcome::warn(format!(
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
    Outcome::fail(format!(
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

fn unknown(detail: &str) -> Outcome {
    Outcome::unknown(detail)
}

/// `cni.confPath` must be the runtime's conf dir, or the runtime never sees Cilium's config.
pub fn cni_conf_path(t: &Target, node: &NodeHints) -> Outcome {
    let conf_path =
        as_text(t.value("cni.confPath").as_ref()).unwrap_or_else(|| "/etc/cni/net.d".into());
    let Some(dir) = &node.cni_conf_dir else {
        return unknown("could not tell which CNI conf dir this node's container runtime reads");
    };
    if *dir == conf_path {
        return Outcome::pass(format!(
            "cni.confPath {conf_path} is the runtime's conf dir"
        ));
    }
    // k3s with flannel reads its own agent dir; `flannel-backend: none` switches to the default.
    if dir.starts_with("/var/lib/rancher/k3s/agent/") {
        return Outcome::warn(format!(
            "the runtime reads {dir} because k3s runs flannel; cni.confPath {conf_path} is right \
             only once k3s runs with flannel-backend: none"
        ))
        .remedy("set `flannel-backend: none` in the k3s config");
    }
    Outcome::fail(format!(
        "cni.confPath {conf_path} is not the conf dir this node's runtime reads ({dir}): pods \
         would keep the old CNI or none"
    ))
    .remedy(format!("set `cni.confPath: {dir}`"))
    .patch(super::values::patch_of(
        "cni.confPath",
        serde_json::Value::String(dir.clone()),
    ))
}

/// With `cgroup.autoMount.enabled: false` the agent does not mount cgroup2 itself: the host must
/// have it at `cgroup.hostRoot`, or socket LB cannot attach (docs/upstream.md#node-requirements).
pub fn cgroup_host_root(t: &Target, node: &NodeHints) -> Outcome {
    if !t.needs(Capability::SocketLb) {
        return Outcome::skip("socket LB is not used");
    }
    let host_root = as_text(t.value("cgroup.hostRoot").as_ref())
        .unwrap_or_else(|| "/run/cilium/cgroupv2".into());
    if truthy(t.value("cgroup.autoMount.enabled").as_ref()) {
        return Outcome::skip(format!("the agent mounts cgroup2 at {host_root} itself"));
    }
    let Some(mounts) = &node.cgroup2_mounts else {
        return unknown("could not read the mount table");
    };
    if mounts.contains(&host_root) {
        return Outcome::pass(format!("cgroup2 is mounted at cgroup.hostRoot {host_root}"));
    }
    let existing = mounts.first().cloned();
    let mut f = Outcome::fail(format!(
        "cgroup.autoMount.enabled is false but no cgroup2 is mounted at cgroup.hostRoot \
         {host_root} (cgroup2 mounts: {}): socket LB cannot attach",
        if mounts.is_empty() {
            "none".to_string()
        } else {
            mounts.join(", ")
        }
    ));
    f = match existing {
        Some(m) => f
            .remedy(format!(
                "set `cgroup.hostRoot: {m}`, or `cgroup.autoMount.enabled: true`"
            ))
            .patch(super::values::patch_of(
                "cgroup.hostRoot",
                serde_json::Value::String(m),
            )),
        None => f
            .remedy("set `cgroup.autoMount.enabled: true` so the agent mounts cgroup2 itself")
            .patch(serde_json::json!({"cgroup": {"autoMount": {"enabled": true}}})),
    };
    f
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Status;

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

    #[test]
    fn conf_path_and_cgroup_root_against_the_node() {
        let plain = NodeHints {
            cni_conf_dir: Some("/etc/cni/net.d".into()),
            cgroup2_mounts: Some(vec!["/sys/fs/cgroup/unified".into()]),
            ..Default::default()
        };
        let default = target(json!({}));
        assert_eq!(cni_conf_path(&default, &plain).status, Status::Pass);
        let odd = NodeHints {
            cni_conf_dir: Some("/etc/kubernetes/cni/net.d".into()),
            ..Default::default()
        };
        let f = cni_conf_path(&default, &odd);
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.patch,
            Some(json!({"cni": {"confPath": "/etc/kubernetes/cni/net.d"}}))
        );
        let k3s = NodeHints {
            cni_conf_dir: Some("/var/lib/rancher/k3s/agent/etc/cni/net.d".into()),
            ..Default::default()
        };
        assert_eq!(cni_conf_path(&default, &k3s).status, Status::Warn);

        let mut kpr = target(json!({"kubeProxyReplacement": true}));
        kpr.capabilities = crate::cilium::derive::capabilities(&kpr.effective_values());
        assert_eq!(
            cgroup_host_root(&kpr, &plain).status,
            Status::Skip,
            "autoMount on"
        );
        let mut manual = target(json!({"kubeProxyReplacement": true,
                                       "cgroup": {"autoMount": {"enabled": false}}}));
        manual.capabilities = crate::cilium::derive::capabilities(&manual.effective_values());
        let f = cgroup_host_root(&manual, &plain);
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert_eq!(
            f.patch,
            Some(json!({"cgroup": {"hostRoot": "/sys/fs/cgroup/unified"}}))
        );
        let no_v2 = NodeHints {
            cgroup2_mounts: Some(vec![]),
            ..Default::default()
        };
        let f = cgroup_host_root(&manual, &no_v2);
        assert_eq!(
            f.patch,
            Some(json!({"cgroup": {"autoMount": {"enabled": true}}}))
        );
        let mut set = manual.clone();
        set.values = json!({"kubeProxyReplacement": true, "cgroup": {"autoMount": {"enabled": false},
                            "hostRoot": "/sys/fs/cgroup/unified"}});
        assert_eq!(cgroup_host_root(&set, &plain).status, Status::Pass);
        assert_eq!(cgroup_host_root(&default, &plain).status, Status::Skip);
    }

    #[test]
    fn native_routing_without_a_cidr_fails_and_the_fix_uses_the_nodes_cluster_cidr() {
        let k3s = NodeHints {
            cluster_cidr: Some("10.52.0.0/16".into()),
            ..Default::default()
        };
        let unknown = NodeHints::default();
        let native = target(json!({"routingMode": "native", "autoDirectNodeRoutes": true}));
        let f = native_routing_cidr(&native, &k3s);
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.detail.contains("native routing cidr must be configured"),
            "{f:?}"
        );
        assert_eq!(
            f.patch,
            Some(json!({"ipv4NativeRoutingCIDR": "10.52.0.0/16"}))
        );
        let f = native_routing_cidr(&native, &unknown);
        assert_eq!(
            f.patch,
            Some(json!({"ipv4NativeRoutingCIDR": "10.42.0.0/16"}))
        );
        // Cilium's exemptions: masquerading off, the BPF ip-masq-agent, cloud IPAM.
        for exempt in [
            json!({"enableIPv4Masquerade": false}),
            json!({"ipMasqAgent": {"enabled": true}}),
            json!({"ipam": {"mode": "eni"}}),
            json!({"ipv4NativeRoutingCIDR": "10.0.0.0/8"}),
        ] {
            let mut v = json!({"routingMode": "native", "autoDirectNodeRoutes": true});
            crate::cilium::values::merge(&mut v, exempt.clone());
            let f = native_routing_cidr(&target(v), &k3s);
            assert_eq!(f.status, Status::Pass, "{exempt}: {f:?}");
        }
        // Without direct node routes: only a warning once the CIDR is there.
        let f = native_routing_cidr(
            &target(json!({"routingMode": "native", "ipv4NativeRoutingCIDR": "10.0.0.0/8"})),
            &k3s,
        );
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert_eq!(
            native_routing_cidr(&target(json!({})), &k3s).status,
            Status::Skip
        );
    }
}

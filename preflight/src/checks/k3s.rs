//! k3s settings Cilium needs (docs/node-facts.md) and Rancher Desktop specifics.
use super::Check;
use crate::{
    facts::Facts,
    host::k3s::{CONFIG, K3sFacts},
    model::{Area, Capability::*, Outcome},
};

fn with_k3s(facts: &Facts, f: impl FnOnce(&K3sFacts) -> Outcome) -> Outcome {
    let k = &facts.k3s;
    if !k.present {
        return Outcome::skip("not a k3s node");
    }
    let mut out = f(k);
    if out.evidence.is_empty() {
        out = with_config_evidence(facts, out);
    }
    out
}

/// A setting-based check on a node whose k3s config could not all be read: the unread file may
/// set exactly this flag, so the answer is "could not tell", never a guess from the rest.
fn with_k3s_setting(facts: &Facts, f: impl FnOnce(&K3sFacts) -> Outcome) -> Outcome {
    let k = &facts.k3s;
    if k.present && !k.problems.is_empty() {
        let out = Outcome::unknown(format!(
            "could not read all of the k3s config ({}); the setting may be in the unread part",
            k.problems.join("; ")
        ))
        .remedy("fix the file named (file:line), then run preflight again");
        return k.problems.iter().fold(out, |o, p| o.evidence(p.clone()));
    }
    with_k3s(facts, f)
}

/// The config files a k3s setting came from (or that k3s runs on its defaults).
fn with_config_evidence(facts: &Facts, out: Outcome) -> Outcome {
    let k = &facts.k3s;
    if k.files.is_empty() {
        out.evidence(format!(
            "{} (absent: k3s defaults)",
            facts.host.display(CONFIG)
        ))
    } else {
        k.files.iter().fold(out, |o, f| o.evidence(f.clone()))
    }
}

pub fn checks() -> Vec<Check> {
    vec![
        Check::new("k3s.config", Area::K3s, "k3s config files parse")
            .remedy("fix the YAML at the file and line named (k3s itself refuses it too)")
            .evaluate(|facts, _| with_k3s(facts, |k| {
                if k.problems.is_empty() {
                    Outcome::pass(format!("{} file(s) read", k.files.len()))
                } else {
                    k.problems.iter().fold(Outcome::warn(k.problems.join("; ")), |o, p| o.evidence(p.clone()))
                }
            })),
        Check::new("k3s.flannel-backend", Area::K3s, "k3s runs without flannel (flannel-backend: none)")
            .needed_by(&[BaseDatapath])
            .remedy("add `flannel-backend: none` and `disable-network-policy: true` to /etc/rancher/k3s/config.yaml on every server, restart k3s, then delete flannel.1 and cni0")
            .evaluate(|facts, _| with_k3s_setting(facts, |k| match k.flannel_backend.as_deref() {
                Some("none") => Outcome::pass("flannel-backend: none"),
                Some(b) => Outcome::fail(format!("flannel-backend: {b}: k3s keeps running flannel, whose flannel.1 holds UDP 8472 and whose config wins over Cilium's")),
                None => Outcome::fail("flannel-backend not set: k3s runs flannel (vxlan) by default"),
            })),
        Check::new("k3s.network-policy", Area::K3s, "k3s's network policy controller disabled")
            .needed_by(&[BaseDatapath])
            .remedy("add `disable-network-policy: true` to /etc/rancher/k3s/config.yaml and restart k3s")
            .evaluate(|facts, _| with_k3s_setting(facts, |k| match k.disable_network_policy {
                Some(true) => Outcome::pass("disable-network-policy: true"),
                _ => Outcome::warn("k3s's embedded network policy controller stays on and programs iptables rules next to Cilium's policy"),
            })),
        Check::new("k3s.kube-proxy", Area::K3s, "k3s's kube-proxy and Cilium's replacement agree")
            // Base too: with kube-proxy disabled and no replacement, Services stop working.
            .needed_by(&[BaseDatapath, KubeProxyReplacement])
            .remedy("add `disable-kube-proxy: true` to /etc/rancher/k3s/config.yaml, restart k3s, and set k8sServiceHost/k8sServicePort in the Helm values")
            .evaluate(|facts, target| with_k3s_setting(facts, |k| match (k.disable_kube_proxy, target.needs(KubeProxyReplacement)) {
                (Some(true), true) => Outcome::pass("disable-kube-proxy: true, and Cilium replaces it"),
                (Some(true), false) => Outcome::fail("disable-kube-proxy: true but the target keeps kubeProxyReplacement off: nothing would program Service IPs (ClusterIP, NodePort), so pods cannot reach the API server or each other by Service")
                    .remedy("--set kubeProxyReplacement=true --set k8sServiceHost=<API server address> --set k8sServicePort=6443, or remove disable-kube-proxy from the k3s config and restart k3s"),
                (_, false) => Outcome::pass("kube-proxy stays (the target does not replace it)"),
                // Cilium's kube-proxy replacement works beside a running kube-proxy (both
                // program Services; not recommended): a warning, not a blocker.
                _ => Outcome::warn("kube-proxy still runs next to kubeProxyReplacement=true: both program Service rules (they coexist, but it is not recommended and costs memory and CPU)"),
            })),
        Check::new("k3s.cidrs", Area::K3s, "Pod and service CIDRs (for Cilium's IPAM values)")
            .evaluate(|facts, _| with_k3s_setting(facts, |k| {
                let pods = k.cluster_cidr.clone().unwrap_or_else(|| "10.42.0.0/16 (default)".into());
                let svcs = k.service_cidr.clone().unwrap_or_else(|| "10.43.0.0/16 (default)".into());
                Outcome::pass(format!("cluster-cidr {pods}, service-cidr {svcs}; with ipam.mode=cluster-pool set ipam.operator.clusterPoolIPv4PodCIDRList to the cluster CIDR"))
            })),
        Check::new("k3s.rancher-desktop", Area::K3s, "Rancher Desktop VM specifics")
            .needed_by(&[BaseDatapath])
            .remedy("--set cni.binPath=/usr/libexec/cni (cilium-cli only does this for a context named rancher-desktop); mount bpffs and cgroup2 shared from the provisioning override script")
            .evaluate(|facts, _| {
                let k = &facts.k3s;
                if !k.rancher_desktop {
                    return Outcome::skip("not Rancher Desktop");
                }
                let evidence = k.rancher_desktop_evidence.join(", ");
                k.rancher_desktop_evidence.iter().fold(
                    Outcome::warn(format!("Rancher Desktop ({evidence}): CNI plugins live in /usr/libexec/cni, which plain Helm installs do not know")),
                    |o, e| o.evidence(e.clone()),
                )
            }),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{
        checks::run_all,
        cilium::{Target, derive},
        facts::Facts,
        model::Status,
    };

    fn k3s_node(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc/rancher/k3s");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("config.yaml"), config).unwrap();
        dir
    }

    fn status(root: &std::path::Path, values: serde_json::Value, id: &str) -> (Status, String) {
        let mut t = Target::chart_defaults("1.20");
        t.values = values;
        t.capabilities = derive::capabilities(&t.effective_values());
        let r = run_all(&Facts::from_root(root), &t, &[])
            .into_iter()
            .find(|c| c.id == id)
            .unwrap();
        (r.status, r.detail)
    }

    /// Class 6: k3s keeping kube-proxy beside kubeProxyReplacement=true warns (they coexist);
    /// class 8: k8sServiceHost fails only where kube-proxy is known to be gone.
    #[test]
    fn kube_proxy_kept_beside_the_replacement_warns_and_the_service_host_follows_the_node() {
        let kpr = json!({"kubeProxyReplacement": true});
        let keeps = k3s_node("flannel-backend: none\n");
        let (s, detail) = status(keeps.path(), kpr.clone(), "k3s.kube-proxy");
        assert_eq!(s, Status::Warn, "{detail}");
        assert!(detail.contains("coexist"), "{detail}");
        assert_eq!(
            status(keeps.path(), kpr.clone(), "values.k8s-service-host").0,
            Status::Warn
        );

        let removed = k3s_node("flannel-backend: none\ndisable-kube-proxy: true\n");
        assert_eq!(
            status(removed.path(), kpr.clone(), "k3s.kube-proxy").0,
            Status::Pass
        );
        assert_eq!(
            status(removed.path(), kpr.clone(), "values.k8s-service-host").0,
            Status::Fail
        );

        // Not a k3s node: whether kube-proxy is gone is the cluster's; could not tell.
        let plain = tempfile::tempdir().unwrap();
        let (s, detail) = status(plain.path(), kpr.clone(), "values.k8s-service-host");
        assert_eq!(s, Status::Unknown, "{detail}");
        let mut with_host = kpr;
        crate::cilium::values::merge(&mut with_host, json!({"k8sServiceHost": "10.0.0.1"}));
        assert_eq!(
            status(plain.path(), with_host, "values.k8s-service-host").0,
            Status::Pass
        );
    }
}

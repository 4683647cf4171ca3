//! Helm values: what the target version's chart rejects or ignores (cilium::validate), what the
//! chart's own values.schema.json says (--chart), and the values against this node (cilium::node).
use super::Check;
use crate::{
    cilium::{node, validate},
    model::{
        Area,
        Capability::{ChartValues, KubeProxyReplacement, NativeRouting},
        Outcome, Status,
    },
};

pub fn checks() -> Vec<Check> {
    let mut checks: Vec<Check> = validate::rules()
        .into_iter()
        .map(|rule| {
            let judge = rule.judge;
            Check::new(rule.id, Area::Values, rule.title)
                .needed_by(&[ChartValues])
                .remedy(rule.remedy)
                .evaluate(move |_, target| {
                    let mut o = judge(target);
                    if !target.value_sources.is_empty() && o.status != Status::Skip {
                        o = o.evidence(format!("values: {}", target.value_sources.join(", ")));
                    }
                    o
                })
        })
        .collect();
    checks.push(
        Check::new(
            "values.chart-schema",
            Area::Values,
            "values validate against the chart's values.schema.json",
        )
        .needed_by(&[ChartValues])
        .remedy("fix the listed values; the chart's schema is what `helm install` enforces")
        .evaluate(|_, target| match &target.chart {
            None => Outcome::skip("no --chart given"),
            Some(c) if !c.has_schema => {
                Outcome::skip(format!("{} has no values.schema.json", c.source))
            }
            Some(c) if c.schema_errors.is_empty() => {
                Outcome::pass(format!("valid against {}", c.source))
            }
            Some(c) => {
                let mut o = Outcome::fail(format!(
                    "{} schema violation(s) against {}: {}",
                    c.schema_errors.len(),
                    c.source,
                    c.schema_errors.join("; ")
                ));
                for e in &c.schema_errors {
                    o = o.evidence(e.clone());
                }
                o
            }
        }),
    );
    let cross: [(&str, &str, &str, node::CrossCheck); 5] = [
        (
            "values.k8s-service-host",
            "kube-proxy replacement can reach the API server without kube-proxy",
            "set `k8sServiceHost` and `k8sServicePort` to the API server (k3s: the server's IP, 6443)",
            node::k8s_service_host,
        ),
        (
            "values.native-routing-cidr",
            "native routing has its CIDR and routes",
            "set `ipv4NativeRoutingCIDR` to the pod CIDR and `autoDirectNodeRoutes: true` (nodes on one L2)",
            node::native_routing_cidr,
        ),
        (
            "values.node.cni-bin-path",
            "cni.binPath is where this node looks for CNI plugins",
            "set `cni.binPath` to the runtime's CNI bin dir (Rancher Desktop: /usr/libexec/cni)",
            node::cni_bin_path,
        ),
        (
            "values.node.cni-conf-path",
            "cni.confPath is the conf dir this node's runtime reads",
            "set `cni.confPath` to the runtime's CNI conf dir",
            node::cni_conf_path,
        ),
        (
            "values.node.cgroup-host-root",
            "cgroup2 is at cgroup.hostRoot when the agent does not mount it",
            "set `cgroup.autoMount.enabled: true`, or `cgroup.hostRoot` to the host's cgroup2 mount",
            node::cgroup_host_root,
        ),
    ];
    for (id, title, remedy, judge) in cross {
        checks.push(
            Check::new(id, Area::Values, title)
                .needed_by(match id {
                    "values.native-routing-cidr" => &[ChartValues, NativeRouting],
                    "values.k8s-service-host" => &[ChartValues, KubeProxyReplacement],
                    _ => &[ChartValues],
                })
                .remedy(remedy)
                .evaluate(move |facts, target| {
                    let hints = facts.node_hints();
                    let mut o = judge(target, &hints);
                    if let Some(source) = hints.cni_dirs_source.filter(|s| s.starts_with('/'))
                        && id.starts_with("values.node.cni")
                    {
                        o = o.evidence(source);
                    }
                    o
                }),
        );
    }
    checks
}

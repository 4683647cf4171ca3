//! Table-driven verdicts: (facts fixture × Cilium version × values) → go / no-go, the failing
//! checks and the recommended values. Facts are fixtures (a real probe report of a 6.18 kernel,
//! edited for older kernels, plus node hints), so this runs anywhere without privileges.
use std::path::PathBuf;

use preflight::{
    checks,
    facts::{Facts, Gathered},
    probe::{ProbeReport, Support},
    target::{Target, TargetSpec, node::NodeHints},
    verdict::{self, Verdict},
};
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn probes() -> ProbeReport {
    let text = std::fs::read_to_string(repo("fixtures/facts/probe-6.18.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Node facts gathered from an empty root (every file-based fact "could not tell"), with the
/// probe fixture standing in for the live kernel.
fn facts(probes: ProbeReport, hints: NodeHints) -> Facts {
    let empty = tempfile::tempdir().unwrap();
    let mut facts = Facts::from_root(empty.path());
    facts.live = true;
    facts.probes = Gathered::Got(probes);
    facts.canaries = Gathered::Skipped("fixture: no canaries".into());
    facts.node_hints = hints;
    facts
}

/// The fixtures: named node facts.
fn fixture(name: &str) -> Facts {
    let plain = NodeHints {
        k3s: Some(false),
        kernel_release: Some("6.18.44".into()),
        cni_bin_dirs: Some(vec!["/opt/cni/bin".into()]),
        ..Default::default()
    };
    match name {
        "debian-6.18" => facts(probes(), plain),
        // A 5.4 kernel without redirect_neigh/redirect_peer (both came in 5.10).
        "old-5.4" => {
            let mut p = probes();
            let sched_cls = p.helpers.get_mut("sched_cls").unwrap();
            for h in ["redirect_neigh", "redirect_peer"] {
                sched_cls.insert(h.into(), Support::Unavailable { reason: None });
            }
            facts(
                p,
                NodeHints {
                    kernel_release: Some("5.4.0-150-generic".into()),
                    ..plain
                },
            )
        }
        "k3s-flannel" => facts(
            probes(),
            NodeHints {
                k3s: Some(true),
                k3s_flannel_backend: None,
                k3s_disable_kube_proxy: None,
                cni_bin_dirs: Some(vec!["/var/lib/rancher/k3s/data/current/bin".into()]),
                ..plain
            },
        ),
        "rancher-desktop" => facts(
            probes(),
            NodeHints {
                k3s: Some(true),
                rancher_desktop: true,
                k3s_flannel_backend: Some("none".into()),
                k3s_disable_kube_proxy: Some(true),
                cni_bin_dirs: Some(vec!["/usr/libexec/cni".into()]),
                ..plain
            },
        ),
        other => panic!("no fixture {other}"),
    }
}

fn judge(fixture_name: &str, version: &str, files: &[&str], sets: &[&str]) -> Verdict {
    let spec = TargetSpec {
        cilium_version: Some(version.into()),
        value_files: files.iter().map(|f| repo(f)).collect(),
        sets: sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let target = Target::build(&spec).unwrap();
    let facts = fixture(fixture_name);
    let results = checks::run_all(&facts, &target, &[]);
    let mut v = verdict::decide(&target, &results);
    verdict::refine(&mut v, &facts, &target, &results, &[]);
    v
}

struct Case {
    fixture: &'static str,
    version: &'static str,
    files: &'static [&'static str],
    sets: &'static [&'static str],
    go: bool,
    blocking: &'static [&'static str],
    /// Keys expected in the recommended values patch, with their values.
    patch: Value,
    patch_is_go: Option<bool>,
}

const HOMELAB: &str = "fixtures/values/homelab.yaml";

#[test]
fn verdicts_by_facts_version_and_values() {
    let cases = [
        Case {
            fixture: "debian-6.18",
            version: "1.19",
            files: &[],
            sets: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "debian-6.18",
            version: "1.16.4",
            files: &[HOMELAB],
            sets: &[],
            go: false,
            blocking: &["values.removed.tunnel", "values.kube-proxy-replacement"],
            patch: json!({"tunnel": null, "kubeProxyReplacement": false, "routingMode": "native"}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "debian-6.18",
            version: "1.14.6",
            files: &[HOMELAB],
            sets: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "old-5.4",
            version: "1.19",
            files: &[],
            sets: &[],
            go: false,
            blocking: &["kernel.cilium-minimum", "bpf.cilium-agent-helpers"],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "old-5.4",
            version: "1.16.4",
            files: &[],
            sets: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "old-5.4",
            version: "1.16.4",
            files: &[],
            sets: &["bpf.hostLegacyRouting=false"],
            go: false,
            blocking: &["kernel.feature-minimum.bpf-host-routing"],
            patch: json!({"bpf": {"hostLegacyRouting": true}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "k3s-flannel",
            version: "1.16.4",
            files: &[],
            sets: &[],
            go: false,
            blocking: &["values.node.k3s-flannel"],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "k3s-flannel",
            version: "1.19",
            files: &[],
            sets: &["kubeProxyReplacement=true"],
            go: false,
            blocking: &[
                "values.k8s-service-host",
                "values.node.k3s-kube-proxy",
                "values.node.k3s-flannel",
            ],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "rancher-desktop",
            version: "1.16.4",
            files: &[],
            sets: &[],
            go: false,
            blocking: &["values.node.cni-bin-path"],
            patch: json!({"cni": {"binPath": "/usr/libexec/cni"}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "rancher-desktop",
            version: "1.16.4",
            files: &[],
            sets: &[
                "cni.binPath=/usr/libexec/cni,kubeProxyReplacement=true",
                "k8sServiceHost=192.168.5.15,k8sServicePort=6443",
            ],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "debian-6.18",
            version: "1.15",
            files: &[],
            sets: &["kubeProxyReplacement=strict", "k8sServiceHost=10.0.0.1"],
            go: false,
            blocking: &["values.kube-proxy-replacement"],
            patch: json!({"kubeProxyReplacement": true}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "debian-6.18",
            version: "1.19",
            files: &[],
            sets: &["bpf.datapathMode=netkit"],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
    ];
    for c in &cases {
        let label = format!("{} × {} × {:?}{:?}", c.fixture, c.version, c.files, c.sets);
        let v = judge(c.fixture, c.version, c.files, c.sets);
        assert_eq!(v.go, c.go, "{label}: {}", v.summary);
        assert!(v.decided, "{label}");
        let blocking: Vec<_> = v
            .capabilities
            .iter()
            .flat_map(|c| c.blocking.clone())
            .collect();
        for id in c.blocking {
            assert!(
                blocking.iter().any(|b| b == id),
                "{label}: {id} not in {blocking:?}"
            );
        }
        if c.go {
            assert!(blocking.is_empty(), "{label}: {blocking:?}");
            assert!(v.summary.starts_with("GO"), "{label}: {}", v.summary);
        } else {
            assert!(v.summary.starts_with("NO-GO"), "{label}: {}", v.summary);
        }
        if let Some(want) = c.patch.as_object() {
            let got = v
                .values_patch
                .clone()
                .unwrap_or_else(|| panic!("{label}: no patch"));
            for (k, val) in want {
                assert_eq!(got.get(k), Some(val), "{label}: patch {got}");
            }
        }
        assert_eq!(
            v.patch_is_go, c.patch_is_go,
            "{label}: {:?}",
            v.recommendations
        );
    }
}

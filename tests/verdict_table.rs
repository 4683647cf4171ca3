//! Table-driven verdicts: (facts fixture × Cilium version × values) → go / no-go, the failing
//! checks and the recommended values. Facts are gathered from the node fixture trees
//! (fixtures/nodes/*, some edited into variants) plus a real probe report of a 6.18 kernel, so
//! this runs anywhere without privileges.
use std::path::{Path, PathBuf};

use preflight::{
    checks,
    cilium::{
        CiliumVersion, Target, TargetSpec,
        releases::{BUILTIN, Catalog, KernelFacts, RELEASES, Release},
    },
    facts::Facts,
    model::{Gathered, Status, Support, Verdict},
    probe::ProbeReport,
    verdict,
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

/// A fresh copy of a fixture tree (variants are rebuilt for every case that uses them).
fn copy_dir(from: &Path, to: &Path) {
    if to.exists()
        && std::fs::symlink_metadata(to).unwrap().is_dir()
        && to.starts_with(std::env::temp_dir())
    {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A node fixture's facts, with the probe report standing in for the live kernel's answers.
fn gather(root: &Path, probes: ProbeReport) -> Facts {
    let mut facts = Facts::from_root(root);
    facts.probes = Gathered::Got(probes);
    facts
}

/// The fixtures: node trees from fixtures/nodes, and variants made from them in a scratch dir.
fn fixture(name: &str, scratch: &Path) -> Facts {
    match name {
        "debian-bookworm" | "k3s-flannel" | "rancher-desktop" | "rhel10" => {
            gather(&repo(&format!("fixtures/nodes/{name}")), probes())
        }
        // Debian without the geneve module: CONFIG_GENEVE not set.
        "debian-no-geneve" => {
            let root = scratch.join(name);
            copy_dir(&repo("fixtures/nodes/debian-bookworm"), &root);
            let config = root.join("boot/config-6.1.0-18-amd64");
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(
                &config,
                text.replace("CONFIG_GENEVE=m", "# CONFIG_GENEVE is not set"),
            )
            .unwrap();
            let _ = std::fs::remove_file(
                root.join("lib/modules/6.1.0-18-amd64/kernel/drivers/net/geneve.ko"),
            );
            gather(&root, probes())
        }
        // A 5.4 kernel without redirect_neigh/redirect_peer (both came in 5.10).
        "old-5.4" => {
            let root = scratch.join(name);
            copy_dir(&repo("fixtures/nodes/debian-bookworm"), &root);
            let release = "5.4.0-150-generic";
            std::fs::write(
                root.join("proc/sys/kernel/osrelease"),
                format!("{release}\n"),
            )
            .unwrap();
            // The kernel's config and modules go by its release.
            std::fs::rename(
                root.join("boot/config-6.1.0-18-amd64"),
                root.join(format!("boot/config-{release}")),
            )
            .unwrap();
            std::fs::rename(
                root.join("lib/modules/6.1.0-18-amd64"),
                root.join(format!("lib/modules/{release}")),
            )
            .unwrap();
            let mut p = probes();
            let sched_cls = p.helpers.get_mut("sched_cls").unwrap();
            for h in ["redirect_neigh", "redirect_peer"] {
                sched_cls.insert(h.into(), Support::Unavailable { reason: None });
            }
            gather(&root, p)
        }
        other => panic!("no fixture {other}"),
    }
}

fn judge(c: &Case, scratch: &Path) -> Verdict {
    let spec = TargetSpec {
        cilium_version: Some(c.version.parse().expect("a version")),
        value_files: c.files.iter().map(|f| repo(f)).collect(),
        sets: c.sets.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let target = Target::build(&spec).unwrap();
    let facts = fixture(c.fixture, scratch);
    let ignore: Vec<String> = c.ignore.iter().map(|s| s.to_string()).collect();
    let results = checks::run_all(&facts, &target, &ignore);
    let mut v = verdict::decide(&target, &results);
    verdict::refine(&mut v, &facts, &target, &results, &ignore);
    v
}

struct Case {
    fixture: &'static str,
    version: &'static str,
    files: &'static [&'static str],
    sets: &'static [&'static str],
    ignore: &'static [&'static str],
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
            fixture: "debian-bookworm",
            version: "1.19",
            files: &[],
            sets: &[],
            ignore: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "debian-bookworm",
            version: "1.16.4",
            files: &[HOMELAB],
            sets: &[],
            ignore: &[],
            go: false,
            blocking: &["values.chart-rules", "values.kube-proxy-replacement"],
            patch: json!({"tunnel": null, "kubeProxyReplacement": false, "routingMode": "native"}),
            patch_is_go: Some(true),
        },
        // 1.14 still reads `tunnel: disabled` and `kubeProxyReplacement: disabled`.
        Case {
            fixture: "debian-bookworm",
            version: "1.14.6",
            files: &[HOMELAB],
            sets: &[],
            ignore: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "debian-no-geneve",
            version: "1.19",
            files: &[],
            sets: &["tunnelProtocol=geneve"],
            ignore: &[],
            go: false,
            blocking: &["kernel.config.geneve"],
            patch: json!({"tunnelProtocol": "vxlan"}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "debian-no-geneve",
            version: "1.19",
            files: &[],
            sets: &[],
            ignore: &[],
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
            ignore: &[],
            go: false,
            blocking: &["kernel.release", "bpf.cilium-agent-helpers"],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "old-5.4",
            version: "1.16.4",
            files: &[],
            sets: &[],
            ignore: &[],
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
            ignore: &[],
            go: false,
            blocking: &[
                "kernel.feature-minimum.bpf-host-routing",
                "bpf.helper.sched_cls.redirect_neigh",
            ],
            patch: json!({"bpf": {"hostLegacyRouting": true}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "debian-bookworm",
            version: "1.19",
            files: &[],
            sets: &["bpf.datapathMode=netkit"],
            ignore: &[],
            go: false,
            blocking: &["kernel.feature-minimum.netkit"],
            patch: json!({"bpf": {"datapathMode": "veth"}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "rhel10",
            version: "1.19",
            files: &[],
            // rhel10's k3s runs without kube-proxy: the replacement is part of the plan.
            sets: &[
                "bpf.datapathMode=netkit",
                "kubeProxyReplacement=true,k8sServiceHost=10.0.0.1",
            ],
            ignore: &[],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "k3s-flannel",
            version: "1.16.4",
            files: &[],
            sets: &[],
            ignore: &[],
            go: false,
            blocking: &["k3s.flannel-backend"],
            patch: json!(null),
            patch_is_go: None,
        },
        Case {
            fixture: "k3s-flannel",
            version: "1.19",
            files: &[],
            sets: &["kubeProxyReplacement=true"],
            ignore: &[],
            go: false,
            // k3s keeps kube-proxy: it coexists with the replacement (k3s.kube-proxy warns), and
            // the API server is still reachable through the kubernetes Service
            // (values.k8s-service-host warns). Flannel must go either way; no values fix that.
            blocking: &["k3s.flannel-backend"],
            patch: json!(null),
            patch_is_go: None,
        },
        // Rancher Desktop: cni.binPath is fixable by values; the bpffs mount is not.
        Case {
            fixture: "rancher-desktop",
            version: "1.16.4",
            files: &[],
            sets: &[],
            ignore: &[],
            go: false,
            blocking: &["values.node.cni-bin-path", "mounts.bpffs"],
            patch: json!({"cni": {"binPath": "/usr/libexec/cni"}}),
            patch_is_go: Some(false),
        },
        Case {
            fixture: "rancher-desktop",
            version: "1.16.4",
            files: &[],
            sets: &[],
            ignore: &["mounts.bpffs"],
            go: false,
            blocking: &["values.node.cni-bin-path"],
            patch: json!({"cni": {"binPath": "/usr/libexec/cni"}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "rancher-desktop",
            version: "1.16.4",
            files: &[],
            sets: &["cni.binPath=/usr/libexec/cni"],
            ignore: &["mounts.bpffs"],
            go: true,
            blocking: &[],
            patch: json!(null),
            patch_is_go: None,
        },
        // The agent told not to mount cgroup2, and nothing at its hostRoot: point it at the host's.
        Case {
            fixture: "debian-bookworm",
            version: "1.19",
            files: &[],
            sets: &[
                "kubeProxyReplacement=true,k8sServiceHost=10.0.0.1",
                "cgroup.autoMount.enabled=false",
            ],
            ignore: &[],
            go: false,
            blocking: &["values.node.cgroup-host-root"],
            patch: json!({"cgroup": {"hostRoot": "/sys/fs/cgroup"}}),
            patch_is_go: Some(true),
        },
        Case {
            fixture: "debian-bookworm",
            version: "1.15",
            files: &[],
            sets: &["kubeProxyReplacement=strict", "k8sServiceHost=10.0.0.1"],
            ignore: &[],
            go: false,
            blocking: &["values.kube-proxy-replacement"],
            patch: json!({"kubeProxyReplacement": true}),
            patch_is_go: Some(true),
        },
    ];
    let scratch = tempfile::tempdir().unwrap();
    for c in &cases {
        let label = format!("{} × {} × {:?}{:?}", c.fixture, c.version, c.files, c.sets);
        let v = judge(c, scratch.path());
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

/// Adding a version is adding a row: a catalog with a 1.21 row made here, in the test only,
/// is the default target, resolves, builds a target, drives the checks (its own minimum
/// kernel and capability table), the compile profile and the verdict, with no other change.
#[test]
fn a_version_added_in_a_test_is_judged_end_to_end() {
    let newest = BUILTIN.newest();
    let next = Release {
        minor: newest.minor + 1,
        latest_patch: 1,
        kernel: KernelFacts {
            min: (6, 2, 0),
            exception: None,
            ..newest.kernel
        },
        ..newest.clone()
    };
    let releases: Vec<Release> = RELEASES.iter().cloned().chain([next]).collect();
    let catalog = Catalog {
        releases: Box::leak(releases.into_boxed_slice()),
    };
    let label = format!("1.{}", newest.minor + 1);
    let v = |t: &str| CiliumVersion::parse(t).unwrap();
    assert_eq!(catalog.default_version().to_string(), format!("{label}.1"));
    let err = catalog
        .resolve(&v(&format!("1.{}", newest.minor + 2)))
        .unwrap_err();
    assert!(err.contains(&format!("{label} (up to {label}.1)")), "{err}");

    let target = Target::build_in(&TargetSpec::default(), &catalog).unwrap();
    assert_eq!(target.cilium_version.to_string(), format!("{label}.1"));
    assert_eq!(target.release().minor, newest.minor + 1);
    let note = Target::build_in(
        &TargetSpec {
            cilium_version: Some(v(&format!("{label}.7"))),
            ..TargetSpec::default()
        },
        &catalog,
    )
    .unwrap()
    .version_note
    .unwrap();
    assert!(note.contains(&format!("newest {label} release")), "{note}");

    // The Debian 6.1 fixture node is below the new row's 6.2 minimum.
    let facts = Facts::from_root(&repo("fixtures/nodes/debian-bookworm"));
    let results = checks::run_all(&facts, &target, &[]);
    let release_check = results.iter().find(|c| c.id == "kernel.release").unwrap();
    assert_eq!(
        release_check.status,
        Status::Fail,
        "{}",
        release_check.detail
    );
    assert!(
        release_check
            .detail
            .contains(&format!("the minimum for Cilium {label}")),
        "{}",
        release_check.detail
    );
    let verdict = verdict::decide(&target, &results);
    assert!(
        verdict.summary.contains(&format!("Cilium {label}.1")),
        "{}",
        verdict.summary
    );
    assert_eq!(
        preflight::compile::profile::for_release(target.release()).label(),
        "1.18+"
    );
}

//! `preflight job`: the manifests that run preflight once on every node, built from typed
//! Kubernetes objects (k8s-openapi), so a field name or type cannot be wrong.
//!
//! Why a DaemonSet with the check in an init container (docs/fleet.md has the long form):
//! a DaemonSet puts exactly one pod on every node, including nodes that join later and tainted
//! control-plane nodes (with the toleration below), without knowing node names in advance; an
//! indexed Job cannot pin index i to node i. A DaemonSet's pods must keep running, so the check
//! runs as an init container (`--exit-zero`: a no-go is an answer, not a crash) and a pause
//! container holds the pod afterwards. The report is one JSON line in the init container's log.
use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet},
        core::v1::{
            AppArmorProfile, Capabilities, ConfigMap, ConfigMapVolumeSource, Container,
            EmptyDirVolumeSource, HostPathVolumeSource, Namespace, PodSecurityContext, PodSpec,
            PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Toleration,
            Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, apis::meta::v1::ObjectMeta,
        util::intstr::IntOrString,
    },
};

/// What goes into the manifests; `preflight job`'s flags fill it.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub pause_image: String,
    /// Target flags passed through to `preflight run` in the pod.
    pub run_args: Vec<String>,
    /// Also emit the Namespace object.
    pub create_namespace: bool,
    /// Helm values files shipped to the nodes in a ConfigMap, in `-f` order.
    pub values: Vec<ValuesFile>,
    /// The target's Cilium image: an init container copies its bpf dir and compiler into an
    /// emptyDir that the check compiles from (None: the nodes judge the built-in templates).
    pub cilium_image: Option<String>,
}

/// One values file for the nodes: its ConfigMap key (the file name in the pod) and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuesFile {
    pub key: String,
    pub text: String,
}

/// Where the ConfigMap of values files is mounted in the pod.
pub const VALUES_DIR: &str = "/etc/preflight/values";

/// Where the init container leaves the Cilium image's datapath for the check: `bpf/` (the
/// image's /var/lib/cilium/bpf), `clang` and `llc` (the ones on the image's PATH, which the
/// agent runs).
pub const DATAPATH_DIR: &str = "/cilium-datapath";

/// The init container's copy, a fixed script (nothing from input in it). The agent runs
/// `clang` by name through PATH (pkg/datapath/loader/compile.go), so `command -v` finds the
/// very binary it would run, wherever the image keeps it (/usr/local/bin today, /bin in older
/// runtimes). llc is optional (only Cilium 1.14's pipeline uses it).
const COPY_DATAPATH: &str = "set -e\n\
cp -R /var/lib/cilium/bpf /cilium-datapath/\n\
cp \"$(command -v clang)\" /cilium-datapath/clang\n\
if llc=$(command -v llc); then cp \"$llc\" /cilium-datapath/llc; fi\n";

/// A ConfigMap holds at most 1 MiB (the API server's limit on an object in etcd).
pub const VALUES_MAX_BYTES: usize = 1024 * 1024;

/// A ConfigMap key for a values file: its file name with characters a key may not hold
/// (`[-._a-zA-Z0-9]`) replaced, made unique among `taken` by a numeric prefix.
pub fn values_key(file_name: &str, taken: &[ValuesFile]) -> String {
    let mut base: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if base.is_empty() || base == "." || base == ".." {
        base = "values.yaml".into();
    }
    let mut key = base.clone();
    let mut n = 2;
    while taken.iter().any(|v| v.key == key) {
        key = format!("{n}-{base}");
        n += 1;
    }
    key
}

/// The capabilities the probes and canaries need instead of `privileged: true`: BPF (load
/// programs, create maps), PERFMON (pointer-leaking helpers the datapath uses), NET_ADMIN (tc,
/// xdp, veth in the scratch netns), SYS_ADMIN (namespaces, bpffs and cgroup mounts; bpf() on
/// kernels before 5.8), SYS_RESOURCE (memlock on kernels before 5.11's memcg accounting).
pub const CAPABILITIES: &[&str] = &["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"];

/// Host paths mounted into the pod: (volume name, host path, mount path, read-only).
///
/// Not mounted: the host's bpffs. The canaries pin on a bpffs of their own, mounted in their
/// private mount namespace; the node's pins and the bpffs type are read read-only through
/// `/host/sys/fs/bpf` (the host-root bind is recursive).
const HOST_MOUNTS: &[(&str, &str, &str, bool)] = &[
    // Every fact is read through --root /host; nothing there is written.
    ("host-root", "/", "/host", true),
    // The cgroup canary creates and removes one child cgroup to attach sock_addr programs:
    // the only host path written, and only below the pod's own cgroup.
    ("cgroup", "/sys/fs/cgroup", "/sys/fs/cgroup", false),
];

fn labels(name: &str) -> BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "node-check".to_string(),
        ),
    ]
    .into()
}

/// The arguments of `preflight run` inside the pod.
pub fn container_args(spec: &JobSpec) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--root",
        "/host",
        "--host-kernel",
        "--format",
        "json-line",
        "--exit-zero",
        "--color",
        "never",
    ]
    .map(String::from)
    .into();
    for file in &spec.values {
        args.extend(["-f".to_string(), format!("{VALUES_DIR}/{}", file.key)]);
    }
    if spec.cilium_image.is_some() {
        args.extend([
            "--bpf-dir".to_string(),
            format!("{DATAPATH_DIR}/bpf"),
            "--clang".to_string(),
            format!("{DATAPATH_DIR}/clang"),
        ]);
    }
    args.extend(spec.run_args.iter().cloned());
    args
}

fn values_configmap_name(spec: &JobSpec) -> String {
    format!("{}-values", spec.name)
}

/// The ConfigMap that carries the values files to every node (None without values files).
pub fn values_configmap(spec: &JobSpec) -> Option<ConfigMap> {
    (!spec.values.is_empty()).then(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(values_configmap_name(spec)),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels(&spec.name)),
            ..Default::default()
        },
        data: Some(
            spec.values
                .iter()
                .map(|v| (v.key.clone(), v.text.clone()))
                .collect(),
        ),
        ..Default::default()
    })
}

/// sha256 over the values files, so that changed values change the pod template and
/// `kubectl apply` re-runs the check (a changed ConfigMap alone restarts no pod).
fn values_digest(spec: &JobSpec) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for v in &spec.values {
        h.update(v.key.as_bytes());
        h.update([0]);
        h.update(v.text.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a container's volume mounts break the API server's rules that the OpenAPI schema
/// (and so kubernetes-validate) cannot express (k8s-openapi's VolumeMount docs, from the
/// Kubernetes API reference): `recursiveReadOnly` needs `readOnly: true` and, when IfPossible
/// or Enabled, `mountPropagation` None or unset; the enum values; Bidirectional propagation
/// only in a privileged container.
pub fn volume_mount_errors(ds: &DaemonSet) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(pod) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return errors;
    };
    let containers = pod
        .init_containers
        .iter()
        .flatten()
        .chain(pod.containers.iter());
    for c in containers {
        let privileged = c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false);
        for m in c.volume_mounts.iter().flatten() {
            let at = format!("container {}, volumeMount {}", c.name, m.name);
            let propagation = m.mount_propagation.as_deref();
            if !matches!(
                propagation,
                None | Some("None" | "HostToContainer" | "Bidirectional")
            ) {
                errors.push(format!(
                    "{at}: mountPropagation {propagation:?} is not a value"
                ));
            }
            if propagation == Some("Bidirectional") && !privileged {
                errors.push(format!(
                    "{at}: mountPropagation Bidirectional needs a privileged container"
                ));
            }
            let Some(rro) = m.recursive_read_only.as_deref() else {
                continue;
            };
            if !matches!(rro, "Disabled" | "IfPossible" | "Enabled") {
                errors.push(format!("{at}: recursiveReadOnly {rro:?} is not a value"));
            }
            if m.read_only != Some(true) {
                errors.push(format!(
                    "{at}: recursiveReadOnly may only be set when readOnly is true"
                ));
            }
            if matches!(rro, "IfPossible" | "Enabled")
                && !matches!(propagation, None | Some("None"))
            {
                errors.push(format!(
                    "{at}: recursiveReadOnly {rro} needs mountPropagation None or unset, not {}",
                    propagation.unwrap_or_default()
                ));
            }
        }
    }
    errors
}

pub fn daemonset(spec: &JobSpec) -> DaemonSet {
    let labels = labels(&spec.name);
    let mut volumes: Vec<Volume> = HOST_MOUNTS
        .iter()
        .map(|(name, host, _, _)| Volume {
            name: name.to_string(),
            host_path: Some(HostPathVolumeSource {
                path: host.to_string(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        })
        .collect();
    volumes.push(Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("16Mi".into())),
        }),
        ..Default::default()
    });
    let mut mounts: Vec<VolumeMount> = HOST_MOUNTS
        .iter()
        .map(|(name, _, path, read_only)| VolumeMount {
            name: name.to_string(),
            mount_path: path.to_string(),
            read_only: Some(*read_only),
            // Submounts of the host root (/proc, /sys, /boot...) stay read-only too where the
            // runtime supports it (Kubernetes >= 1.30 with a recent runc/crun).
            recursive_read_only: read_only.then(|| "IfPossible".to_string()),
            // Propagation stays unset (None): the API refuses any other value next to
            // recursiveReadOnly (see `volume_mount_errors`), and none is needed. The check reads
            // the mounts that exist when its init container starts (the bind is recursive) and
            // the node's mount table through /host/proc/1/mountinfo; mounts the host makes later
            // do not matter to a check that has finished.
            // The init container's mount namespace ends with it, so it pins no host mount
            // while the pod lives on.
            mount_propagation: None,
            ..Default::default()
        })
        .collect();
    mounts.push(VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    });
    if !spec.values.is_empty() {
        volumes.push(Volume {
            name: "values".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: values_configmap_name(spec),
                default_mode: Some(0o444),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "values".into(),
            mount_path: VALUES_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let security = SecurityContext {
        privileged: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        capabilities: Some(Capabilities {
            add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            drop: Some(vec!["ALL".into()]),
        }),
        // Runtime-default seccomp filters bpf(), perf_event_open() and unshare() unless the
        // process is privileged; AppArmor's runtime default denies mount(2).
        seccomp_profile: Some(SeccompProfile {
            type_: "Unconfined".into(),
            ..Default::default()
        }),
        app_armor_profile: Some(AppArmorProfile {
            type_: "Unconfined".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let resources = |cpu: &str, memory: &str, limit: &str| ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ]
            .into(),
        ),
        limits: Some([("memory".to_string(), Quantity(limit.into()))].into()),
        ..Default::default()
    };
    let check = Container {
        name: "preflight".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/usr/local/bin/preflight".into()]),
        args: Some(container_args(spec)),
        security_context: Some(security),
        volume_mounts: Some(mounts),
        resources: Some(resources("100m", "64Mi", "512Mi")),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    // The target's own datapath: copied out of its Cilium image before the check runs.
    let datapath = spec.cilium_image.as_ref().map(|image| {
        volumes.push(Volume {
            name: "cilium-datapath".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                // The bpf dir (~20 MiB) and the static clang and llc (~150 MiB) on node disk.
                medium: None,
                size_limit: Some(Quantity("512Mi".into())),
            }),
            ..Default::default()
        });
        Container {
            name: "cilium-datapath".into(),
            image: Some(image.clone()),
            image_pull_policy: Some("IfNotPresent".into()),
            command: Some(vec!["sh".into(), "-c".into(), COPY_DATAPATH.into()]),
            volume_mounts: Some(vec![VolumeMount {
                name: "cilium-datapath".into(),
                mount_path: DATAPATH_DIR.into(),
                ..Default::default()
            }]),
            security_context: Some(SecurityContext {
                privileged: Some(false),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_user: Some(0),
                run_as_non_root: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: Some(resources("10m", "16Mi", "128Mi")),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        }
    });
    let mut check = check;
    if datapath.is_some() {
        check
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: "cilium-datapath".into(),
                mount_path: DATAPATH_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
    }
    let hold = Container {
        name: "done".into(),
        image: Some(spec.pause_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(65535),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        resources: Some(resources("1m", "8Mi", "16Mi")),
        ..Default::default()
    };
    DaemonSet {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            // A new spec re-checks every node at once: the pods only read and probe.
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("100%".into())),
                    ..Default::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!spec.values.is_empty()).then(|| {
                        [("preflight/values-sha256".to_string(), values_digest(spec))].into()
                    }),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // No hostPID and no hostNetwork: the pod's own namespaces are enough. The
                    // host's procfs and sysfs under /host show the host's view whatever the
                    // reader's namespaces: PID 1's mount table (/host/proc/1/mountinfo), the
                    // node's UDP sockets (/host/proc/1/net/udp) and network devices
                    // (/host/sys/class/net). The canaries work in a scratch netns of their own;
                    // without hostNetwork, NET_ADMIN cannot reach the host's network.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    // Every node, including control planes and cordoned or tainted ones.
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]),
                    priority_class_name: None,
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(0),
                        ..Default::default()
                    }),
                    init_containers: Some(datapath.into_iter().chain([check]).collect()),
                    containers: vec![hold],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(5),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespace(spec: &JobSpec) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(spec.namespace.clone()),
            labels: Some(
                [(
                    // hostPath volumes and added capabilities need the privileged level.
                    "pod-security.kubernetes.io/enforce".to_string(),
                    "privileged".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The manifests as a multi-document YAML stream (k8s-openapi's serialisation writes each
/// object's apiVersion and kind).
pub fn render_yaml(spec: &JobSpec) -> Result<String, serde_norway::Error> {
    let mut out = String::from(
        "# Generated by `preflight job`. Apply, wait for the pods' init containers, aggregate:\n\
         #   kubectl apply -f preflight.yaml\n",
    );
    out.push_str(&format!(
        "#   kubectl -n {ns} rollout status ds/{name}\n\
         #   kubectl -n {ns} logs -l app.kubernetes.io/name={name} -c preflight --tail=-1 --prefix \\\n\
         #     | preflight aggregate -\n\
         #   kubectl delete -f preflight.yaml\n",
        ns = spec.namespace,
        name = spec.name
    ));
    if spec.create_namespace {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&namespace(spec))?);
    }
    if let Some(cm) = values_configmap(spec) {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&cm)?);
    }
    out.push_str("---\n");
    out.push_str(&serde_norway::to_string(&daemonset(spec))?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec {
            name: "preflight".into(),
            namespace: "preflight".into(),
            image: "preflight:test".into(),
            pause_image: "registry.k8s.io/pause:3.10".into(),
            run_args: vec!["--need".into(), "tunnel-geneve".into()],
            create_namespace: true,
            values: Vec::new(),
            cilium_image: None,
        }
    }

    fn spec_with_image() -> JobSpec {
        JobSpec {
            cilium_image: Some("quay.io/cilium/cilium:v1.18.3".into()),
            ..spec()
        }
    }

    /// An init container by name.
    fn init_container(ds: &DaemonSet, name: &str) -> Container {
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.init_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no init container {name}"))
            .clone()
    }

    fn spec_with_values() -> JobSpec {
        JobSpec {
            values: vec![
                ValuesFile {
                    key: "values.yaml".into(),
                    text: "tunnelProtocol: geneve\n".into(),
                },
                ValuesFile {
                    key: "2-values.yaml".into(),
                    text: "encryption:\n  enabled: true\n  type: wireguard\n".into(),
                },
            ],
            ..spec()
        }
    }

    fn mounts_of(ds: &DaemonSet) -> Vec<(String, VolumeMount)> {
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        pod.init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .flat_map(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .map(|m| (c.name.clone(), m.clone()))
            })
            .collect()
    }

    #[test]
    fn every_volume_mount_pairs_recursive_read_only_with_no_propagation() {
        for spec in [spec(), spec_with_values(), spec_with_image()] {
            let ds = daemonset(&spec);
            assert_eq!(volume_mount_errors(&ds), Vec::<String>::new());
            let mounts = mounts_of(&ds);
            assert!(mounts.len() >= 3, "{mounts:?}");
            for (container, m) in &mounts {
                if let Some(rro) = m.recursive_read_only.as_deref() {
                    assert_eq!(m.read_only, Some(true), "{container}/{}", m.name);
                    if rro != "Disabled" {
                        assert!(
                            matches!(m.mount_propagation.as_deref(), None | Some("None")),
                            "{container}/{}: recursiveReadOnly {rro} with {:?}",
                            m.name,
                            m.mount_propagation
                        );
                    }
                }
            }
            // The host root is still recursively read-only where the runtime can do it.
            let root = mounts
                .iter()
                .find(|(_, m)| m.mount_path == "/host")
                .unwrap();
            assert_eq!(root.1.recursive_read_only.as_deref(), Some("IfPossible"));
        }
    }

    #[test]
    fn the_volume_rules_catch_what_the_api_server_refuses() {
        let mut ds = daemonset(&spec());
        let pod = ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let check = pod
            .init_containers
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c.name == "preflight")
            .unwrap();
        let mounts = check.volume_mounts.as_mut().unwrap();
        // The pairing this DaemonSet once had.
        mounts[0].mount_propagation = Some("HostToContainer".into());
        // recursiveReadOnly on a writable mount, and Bidirectional unprivileged.
        mounts[1].recursive_read_only = Some("Enabled".into());
        mounts[2].mount_propagation = Some("Bidirectional".into());
        let errors = volume_mount_errors(&ds);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("host-root") && errors[0].contains("HostToContainer"));
        assert!(errors[1].contains("cgroup") && errors[1].contains("readOnly is true"));
        assert!(errors[2].contains("tmp") && errors[2].contains("privileged"));
    }

    #[test]
    fn values_files_ship_in_a_configmap_mounted_where_the_args_point() {
        let spec = spec_with_values();
        let cm = values_configmap(&spec).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("preflight-values"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("preflight"));
        let data = cm.data.unwrap();
        assert_eq!(data["values.yaml"], "tunnelProtocol: geneve\n");
        assert_eq!(data.len(), 2);
        let args = container_args(&spec);
        let files: Vec<_> = args
            .windows(2)
            .filter(|w| w[0] == "-f")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(
            files,
            [
                "/etc/preflight/values/values.yaml",
                "/etc/preflight/values/2-values.yaml"
            ]
        );
        let ds = daemonset(&spec);
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "values")
            .unwrap();
        assert_eq!(volume.config_map.as_ref().unwrap().name, "preflight-values");
        let (_, mount) = mounts_of(&ds)
            .into_iter()
            .find(|(_, m)| m.name == "values")
            .unwrap();
        assert_eq!(mount.mount_path, VALUES_DIR);
        assert_eq!(mount.read_only, Some(true));
        // Changed values change the pod template, so `kubectl apply` re-runs the check.
        let digest = |s: &JobSpec| {
            daemonset(s)
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()["preflight/values-sha256"]
                .clone()
        };
        let mut changed = spec.clone();
        changed.values[0].text = "tunnelProtocol: vxlan\n".into();
        assert_ne!(digest(&spec), digest(&changed));
        // Without values files: no ConfigMap, no volume, no annotation.
        assert!(values_configmap(&super::tests::spec()).is_none());
        let yaml = render_yaml(&super::tests::spec()).unwrap();
        assert!(!yaml.contains("ConfigMap") && !yaml.contains("values-sha256"));
        // With them the ConfigMap comes before the DaemonSet that mounts it.
        let yaml = render_yaml(&spec).unwrap();
        let (cm_at, ds_at) = (yaml.find("kind: ConfigMap"), yaml.find("kind: DaemonSet"));
        assert!(cm_at.unwrap() < ds_at.unwrap(), "{yaml}");
    }

    #[test]
    fn values_keys_are_valid_configmap_keys_and_unique() {
        let mut taken = Vec::new();
        for name in [
            "values.yaml",
            "values.yaml",
            "my values (prod).yaml",
            "",
            "..",
        ] {
            let key = values_key(name, &taken);
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)),
                "{key}"
            );
            taken.push(ValuesFile {
                key,
                text: String::new(),
            });
        }
        let keys: Vec<_> = taken.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "values.yaml",
                "2-values.yaml",
                "my_values__prod_.yaml",
                "3-values.yaml",
                "4-values.yaml"
            ]
        );
    }

    #[test]
    fn the_manifest_round_trips_through_the_typed_objects() {
        let yaml = render_yaml(&spec()).unwrap();
        let docs: Vec<_> = yaml.split("\n---\n").skip(1).collect();
        assert_eq!(docs.len(), 2, "{yaml}");
        let ds: DaemonSet = serde_norway::from_str(docs[1]).unwrap();
        assert_eq!(ds, daemonset(&spec()));
        let value: serde_norway::Value = serde_norway::from_str(docs[1]).unwrap();
        assert_eq!(value["apiVersion"].as_str(), Some("apps/v1"));
        assert_eq!(value["kind"].as_str(), Some("DaemonSet"));
    }

    #[test]
    fn the_pod_is_not_privileged_shares_no_host_namespace_and_only_cgroup_is_writable() {
        let ds = daemonset(&spec());
        let check = &init_container(&ds, "preflight");
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_pid, None);
        assert_eq!(pod.host_network, None);
        assert_eq!(pod.host_ipc, None);
        let sc = check.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        let added = sc.capabilities.as_ref().unwrap().add.clone().unwrap();
        assert_eq!(added, CAPABILITIES);
        let writable: Vec<_> = check
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.read_only != Some(true))
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(writable, ["/sys/fs/cgroup", "/tmp"]);
        let host_paths: Vec<_> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.host_path.as_ref().map(|h| h.path.as_str()))
            .collect();
        assert_eq!(host_paths, ["/", "/sys/fs/cgroup"], "no host bpffs");
        let args = check.args.as_ref().unwrap();
        assert_eq!(&args[..3], ["run", "--root", "/host"]);
        assert!(args.ends_with(&["--need".into(), "tunnel-geneve".into()]));
        assert!(args.contains(&"json-line".to_string()));
    }

    #[test]
    fn an_init_container_from_the_cilium_image_hands_its_datapath_to_the_check() {
        let ds = daemonset(&spec_with_image());
        let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let names: Vec<_> = pod
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        // The copy runs first: init containers run in order.
        assert_eq!(names, ["cilium-datapath", "preflight"]);
        let copy = init_container(&ds, "cilium-datapath");
        assert_eq!(copy.image.as_deref(), Some("quay.io/cilium/cilium:v1.18.3"));
        let script = &copy.command.as_ref().unwrap()[2];
        assert!(script.contains("cp -R /var/lib/cilium/bpf /cilium-datapath/"));
        assert!(script.contains("$(command -v clang)"));
        let sc = copy.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
        assert_eq!(
            copy.volume_mounts.as_ref().unwrap()[0].mount_path,
            DATAPATH_DIR
        );
        // The check reads it, read-only, and compiles with it.
        let check = init_container(&ds, "preflight");
        let mount = check
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "cilium-datapath")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (DATAPATH_DIR, Some(true))
        );
        let args = check.args.unwrap();
        let after = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .map(|i| args[i + 1].clone())
        };
        assert_eq!(after("--bpf-dir").as_deref(), Some("/cilium-datapath/bpf"));
        assert_eq!(after("--clang").as_deref(), Some("/cilium-datapath/clang"));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "cilium-datapath")
            .unwrap();
        let empty = volume.empty_dir.as_ref().unwrap();
        assert_eq!(empty.medium, None);
        assert_eq!(empty.size_limit, Some(Quantity("512Mi".into())));
        // Without an image: no copy, no volume, no tree flags (the templates).
        let plain = daemonset(&spec());
        let pod = plain.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        assert_eq!(pod.init_containers.as_ref().unwrap().len(), 1);
        assert!(!container_args(&spec()).contains(&"--bpf-dir".to_string()));
    }
}

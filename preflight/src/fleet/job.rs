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
            AppArmorProfile, Capabilities, Container, EmptyDirVolumeSource, HostPathVolumeSource,
            Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
            SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
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
}

/// The capabilities the probes and canaries need instead of `privileged: true`: BPF (load
/// programs, create maps), PERFMON (pointer-leaking helpers the datapath uses), NET_ADMIN (tc,
/// xdp, veth in the scratch netns), SYS_ADMIN (namespaces, bpffs and cgroup mounts; bpf() on
/// kernels before 5.8), SYS_RESOURCE (memlock on kernels before 5.11's memcg accounting).
pub const CAPABILITIES: &[&str] = &["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"];

/// Host paths mounted into the pod: (volume name, host path, mount path, read-only).
const HOST_MOUNTS: &[(&str, &str, &str, bool)] = &[
    // Every fact is read through --root /host; nothing there is written.
    ("host-root", "/", "/host", true),
    // The canaries pin and unpin one map on bpffs.
    ("bpffs", "/sys/fs/bpf", "/sys/fs/bpf", false),
    // The cgroup canary creates and removes one child cgroup to attach sock_addr programs.
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
    args.extend(spec.run_args.iter().cloned());
    args
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
            mount_propagation: Some("HostToContainer".into()),
            ..Default::default()
        })
        .collect();
    mounts.push(VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    });
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
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // The node's processes (k3s, kubelet, a running cilium-agent) and network
                    // devices are facts; a pod sees its own unless it shares the host's.
                    host_pid: Some(true),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
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
                    init_containers: Some(vec![check]),
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
                    // hostPath, hostPID and added capabilities need the privileged level.
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
        }
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
    fn the_pod_is_not_privileged_and_only_bpffs_and_cgroup_are_writable() {
        let ds = daemonset(&spec());
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_pid, Some(true));
        let check = &pod.init_containers.unwrap()[0];
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
        assert_eq!(writable, ["/sys/fs/bpf", "/sys/fs/cgroup", "/tmp"]);
        let args = check.args.as_ref().unwrap();
        assert_eq!(&args[..3], ["run", "--root", "/host"]);
        assert!(args.ends_with(&["--need".into(), "tunnel-geneve".into()]));
        assert!(args.contains(&"json-line".to_string()));
    }

    #[test]
    fn the_pod_command_line_is_one_this_preflight_accepts() {
        use clap::Parser as _;
        let argv = std::iter::once("preflight".to_string()).chain(container_args(&spec()));
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not a run")
        };
        assert!(run.host_kernel && run.exit_zero);
        assert_eq!(run.root, std::path::Path::new("/host"));
        assert_eq!(run.format, crate::report::Format::JsonLine);
    }
}

//! `preflight fallback flannel`: give the node back to flannel and harden it the way flannel
//! needs: kernel modules, sysctls, NetworkManager kept off the CNI links, firewalld open for
//! VXLAN, plus advice on the iptables backend and the flannel version.
use super::{
    Action, Plan, Step, StepState,
    node::{self, NodeState},
};
use crate::host::HostRoot;

pub const MODULES: [&str; 4] = ["br_netfilter", "overlay", "nf_conntrack", "vxlan"];
pub const MODULES_FILE: &str = "/etc/modules-load.d/90-preflight-flannel.conf";
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-preflight-flannel.conf";
pub const NM_FILE: &str = "/etc/NetworkManager/conf.d/90-preflight-flannel.conf";
pub const SYSCTLS: [(&str, &str); 3] = [
    ("net.bridge.bridge-nf-call-iptables", "1"),
    ("net.bridge.bridge-nf-call-ip6tables", "1"),
    ("net.ipv4.ip_forward", "1"),
];

/// Loaded, or built into the kernel (`/sys/module/NAME`, /proc/modules, modules.builtin).
pub fn module_loaded(host: &HostRoot, name: &str) -> bool {
    if host.exists(&format!("/sys/module/{name}")) {
        return true;
    }
    let in_proc = host
        .read_text("/proc/modules")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().next() == Some(name)));
    if in_proc {
        return true;
    }
    let Some(release) = host.kernel_release() else {
        return false;
    };
    host.read_text(&format!("/lib/modules/{release}/modules.builtin"))
        .is_ok_and(|t| t.lines().any(|l| l.ends_with(&format!("/{name}.ko"))))
}

/// The steps that give a node back to flannel and harden it (run after the install journal, if
/// any, has been rolled back: that already restored the conflists and removed the drop-in).
/// Cilium installed some other way is removed too: its Helm release (when helm is there to ask),
/// its conflists, and a `flannel-backend: none` in the user's own k3s config is overridden by a
/// drop-in. k3s is restarted when its config changed. `opts` names the release (`--release-name`,
/// `--namespace`) and the kubeconfig context; nothing else of it is used.
pub fn build(node: &NodeState, helm_found: bool, opts: &super::PlanOptions) -> Plan {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let root = &node.root;
    let host = &node.host;
    let mut restart = false;
    let (name, ns) = (&opts.release, &opts.namespace);

    if helm_found {
        let kube_args = super::kube_args(node, opts.context.as_deref(), super::runner::Tool::Helm);
        steps.push(
            Step::new(
                "cilium.helm-uninstall",
                format!("helm uninstall {name} (when the release exists)"),
                Action::HelmUninstall {
                    release: name.clone(),
                    namespace: ns.clone(),
                    kube_args,
                },
            )
            .changes(format!(
                "the Cilium Helm release {ns}/{name} is uninstalled, if there is one"
            ))
            .why(
                "a running Cilium agent keeps writing its conflist and owns the pod network; \
                 flannel cannot take over while it runs",
            )
            .undo("installed again at the same chart version with the values it had (journaled)")
            .state(StepState::AtRunTime(format!(
                "`helm status {name} -n {ns}` decides"
            ))),
        );
    } else {
        notes.push(format!(
            "helm not found: could not check for a Cilium Helm release. If Cilium runs on this \
             cluster, remove it first: `helm uninstall {name} -n {ns} --wait`"
        ));
    }
    for path in &node.cilium_conflists {
        steps.push(
            Step::new(
                format!("cni.cilium-conflist:{path}"),
                format!("Move aside {path}"),
                Action::MoveAside { path: path.clone() },
            )
            .changes(format!("{path} moved into the journal's backup dir"))
            .why(
                "containerd uses the first conflist by name: Cilium's (05-…) shadows flannel's \
                 (10-…) and new pods would be handed to a CNI that is gone",
            )
            .undo("moved back"),
        );
    }
    if let Some(k3s) = &node.k3s
        && k3s.flannel_backend.as_deref() == Some("none")
    {
        let content = "# Written by preflight fallback flannel: your config turns flannel off; \
                       this turns it back on.\n# `preflight rollback` removes it.\n\
                       flannel-backend: vxlan\n";
        let state = if k3s.flannel_drop_in.as_deref() == Some(content) {
            StepState::Done("drop-in already in place".into())
        } else {
            restart = true;
            StepState::Todo
        };
        steps.push(
            Step::new(
                "k3s.flannel-drop-in",
                format!("Write k3s drop-in {}", node::FLANNEL_DROP_IN),
                Action::WriteFile {
                    path: node::FLANNEL_DROP_IN.into(),
                    content: content.into(),
                    mode: 0o600,
                },
            )
            .changes(format!(
                "new file {}: flannel-backend: vxlan",
                node::FLANNEL_DROP_IN
            ))
            .why(
                "your k3s config sets flannel-backend: none, so k3s runs no flannel; a later \
                 drop-in wins, and your config.yaml stays as it is",
            )
            .undo("the drop-in is removed")
            .state(state),
        );
    }

    // Without a journal, a drop-in of ours may still be there (written by hand from `plan`).
    if node.k3s.as_ref().is_some_and(|k| k.drop_in.is_some()) {
        restart = true;
        steps.push(
            Step::new(
                "k3s.drop-in.remove",
                format!("Move aside {}", node::DROP_IN),
                Action::MoveAside {
                    path: node::DROP_IN.into(),
                },
            )
            .changes("the Cilium drop-in leaves config.yaml.d (kept in the journal backup)")
            .why("k3s must run flannel again")
            .undo("moved back"),
        );
    }
    let modules: String = MODULES.iter().map(|m| format!("{m}\n")).collect();
    steps.push(
        Step::new("modules.persist", format!("Write {MODULES_FILE}"), Action::WriteFile {
            path: MODULES_FILE.into(),
            content: format!("# Written by preflight: modules flannel (VXLAN) needs at boot.\n{modules}"),
            mode: 0o644,
        })
        .changes(format!("new file {MODULES_FILE}"))
        .why("br_netfilter (bridged pod traffic through iptables), overlay (containerd), nf_conntrack \
              (Service NAT) and vxlan (flannel.1) must be there after a reboot")
        .undo("removed"),
    );
    for m in MODULES {
        let loaded = module_loaded(host, m);
        steps.push(
            Step::new(
                format!("modules.load:{m}"),
                format!("Load module {m}"),
                Action::Modprobe { module: m.into() },
            )
            .changes(format!("kernel module {m} loaded"))
            .why("needed now, not only after the next boot")
            .undo(format!("modprobe -r {m}"))
            .state(if loaded {
                StepState::Done(format!("{m} is loaded or built in"))
            } else {
                StepState::Todo
            }),
        );
    }
    let sysctls: String = SYSCTLS
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    steps.push(
        Step::new("sysctl.persist", format!("Write {SYSCTL_FILE}"), Action::WriteFile {
            path: SYSCTL_FILE.into(),
            content: format!("# Written by preflight for flannel.\n{sysctls}"),
            mode: 0o644,
        })
        .changes(format!("new file {SYSCTL_FILE}"))
        .why("bridged pod traffic must pass iptables (kube-proxy Services) and the node must forward")
        .undo("removed"),
    );
    for (k, v) in SYSCTLS {
        steps.push(
            Step::new(
                format!("sysctl.set:{k}"),
                format!("sysctl {k}={v}"),
                Action::Sysctl {
                    key: k.into(),
                    value: v.into(),
                },
            )
            .changes(format!("{k} set to {v} now"))
            .why("the file applies at boot; this applies it now")
            .undo("set back to the journaled value"),
        );
    }
    if host.is_dir("/etc/NetworkManager") {
        steps.push(
            Step::new("nm.unmanaged", format!("Write {NM_FILE}"), Action::WriteFile {
                path: NM_FILE.into(),
                content: "# Written by preflight: NetworkManager must not touch CNI links.\n[keyfile]\n\
                          unmanaged-devices=interface-name:cni*;interface-name:flannel*;interface-name:veth*\n"
                    .into(),
                mode: 0o644,
            })
            .changes(format!("new file {NM_FILE}"))
            .why("NetworkManager otherwise takes over cni0/flannel.1/veth* and strips their routes")
            .undo("removed"),
        );
        steps.push(
            Step::new(
                "nm.reload",
                "systemctl reload NetworkManager",
                Action::Service {
                    unit: "NetworkManager".into(),
                    verb: "reload".into(),
                    openrc: node.openrc,
                },
            )
            .changes("NetworkManager rereads its configuration")
            .why("the unmanaged-devices setting takes effect without a restart")
            .undo("reloaded (restarted) again after the file is removed"),
        );
    } else {
        notes.push("NetworkManager is not installed: no unmanaged-devices setting needed".into());
    }
    // firewalld takes one source per rule; the IPv4 pod CIDR is flannel's VXLAN network.
    let cidr = node
        .k3s
        .as_ref()
        .and_then(|k| k.cluster_cidrs.iter().find(|c| !c.contains(':')).cloned())
        .unwrap_or_else(|| "10.42.0.0/16".into());
    if host.is_dir("/etc/firewalld") {
        for (what, add, remove) in [
            (
                "VXLAN 8472/udp",
                vec!["--permanent".to_string(), "--add-port=8472/udp".into()],
                vec!["--permanent".to_string(), "--remove-port=8472/udp".into()],
            ),
            (
                "pod CIDR as trusted source",
                vec![
                    "--permanent".into(),
                    "--zone=trusted".into(),
                    format!("--add-source={cidr}"),
                ],
                vec![
                    "--permanent".into(),
                    "--zone=trusted".into(),
                    format!("--remove-source={cidr}"),
                ],
            ),
        ] {
            steps.push(
                Step::new(format!("firewalld:{what}"), format!("firewalld: allow {what}"), Action::Firewall { add_args: add, remove_args: remove })
                    .changes(format!("permanent firewalld rule: {what}"))
                    .why("flannel's VXLAN between nodes and traffic from pods must pass the host firewall")
                    .undo("the rule is removed and firewalld reloaded"),
            );
        }
        steps.push(
            Step::new(
                "firewalld.reload",
                "firewall-cmd --reload",
                Action::Firewall {
                    add_args: vec!["--reload".into()],
                    remove_args: vec!["--reload".into()],
                },
            )
            .changes("firewalld applies its permanent rules")
            .why("permanent rules apply only after a reload")
            .undo("reloaded again"),
        );
    } else {
        notes.push(format!(
            "firewalld is not installed: nothing to open. If another firewall filters this node, \
             allow UDP 8472 between nodes and traffic from the pod CIDR {cidr}"
        ));
    }
    notes.push(iptables_advice(host));
    notes.push(
        "flannel version: on an nftables node use flannel ≥ 0.27 (nftables-aware) with \
         \"EnableNFTables\": true in net-conf.json, matching the backend above; k3s bundles \
         flannel, so this means a k3s release that ships flannel ≥ 0.27 (k3s ≥ 1.31 era); \
         with the iptables-legacy backend keep EnableNFTables false"
            .into(),
    );
    if let Some(unit) = node.k3s.as_ref().map(|k| k.unit.as_str())
        && restart
    {
        let (tool, argv) = super::service_command(unit, "restart", node.openrc);
        steps.push(
            Step::new(
                "k3s.restart",
                format!("{} {}", tool.program(), argv.join(" ")),
                Action::Service {
                    unit: unit.into(),
                    verb: "restart".into(),
                    openrc: node.openrc,
                },
            )
            .changes(format!("{unit} restarts with flannel"))
            .why("k3s reads its config only at start")
            .undo("restarted again"),
        );
    }
    Plan {
        title: format!("Fall back to flannel on {} and harden it", root.display()),
        steps,
        notes,
        values: None,
    }
}

/// Which iptables the node uses (Debian alternatives) and what flannel must match.
fn iptables_advice(host: &HostRoot) -> String {
    let alt = host.read_link("/etc/alternatives/iptables").ok();
    match alt
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
    {
        Some(n) if n.contains("nft") => format!(
            "iptables backend: nft ({n}); kube-proxy, flannel and k3s's bundled iptables must all \
             use nft (k3s: --prefer-bundled-bin only if the bundled one is nft too)"
        ),
        Some(n) if n.contains("legacy") => format!(
            "iptables backend: legacy ({n}); keep every component on legacy, and do not mix with \
             nftables rules (two backends make Service traffic vanish)"
        ),
        _ => {
            "iptables backend: could not tell (no /etc/alternatives/iptables); check `iptables -V` \
              says the same (nf_tables or legacy) as the iptables k3s uses"
                .into()
        }
    }
}

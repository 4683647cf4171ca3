//! Decide: the install plan from the node's state (read through [`NodeState`], never from the
//! node directly) and the options, one function per phase, in the order they run: bpffs, the
//! k3s config, leftovers, the k3s restart, flannel's links and chains, Helm, waits and
//! post-checks. Pure: nothing here changes the node or runs a tool.
use super::{
    Action, BPFFS_UNIT_TEXT, COREDNS_NAMESPACE, Plan, PlanOptions, PostCheck, Step, StepState,
    VALUES_FILE, gitops, kube_args, node,
    node::{DROP_IN, LinkState, MountState, NodeState},
    runner, service_command,
};

fn file_state(node: &NodeState, path: &str, content: &str) -> StepState {
    match node.host.read_text(path) {
        Ok(now) if now == content => StepState::Done(format!("{path} already has this content")),
        _ => StepState::Todo,
    }
}

/// The k3s drop-in: only the keys Cilium needs that the user's config does not already set;
/// None when it sets them all (Rancher Desktop ships `flannel-backend: none`). The user's
/// config.yaml is never rewritten.
pub fn drop_in_text(k3s: &node::K3s, opts: &PlanOptions) -> Option<String> {
    let mut keys = String::new();
    if k3s.flannel_backend.as_deref() != Some("none") {
        keys.push_str("flannel-backend: none\n");
    }
    if !k3s.disable_network_policy {
        keys.push_str("disable-network-policy: true\n");
    }
    if opts.kube_proxy_replacement && !k3s.disable_kube_proxy {
        keys.push_str("disable-kube-proxy: true\n");
    }
    (!keys.is_empty()).then(|| {
        format!(
            "# Written by preflight for the Cilium migration; `preflight rollback` removes it.\n{keys}"
        )
    })
}

/// A service restart or reload step's title: the command it runs.
fn service_title(node: &NodeState, unit: &str, verb: &str) -> String {
    let (tool, args) = service_command(unit, verb, node.openrc);
    format!("{} {}", tool.program(), args.join(" "))
}

/// The values file: the plan's defaults (VXLAN tunnel, cluster-pool IPAM), then the user's
/// values (`opts.user_values`, from -f/--set) over them, then what this node requires over those
/// (CNI dirs, the k3s pod CIDRs, the API server without kube-proxy), then the verdict's value
/// fixes (`opts.values_fix`). Where the node overrides a value the user gave, a note says so.
pub fn values_for(
    node: &NodeState,
    opts: &PlanOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;

    use crate::cilium::values;
    let mut v = json!({
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "ipam": {"mode": "cluster-pool"},
    });
    // The pre-1.15 `tunnel` key says what routing the user wants; the verdict's fix turns it
    // into routingMode/tunnelProtocol. A default routingMode here would overrule that intent.
    if values::lookup(&opts.user_values, "tunnel").is_some()
        && let Some(m) = v.as_object_mut()
    {
        m.remove("routingMode");
        m.remove("tunnelProtocol");
    }
    values::merge(&mut v, opts.user_values.clone());

    // Always explicit, even when they are the chart's defaults: the file documents which dirs
    // this node's containerd uses.
    let mut required = json!({
        "cni": {"binPath": node.cni_after.bin_dir, "confPath": node.cni_after.conf_dir},
    });
    let cidrs = node
        .k3s
        .as_ref()
        .map(|k| k.cluster_cidrs.clone())
        .unwrap_or_else(|| vec!["10.42.0.0/16".into()]);
    let (v4, v6): (Vec<String>, Vec<String>) = cidrs.into_iter().partition(|c| !c.contains(':'));
    if values::lookup(&v, "ipam.mode").and_then(|m| m.as_str()) == Some("cluster-pool") {
        let mut operator = serde_json::Map::new();
        if !v4.is_empty() {
            operator.insert("clusterPoolIPv4PodCIDRList".into(), json!(v4));
        }
        if !v6.is_empty() {
            operator.insert("clusterPoolIPv6PodCIDRList".into(), json!(v6));
        }
        required["ipam"] = json!({"operator": operator});
    }
    if !v6.is_empty() {
        // k3s is dual-stack (or IPv6-only): Cilium must hand out IPv6 addresses too.
        required["ipv6"] = json!({"enabled": true});
        if v4.is_empty() {
            required["ipv4"] = json!({"enabled": false});
        }
    }
    if opts.kube_proxy_replacement {
        let host = match opts.k8s_service_host.clone().or_else(|| {
            values::lookup(&v, "k8sServiceHost")
                .and_then(|h| h.as_str())
                .map(String::from)
        }) {
            Some(h) => h,
            None => {
                // An agent's config names its server; otherwise the API server is local.
                let from_server = node
                    .k3s
                    .as_ref()
                    .and_then(|k| k.server.as_deref())
                    .and_then(|u| {
                        let rest = u.split("://").nth(1)?;
                        Some(rest.split([':', '/']).next()?.to_string())
                    });
                from_server.ok_or_else(|| {
                    anyhow::anyhow!(
                        "--kube-proxy-replacement needs the API server address without kube-proxy: \
                         give --k8s-service-host (the server's node IP)"
                    )
                })?
            }
        };
        let port = values::lookup(&v, "k8sServicePort")
            .cloned()
            .unwrap_or_else(|| json!(opts.k8s_service_port));
        required["kubeProxyReplacement"] = json!(true);
        required["k8sServiceHost"] = json!(host);
        required["k8sServicePort"] = port;
    }
    note_overrides(&opts.user_values, &required, notes);
    values::merge(&mut v, required);
    if let Some(fix) = &opts.values_fix {
        values::merge(&mut v, fix.clone());
    }
    Ok(v)
}

/// Every value the user gave (`user`) that `required` replaces: its dotted path, the user's
/// value and the required one. The node migration and the cluster migration both say so.
pub fn replaced_values(
    user: &serde_json::Value,
    required: &serde_json::Value,
) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    fn walk(
        user: &serde_json::Value,
        required: &serde_json::Value,
        prefix: &str,
        out: &mut Vec<(String, serde_json::Value, serde_json::Value)>,
    ) {
        let (Some(u), Some(r)) = (user.as_object(), required.as_object()) else {
            return;
        };
        for (k, want) in r {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match u.get(k) {
                Some(got) if got.is_object() && want.is_object() => walk(got, want, &path, out),
                Some(got) if got != want => out.push((path, got.clone(), want.clone())),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(user, required, "", &mut out);
    out
}

/// A note for every value the user gave that the node's requirements replace.
fn note_overrides(user: &serde_json::Value, required: &serde_json::Value, notes: &mut Vec<String>) {
    for (path, got, want) in replaced_values(user, required) {
        notes.push(format!(
            "values: your {path}: {got} is replaced by {want}, which this node needs"
        ));
    }
}

/// Whether the user's values turn kube-proxy replacement on (`true`, or "true"/"strict" of
/// older charts).
pub fn wants_kube_proxy_replacement(user: &serde_json::Value) -> bool {
    match crate::cilium::values::lookup(user, "kubeProxyReplacement") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => matches!(s.as_str(), "true" | "strict"),
        _ => false,
    }
}

/// Cilium state and pins are leftovers to move aside, unless an install of this preflight is
/// in place: then they are the running agent's, and moving them would pull its header and maps
/// from under it on every re-run.
fn agents_own(node: &NodeState) -> StepState {
    match &node.installed {
        Some(journal) => StepState::Done(format!(
            "the agent preflight installed wrote it ({journal})"
        )),
        None => StepState::Todo,
    }
}

/// The install plan for this node.
pub fn build_install(node: &NodeState, opts: &PlanOptions) -> anyhow::Result<Plan> {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    let Some(k3s) = &node.k3s else {
        anyhow::bail!(
            "{}: no k3s found (no {} and no k3s systemd unit); preflight plans migrations for k3s nodes",
            node.root.display(),
            node::K3S_CONFIG
        );
    };
    let values = values_for(node, opts, &mut notes)?;
    bpffs_steps(node, &mut steps, &mut notes)?;
    let (k3s_changes, k3s_fixes) = k3s_config_steps(node, opts, k3s, &mut steps, &mut notes);
    leftover_steps(node, &mut steps);
    restart_steps(node, k3s, k3s_changes, k3s_fixes, &mut steps);
    flannel_link_steps(node, &mut steps);
    helm_steps(node, opts, &values, &mut steps)?;
    wait_and_check_steps(node, opts, &mut steps, &mut notes);
    if node.rancher_desktop {
        notes.push(
            "Rancher Desktop: also mount bpffs and cgroup2 shared through its provisioning override \
             file, or the settings are lost when the VM restarts"
                .into(),
        );
    }
    if k3s.agent {
        // No admin kubeconfig and no cluster-wide install from an agent: the server's plan
        // does the Kubernetes side (helm, waits, pod restarts, post-checks).
        steps.retain(|s| {
            !["helm.", "wait.", "post.", "pods."]
                .iter()
                .any(|p| s.id.starts_with(p))
        });
        notes.retain(|n| !n.starts_with("pods other than CoreDNS"));
    } else {
        notes.push(
            "multi-node clusters: run this install on one server; the Helm release is cluster-wide \
             and the Cilium DaemonSet lands on every node. Then run `preflight install` on each \
             other node: there it only clears flannel's leftovers (conflists, flannel.1, cni0) \
             and restarts k3s; until then pods on those nodes keep flannel's routes"
                .into(),
        );
        notes.push(
            "the Kubernetes steps run helm and kubectl as found on PATH (or --helm/--kubectl); \
             preflight does not talk to the API itself"
                .into(),
        );
    }
    Ok(Plan {
        title: format!(
            "Migrate {} from flannel to Cilium {}",
            node.root.display(),
            opts.cilium_version
        ),
        steps,
        notes,
        values: Some(values),
    })
}

/// Phase 1: bpffs mounted, shared, and so after a reboot too.
fn bpffs_steps(
    node: &NodeState,
    steps: &mut Vec<Step>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    // 1. bpffs: mounted, shared, and so after a reboot too.
    let unit_name = "sys-fs-bpf.mount".to_string();
    let mut wrote_unit = false;
    if node.bpffs_persisted.is_none() {
        if node.systemd {
            wrote_unit = true;
            steps.push(
                Step::new(
                    "bpffs.persist",
                    format!("Write {}", node::BPFFS_UNIT),
                    Action::WriteFile {
                        path: node::BPFFS_UNIT.into(),
                        content: BPFFS_UNIT_TEXT.into(),
                        mode: 0o644,
                    },
                )
                .changes(format!("new file {}", node::BPFFS_UNIT))
                .why(
                    "Cilium pins its maps in /sys/fs/bpf; without a persistent mount they are lost \
                      on reboot and the agent rebuilds every endpoint",
                )
                .undo("the file is removed (it did not exist)"),
            );
        } else {
            let fstab = match node.host.read_text("/etc/fstab") {
                Ok(t) => t,
                Err(e) if e.is_not_found() => String::new(),
                Err(e) => anyhow::bail!("cannot add a bpffs line to /etc/fstab: {e}"),
            };
            let mut content = fstab.clone();
            if !content.is_empty() && !content.ends_with('\n') {
                content.push('\n');
            }
            content
                .push_str("bpffs /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n");
            steps.push(
                Step::new(
                    "bpffs.persist",
                    "Add a bpffs line to /etc/fstab",
                    Action::WriteFile {
                        path: "/etc/fstab".into(),
                        content,
                        mode: 0o644,
                    },
                )
                .changes("one line appended to /etc/fstab")
                .why("no systemd here: fstab keeps bpffs mounted across reboots")
                .undo("/etc/fstab restored byte for byte"),
            );
        }
    }
    if wrote_unit {
        steps.push(
            Step::new(
                "bpffs.daemon-reload",
                "systemctl daemon-reload",
                Action::DaemonReload,
            )
            .changes("systemd rereads unit files")
            .why("systemd must see the new mount unit before it can start it")
            .undo("daemon-reload again after the unit is removed"),
        );
    }
    match &node.bpffs {
        MountState::NotMounted => steps.push(
            Step::new("bpffs.mount", format!("Mount bpffs at /sys/fs/bpf ({unit_name})"), if node.systemd {
                Action::EnableUnit { unit: unit_name.clone() }
            } else {
                Action::MakeShared
            })
            .changes("bpffs mounted at /sys/fs/bpf (systemd mounts are shared)")
            .why("the agent mounts /sys/fs/bpf Bidirectional: the host mount must exist and be shared")
            .undo(format!("systemctl disable --now {unit_name}"))
            .fixes(&["mounts.bpffs"]),
        ),
        MountState::Mounted { shared: false, .. } => steps.push(
            Step::new("bpffs.shared", "Make /sys/fs/bpf a shared mount", Action::MakeShared)
                .changes("mount propagation of /sys/fs/bpf: private → shared")
                .why("the agent mounts /sys/fs/bpf Bidirectional: a private host mount hides its pins")
                .undo("mount --make-private /sys/fs/bpf")
                .fixes(&["mounts.bpffs"]),
        ),
        MountState::Mounted { shared: true, count } => {
            if *count > 1 {
                notes.push(format!(
                    "/sys/fs/bpf is mounted {count} times (\"multiple mount points detected\", \
                     cilium/cilium#6966): unmount the extra ones before installing"
                ));
            }
        }
        MountState::Unknown(why) => notes.push(format!(
            "could not tell whether bpffs is mounted ({why}); the mount step is skipped: check \
             `findmnt /sys/fs/bpf` shows a shared bpf mount"
        )),
    }
    Ok(())
}

/// Phase 2: flannel off in k3s's config. Returns whether k3s's config changes and the
/// checks a restart with it fixes.
fn k3s_config_steps(
    node: &NodeState,
    opts: &PlanOptions,
    k3s: &node::K3s,
    steps: &mut Vec<Step>,
    notes: &mut Vec<String>,
) -> (bool, &'static [&'static str]) {
    // 2. k3s: flannel off through a drop-in, unless the user's config already says so. These
    // are server keys: an agent takes flannel's settings from its server.
    let drop_in = if k3s.agent {
        None
    } else {
        drop_in_text(k3s, opts)
    };
    let drop_in_state = match (&drop_in, &k3s.drop_in) {
        (Some(want), Some(now)) if now == want => {
            StepState::Done("drop-in already in place".into())
        }
        _ => StepState::Todo,
    };
    let mut k3s_changes = !node.flannel_conflists.is_empty() || k3s.agent;
    // compile.init: with flannel off, flannel.1 no longer holds the tunnel port when the agent
    // starts, so datapath init writes node_config.h before any endpoint compiles.
    let k3s_fixes: &[&str] = if opts.kube_proxy_replacement {
        &[
            "k3s.flannel-backend",
            "k3s.network-policy",
            "k3s.kube-proxy",
            "cni.bin-dir-versioned",
            "compile.init",
        ]
    } else {
        &[
            "k3s.flannel-backend",
            "k3s.network-policy",
            "cni.bin-dir-versioned",
            "compile.init",
        ]
    };
    if let Some(drop_in) = &drop_in {
        k3s_changes |= drop_in_state == StepState::Todo;
        steps.push(
            Step::new(
                "k3s.drop-in",
                format!("Write k3s drop-in {DROP_IN}"),
                Action::WriteFile {
                    path: DROP_IN.into(),
                    content: drop_in.clone(),
                    mode: 0o600,
                },
            )
            .changes(format!(
                "new file {DROP_IN}: {}",
                drop_in
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .why(format!(
                "k3s must stop running flannel (now: flannel-backend {}) and its network policy \
                 controller{}; a drop-in leaves your config.yaml untouched",
                k3s.flannel_backend.as_deref().unwrap_or("vxlan (default)"),
                if opts.kube_proxy_replacement {
                    ", and kube-proxy (Cilium replaces it)"
                } else {
                    ""
                }
            ))
            .undo("the drop-in is removed; config.yaml was never changed")
            .state(drop_in_state)
            .fixes(k3s_fixes),
        );
    } else if k3s.agent {
        notes.push(format!(
            "agent node ({}{}): flannel-backend, disable-network-policy and disable-kube-proxy are \
             server settings, and the Helm release is cluster-wide. Migrate the server(s) first \
             (`preflight install` there); the Cilium DaemonSet then lands on every node, this one \
             included. This plan only clears this node's flannel leftovers and restarts the agent; \
             it runs no helm and no kubectl here",
            k3s.unit,
            k3s.server
                .as_deref()
                .map(|s| format!(", server {s}"))
                .unwrap_or_default()
        ));
    } else {
        notes.push(format!(
            "k3s: your config already sets flannel-backend: none{}; no drop-in and no restart \
             are needed for that",
            if opts.kube_proxy_replacement {
                ", disable-network-policy and disable-kube-proxy"
            } else {
                " and disable-network-policy"
            }
        ));
    }
    (k3s_changes, k3s_fixes)
}

/// Phase 3: what flannel and an earlier Cilium left, moved aside.
fn leftover_steps(node: &NodeState, steps: &mut Vec<Step>) {
    // 3. leftovers: moved aside, never deleted.
    for path in &node.flannel_conflists {
        steps.push(
            Step::new(
                format!("cni.conflist:{path}"),
                format!("Move aside {path}"),
                Action::MoveAside { path: path.clone() },
            )
            .changes(format!("{path} moved into the journal's backup dir"))
            .why(
                "containerd picks the first conflist by name: a flannel one left there shadows \
                      Cilium's and pods keep getting flannel networking",
            )
            .undo("moved back, content and mode unchanged")
            .fixes(&["cni.leftover-configs", "cni.configs"]),
        );
    }
    for path in &node.stale_state {
        let why = if path.ends_with("node_config.h") {
            "a node_config.h written by another Cilium version (or a half-initialised agent) makes \
             endpoint compiles fail with 'CALLS_MAP' / 'SNAT_COLLISION_RETRIES' macro redefined \
             (cilium/cilium#38222; docs/compile.md); the agent writes a fresh one"
        } else {
            "templates compiled by a previous agent; the new agent rebuilds them"
        };
        steps.push(
            Step::new(
                format!("state.stale:{path}"),
                format!("Move aside stale Cilium state {path}"),
                Action::MoveAside { path: path.clone() },
            )
            .changes(format!("{path} moved into the journal's backup dir"))
            .why(why)
            .undo("moved back byte for byte")
            .fixes(&["state.node-config", "state.templates"])
            .state(agents_own(node)),
        );
    }
    for path in &node.pins {
        steps.push(
            Step::new(format!("bpffs.pin:{path}"), format!("Move aside old pin {path}"), Action::MoveAside { path: path.clone() })
                .changes(format!("{path} moved aside (on bpffs: renamed next to itself)"))
                .why("maps pinned by a previous Cilium may have another layout; the agent re-creates them")
                .undo("renamed back")
                .fixes(&["state.bpf-pins"])
                .state(agents_own(node)),
        );
    }
}

/// Phase 4: the k3s restart and the CNI dirs containerd uses after it.
fn restart_steps(
    node: &NodeState,
    k3s: &node::K3s,
    k3s_changes: bool,
    k3s_fixes: &[&str],
    steps: &mut Vec<Step>,
) {
    // 4. restart k3s (flannel off), then check where containerd now looks for CNI.
    let cni_conf = node.cni_after.conf_dir.clone();
    let cni_bin = node.cni_after.bin_dir.clone();
    steps.push(
        Step::new(
            "k3s.guard",
            "Record files k3s and Cilium will write",
            Action::Guard {
                paths: vec![
                    node::CONTAINERD_CONFIG.into(),
                    format!("{cni_conf}/05-cilium.conflist"),
                    format!("{cni_bin}/cilium-cni"),
                ],
                links: vec![
                    "cilium_host".into(),
                    "cilium_net".into(),
                    "cilium_vxlan".into(),
                ],
            },
        )
        .changes("nothing (journal only)")
        .why(
            "k3s rewrites containerd's config.toml on restart and Cilium installs its conflist, \
              CNI binary and links: recording them now lets rollback return them too",
        )
        .undo("each path and link back to what it is now"),
    );
    steps.push(
        Step::new(
            "k3s.restart",
            service_title(node, &k3s.unit, "restart"),
            Action::Service {
                unit: k3s.unit.clone(),
                verb: "restart".into(),
                openrc: node.openrc,
            },
        )
        .changes(format!(
            "{} restarts without flannel; running pods keep running",
            k3s.unit
        ))
        .why(if k3s.agent {
            "the agent takes flannel's settings from the server when it starts: once the server \
             runs with flannel-backend: none, a restart stops flannel here"
        } else {
            "k3s reads its config only at start"
        })
        .undo("restarted again once its config is restored (flannel comes back)")
        .fixes(if k3s.agent {
            // Server settings: on an agent they are fixed by the server's migration, which
            // the agent picks up when it restarts.
            k3s_fixes
        } else {
            &[]
        })
        .state(if k3s_changes {
            StepState::Todo
        } else {
            StepState::Done("k3s config unchanged".into())
        }),
    );
    steps.push(
        Step::new(
            "k3s.cni-paths",
            "Check containerd's CNI dirs after the restart",
            Action::CheckCniPaths {
                expect: node.cni_after.clone(),
            },
        )
        .changes("nothing (reads config.toml)")
        .why(format!(
            "the values point Cilium at bin {cni_bin}, conf {cni_conf} ({}); a mismatch means pods \
             fail with 'failed to find plugin \"cilium-cni\"'",
            node.cni_after.notes.join("; ")
        ))
        .undo("nothing to undo"),
    );
}

/// Phase 5: flannel's links and iptables chains.
fn flannel_link_steps(node: &NodeState, steps: &mut Vec<Step>) {
    // 5. links flannel left behind.
    for (name, state) in &node.links {
        let (s, fixes): (StepState, &[&str]) = match state {
            LinkState::Absent => (StepState::Done(format!("{name} does not exist")), &[]),
            LinkState::Present(_) => (
                StepState::Todo,
                &[
                    "network.flannel-leftovers",
                    "network.tunnel-port.vxlan",
                    "compile.init",
                ],
            ),
            LinkState::Unknown(why) => (
                StepState::AtRunTime(format!("could not query {name}: {why}")),
                &[],
            ),
        };
        let why = if name == "flannel.1" {
            "flannel's VXLAN device holds UDP 8472: Cilium's cilium_vxlan then fails with \
             \"address already in use\", the agent never writes node_config.h and endpoint compiles \
             fail with macro redefinitions (docs/compile.md)"
        } else {
            "flannel's bridge keeps routes for the pod CIDR that now belong to Cilium"
        };
        steps.push(
            Step::new(
                format!("links.delete:{name}"),
                format!("ip link del {name}"),
                Action::DeleteLink { name: name.clone() },
            )
            .changes(format!("link {name} deleted (its settings are journaled)"))
            .why(why)
            .undo(format!(
                "{name} recreated with the journaled kind, MTU, MAC, VXLAN id/port and addresses; \
                               flannel refreshes it when k3s restarts"
            ))
            .state(s)
            .fixes(fixes),
        );
    }

    // flannel's iptables chains: nothing removes them when flanneld stops.
    steps.push(
        Step::new(
            "iptables.flannel",
            "Remove flannel's iptables chains (FLANNEL-POSTRTG, FLANNEL-FWD)",
            Action::FlannelIptables,
        )
        .changes(
            "the rules that jump to FLANNEL-* chains are deleted, then the chains flushed and \
             deleted; their tables are saved with iptables-save into the journal first",
        )
        .why(
            "flanneld's masquerade (nat FLANNEL-POSTRTG) and accept (filter FLANNEL-FWD) rules \
             for the pod CIDR outlive flannel: they keep matching traffic Cilium now routes and \
             masquerades by its own rules",
        )
        .undo(
            "iptables-restore of the saved tables; k3s restarts at the end of a rollback, so \
             kube-proxy and flannel re-sync their own rules after it",
        )
        .state(StepState::AtRunTime(
            "iptables-save is read when the step runs; without iptables-save the step says so \
             and changes nothing"
                .into(),
        )),
    );
}

/// Phase 6: the Helm values file and release.
fn helm_steps(
    node: &NodeState,
    opts: &PlanOptions,
    values: &serde_json::Value,
    steps: &mut Vec<Step>,
) -> anyhow::Result<()> {
    // 6. Helm.
    let values_yaml = gitops::values_yaml(values);
    steps.push(
        Step::new(
            "helm.values",
            format!("Write Helm values {VALUES_FILE}"),
            Action::WriteFile {
                path: VALUES_FILE.into(),
                content: values_yaml.clone(),
                mode: 0o644,
            },
        )
        .changes(format!("new file {VALUES_FILE}"))
        .why("the CNI dirs and pod CIDR this node needs, in a file you can review and keep")
        .undo("removed")
        .state(file_state(node, VALUES_FILE, &values_yaml)),
    );
    let mut helm_args: Vec<String> =
        vec!["upgrade".into(), "--install".into(), opts.release.clone()];
    match &opts.chart {
        // The chart the values were validated against is the one installed. helm takes a
        // local chart by path and ignores --version for it, so none is passed.
        Some(chart) => helm_args.push(chart.display().to_string()),
        None => helm_args.extend([
            "cilium".into(),
            "--repo".into(),
            gitops::CILIUM_HELM_REPO.into(),
            "--version".into(),
            opts.cilium_version.clone(),
        ]),
    }
    helm_args.extend([
        "--namespace".into(),
        opts.namespace.clone(),
        "--values".into(),
        node.host.resolve(VALUES_FILE)?.display().to_string(),
    ]);
    helm_args.extend(kube_args(node, opts.context.as_deref(), runner::Tool::Helm));
    steps.push(
        Step::new(
            "helm.install",
            format!(
                "helm upgrade --install {} (Cilium {})",
                opts.release, opts.cilium_version
            ),
            Action::Helm {
                release: opts.release.clone(),
                namespace: opts.namespace.clone(),
                version: opts.cilium_version.clone(),
                args: helm_args,
                values: values.clone(),
            },
        )
        .changes(format!(
            "Helm release {}/{} installed",
            opts.namespace, opts.release
        ))
        .why("installs the Cilium agent DaemonSet and operator with the generated values")
        .undo("helm uninstall (or helm rollback to the revision that was there)"),
    );
    Ok(())
}

/// Phase 7: waits, pod restarts and post-checks.
fn wait_and_check_steps(
    node: &NodeState,
    opts: &PlanOptions,
    steps: &mut Vec<Step>,
    notes: &mut Vec<String>,
) {
    // 7. waits and post-checks.
    let kc = kube_args(node, opts.context.as_deref(), runner::Tool::Kubectl);
    let timeout = format!("--timeout={}s", opts.wait_timeout_s);
    let kubectl = |args: &[&str]| -> Vec<String> {
        let mut v = kc.clone();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let ns = opts.namespace.as_str();
    steps.push(
        Step::new(
            "wait.cilium",
            "Wait for daemonset/cilium",
            Action::Kubectl {
                args: kubectl(&["-n", ns, "rollout", "status", "daemonset/cilium", &timeout]),
                check: PostCheck::ExitZero,
            },
        )
        .changes("nothing")
        .why("every node's agent must come up")
        .undo("nothing to undo"),
    );
    // Pods started under flannel keep their flannel IPs and routes (cni0 is gone): nothing
    // restarts them by itself. CoreDNS is restarted always; the rest only when asked.
    steps.push(
        Step::new(
            "pods.restart-coredns",
            "Restart CoreDNS onto Cilium",
            Action::RolloutRestart {
                args: kubectl(&[
                    "-n",
                    COREDNS_NAMESPACE,
                    "rollout",
                    "restart",
                    "deployment/coredns",
                ]),
            },
        )
        .changes("CoreDNS pods are replaced (a rolling restart: DNS stays served)")
        .why(
            "CoreDNS still has the IP flannel gave it, on a bridge that was deleted: new pods \
             could not resolve names until it is recreated with a Cilium-managed IP",
        )
        .undo("restarted again after rollback, so it gets a flannel IP again"),
    );
    steps.push(
        Step::new(
            "wait.coredns",
            "Wait for deployment/coredns",
            Action::Kubectl {
                args: kubectl(&[
                    "-n",
                    COREDNS_NAMESPACE,
                    "rollout",
                    "status",
                    "deployment/coredns",
                    &timeout,
                ]),
                check: PostCheck::ExitZero,
            },
        )
        .changes("nothing")
        .why("the restarted CoreDNS pods must be ready, now with Cilium-managed IPs")
        .undo("nothing to undo"),
    );
    // `|`-separated: a field that is not set (hostNetwork, ownerReferences) prints as nothing.
    let listing = "{range .items[*]}{.metadata.namespace}|{.metadata.name}|{.spec.hostNetwork}|{.metadata.ownerReferences[0].kind}{\"\\n\"}{end}";
    if opts.restart_pods {
        steps.push(
            Step::new(
                "pods.restart-others",
                "Recreate the other pods that still use flannel's network",
                Action::RestartPods {
                    list_args: kubectl(&["get", "pods", "--all-namespaces", "-o", &format!("jsonpath={listing}")]),
                    kube_args: kc.clone(),
                },
            )
            .changes(
                "every pod that is not hostNetwork and has a controller (Deployment, DaemonSet, \
                 StatefulSet, Job…) is deleted so that its controller recreates it under Cilium; \
                 pods without a controller are listed, not deleted",
            )
            .why("--restart-pods: those pods keep flannel IPs and cannot reach Cilium-managed pods")
            .undo("not undone: the pods are recreated, not changed; after a rollback restart them again the same way"),
        );
    } else {
        notes.push(format!(
            "pods other than CoreDNS keep their flannel IPs until they are recreated. List them: \
             `kubectl get pods -A -o 'jsonpath={listing}'` (namespace|name|hostNetwork|owner); \
             the ones that are not hostNetwork need a restart, e.g. `kubectl -n NS rollout restart \
             deployment/NAME`. `preflight install --restart-pods` deletes every such pod that has \
             a controller (which recreates it) and lists the ones without"
        ));
    }
    // The in-pod CLI of the version (release table); an unknown version has the newest's.
    let status_bin = crate::cilium::CiliumVersion::parse(&opts.cilium_version)
        .ok()
        .and_then(|v| crate::cilium::releases::BUILTIN.resolve(&v).ok())
        .map_or(
            crate::cilium::releases::BUILTIN
                .newest()
                .agent
                .status_binary,
            |r| r.release.agent.status_binary,
        );
    steps.push(
        Step::new(
            "post.cilium-status",
            "Agent reports healthy",
            Action::Kubectl {
                args: kubectl(&[
                    "-n",
                    ns,
                    "exec",
                    "ds/cilium",
                    "-c",
                    "cilium-agent",
                    "--",
                    status_bin,
                    "status",
                    "--brief",
                ]),
                check: PostCheck::ExitZero,
            },
        )
        .changes("nothing")
        .why("rollout status only says the pod is Ready; this asks the agent itself")
        .undo("nothing to undo"),
    );
    steps.push(
        Step::new("post.pod-ips", "Every running pod has an IP", Action::Kubectl {
            args: kubectl(&[
                "get", "pods", "--all-namespaces", "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.phase} {.status.podIP}{\"\\n\"}{end}",
            ]),
            check: PostCheck::PodsHaveIps,
        })
        .changes("nothing")
        .why("pods without an IP mean the CNI did not set them up")
        .undo("nothing to undo"),
    );
    if let Some(image) = &opts.dns_check_image {
        steps.push(
            Step::new(
                "post.dns",
                "A pod resolves a Service name through CoreDNS",
                Action::Kubectl {
                    args: kubectl(&[
                        "-n",
                        ns,
                        "run",
                        "preflight-dns-check",
                        &format!("--image={image}"),
                        "--restart=Never",
                        "--rm",
                        "-i",
                        "--quiet",
                        &timeout,
                        "--command",
                        "--",
                        "nslookup",
                        "kubernetes.default.svc.cluster.local",
                    ]),
                    check: PostCheck::ExitZero,
                },
            )
            .changes("a short-lived pod, deleted when it exits")
            .why(
                "pod → ClusterIP (kube-dns) → CoreDNS pod exercises pod-to-pod and Service routing",
            )
            .undo("nothing to undo (--rm)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::plan::{journal, *};

    thread_local! {
        /// An empty root per test thread, removed when the thread ends.
        static ROOT: tempfile::TempDir = tempfile::tempdir().unwrap();
    }

    fn node(rd: bool, bpffs: MountState) -> NodeState {
        let root = ROOT.with(|d| d.path().to_path_buf());
        NodeState {
            host: crate::host::HostRoot::new(&root),
            root,
            k3s: Some(node::K3s {
                unit: "k3s-agent".into(),
                flannel_backend: None,
                flannel_backend_from: None,
                disable_network_policy: false,
                disable_kube_proxy: false,
                cluster_cidrs: vec!["10.52.0.0/16".into()],
                server: Some("https://192.168.5.1:6443".into()),
                agent: true,
                drop_in: None,
                flannel_drop_in: None,
            }),
            cni_now: None,
            cni_after: CniPaths {
                bin_dir: if rd {
                    node::RANCHER_DESKTOP_CNI_BIN.into()
                } else {
                    "/opt/cni/bin".into()
                },
                conf_dir: "/etc/cni/net.d".into(),
                notes: vec![],
            },
            rancher_desktop: rd,
            flannel_conflists: vec![],
            cilium_conflists: vec![],
            stale_state: vec![],
            pins: vec![],
            links: BTreeMap::new(),
            bpffs,
            systemd: true,
            openrc: false,
            bpffs_persisted: Some("systemd unit".into()),
            kubeconfig: None,
            installed: None,
        }
    }

    #[test]
    fn rancher_desktop_kpr_agent_node() {
        let opts = PlanOptions {
            kube_proxy_replacement: true,
            ..PlanOptions::default()
        };
        let plan = build_install(
            &node(
                true,
                MountState::Mounted {
                    shared: false,
                    count: 1,
                },
            ),
            &opts,
        )
        .unwrap();
        let values = plan.values.clone().unwrap();
        assert_eq!(values["cni"]["binPath"], "/usr/libexec/cni");
        assert_eq!(values["k8sServiceHost"], "192.168.5.1");
        assert_eq!(
            values["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"],
            serde_json::json!(["10.52.0.0/16"])
        );
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert!(ids.contains(&"bpffs.shared"), "{ids:?}");
        // An agent: no server-only keys, no helm, no kubectl; the server goes first.
        assert!(!ids.contains(&"k3s.drop-in"), "{ids:?}");
        assert!(
            !ids.iter().any(|i| i.starts_with("helm.")
                || i.starts_with("wait.")
                || i.starts_with("post.")),
            "{ids:?}"
        );
        assert!(
            plan.notes
                .iter()
                .any(|n| n.contains("Migrate the server(s) first")),
            "{:?}",
            plan.notes
        );
        assert!(
            !ids.contains(&"bpffs.persist"),
            "already persisted: {ids:?}"
        );
        assert!(
            plan.steps
                .iter()
                .any(|s| s.title == "systemctl restart k3s-agent")
        );
        let mut k3s = node(true, MountState::NotMounted).k3s.unwrap();
        k3s.agent = false;
        let drop_in = drop_in_text(&k3s, &opts).unwrap();
        assert!(drop_in.contains("disable-kube-proxy: true"));
        assert!(plan.notes.iter().any(|n| n.contains("Rancher Desktop")));
    }

    #[test]
    fn flannel_goes_before_the_install_and_fixes_the_predicted_init_failure() {
        // A k3s server running flannel, flannel.1 up: the compile stage predicts that datapath
        // init fails on the tunnel port (compile.init); the plan turns flannel off and deletes
        // flannel.1 before Helm installs Cilium, and says those steps fix it.
        let mut n = node(false, MountState::NotMounted);
        if let Some(k) = n.k3s.as_mut() {
            k.agent = false;
            k.unit = "k3s".into();
            k.server = None;
        }
        n.links.insert(
            "flannel.1".into(),
            LinkState::Present(journal::LinkSpec {
                name: "flannel.1".into(),
                kind: Some("vxlan".into()),
                mtu: Some(1450),
                address: None,
                vxlan_id: Some(1),
                vxlan_local: None,
                vxlan_dev: None,
                vxlan_port: Some(8472),
                addresses: vec![],
                up: true,
            }),
        );
        let plan = build_install(&n, &PlanOptions::default()).unwrap();
        let position = |id: &str| plan.steps.iter().position(|s| s.id == id);
        let install = position("helm.install").expect("helm.install");
        for id in ["k3s.drop-in", "links.delete:flannel.1"] {
            let at = position(id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(at < install, "{id} after helm.install");
            assert!(
                plan.steps[at].fixes.iter().any(|f| f == "compile.init"),
                "{id}: {:?}",
                plan.steps[at].fixes
            );
        }
    }

    #[test]
    fn dual_stack_cidrs_go_to_their_own_lists_whatever_the_order() {
        for cidrs in [
            ["10.42.0.0/16", "2001:cafe:42::/56"],
            ["2001:cafe:42::/56", "10.42.0.0/16"],
        ] {
            let mut n = node(false, MountState::NotMounted);
            if let Some(k) = n.k3s.as_mut() {
                k.cluster_cidrs = cidrs.iter().map(|s| s.to_string()).collect();
            }
            let mut notes = Vec::new();
            let v = values_for(&n, &PlanOptions::default(), &mut notes).unwrap();
            let op = &v["ipam"]["operator"];
            assert_eq!(
                op["clusterPoolIPv4PodCIDRList"],
                serde_json::json!(["10.42.0.0/16"])
            );
            assert_eq!(
                op["clusterPoolIPv6PodCIDRList"],
                serde_json::json!(["2001:cafe:42::/56"])
            );
            assert_eq!(v["ipv6"]["enabled"], true);
        }
    }

    #[test]
    fn user_values_stay_node_requirements_win_with_a_note() {
        let n = node(true, MountState::NotMounted);
        let opts = PlanOptions {
            user_values: serde_json::json!({
                "routingMode": "native",
                "hubble": {"relay": {"enabled": true}},
                "cni": {"binPath": "/opt/cni/bin"},
            }),
            values_fix: Some(serde_json::json!({"bpf": {"masquerade": false}})),
            ..PlanOptions::default()
        };
        let mut notes = Vec::new();
        let v = values_for(&n, &opts, &mut notes).unwrap();
        assert_eq!(v["routingMode"], "native", "the user's choice stays");
        assert_eq!(v["hubble"]["relay"]["enabled"], true);
        assert_eq!(v["cni"]["binPath"], "/usr/libexec/cni");
        assert_eq!(
            v["bpf"]["masquerade"], false,
            "the verdict's fix is applied"
        );
        assert!(
            notes.iter().any(|n| n.contains("your cni.binPath")),
            "{notes:?}"
        );
    }

    #[test]
    fn shared_bpffs_needs_no_mount_step_and_duplicates_are_flagged() {
        let plan = build_install(
            &node(
                false,
                MountState::Mounted {
                    shared: true,
                    count: 2,
                },
            ),
            &PlanOptions::default(),
        )
        .unwrap();
        assert!(!plan.steps.iter().any(|s| s.id.starts_with("bpffs.")));
        assert!(plan.notes.iter().any(|n| n.contains("#6966")));
    }
}

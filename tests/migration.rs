//! Migration end to end on a fixture k3s node: plan, install, failures, rollback, fallback.
//!
//! No Kubernetes API, k3s service or helm exists on the development machines, so helm,
//! kubectl, systemctl, ip, mount, sysctl, modprobe and firewall-cmd are scripted stand-ins put
//! first on PATH: each records its argv in a log and succeeds, or fails when told to. They also
//! play the parts of k3s (rewriting containerd's config.toml on restart) and of the Cilium agent
//! (writing its conflist, CNI binary and links on install), so rollback has real work to undo.
mod common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::{
        fs::{MetadataExt, PermissionsExt},
        process::ExitStatusExt,
    },
    path::{Path, PathBuf},
    process::{Command, Output},
};

const BIN: &str = env!("CARGO_BIN_EXE_preflight");
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/nodes/k3s-flannel-plan"
);

/// Every stand-in tool is this one script, which acts by the name it is called as.
const STAND_IN: &str = include_str!("standins/tool.sh");

/// flannel's links as the `ip` stand-in prints them.
const STAND_IN_LINKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/standins/links");

/// The node's iptables as flanneld leaves them (`iptables-save`; the stand-in keeps this file).
const FLANNEL_IPTABLES: &str = include_str!("../fixtures/iptables/k3s-flannel.save");

struct Node {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    standin: PathBuf,
}

const RANCHER_DESKTOP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/nodes/rancher-desktop"
);

/// A fresh copy of the fixture node, with modes git cannot carry, and stand-in tools.
fn node() -> Node {
    let n = node_from(FIXTURE);
    for (p, mode) in [
        ("etc/rancher/k3s/config.yaml", 0o600),
        ("etc/rancher/k3s/k3s.yaml", 0o600),
        (
            "var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist",
            0o640,
        ),
        ("var/run/cilium/state/globals/node_config.h", 0o644),
        ("var/run/cilium/state/templates", 0o700),
    ] {
        fs::set_permissions(n.root.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    n
}

/// A fresh copy of `fixture` with stand-in tools and flannel's links.
/// The Rancher Desktop fixture with its OpenRC k3s service (no systemd in its VM).
fn rancher_desktop_with_openrc() -> Node {
    let n = node_from(RANCHER_DESKTOP);
    fs::create_dir_all(n.root.join("etc/init.d")).unwrap();
    fs::write(
        n.root.join("etc/init.d/k3s"),
        "#!/sbin/openrc-run\ncommand=/usr/local/bin/k3s\n",
    )
    .unwrap();
    n
}

fn node_from(fixture: &str) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture)
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let standin = tmp.path().join("standin");
    let bin = standin.join("bin");
    fs::create_dir_all(standin.join("links")).unwrap();
    common::install_standins(&bin, &common::MIGRATION_TOOLS, STAND_IN);
    fs::write(standin.join("iptables"), FLANNEL_IPTABLES).unwrap();
    // flannel's links exist on this "node" (`ip -j link show` output, kept by the stand-in).
    for link in ["flannel.1", "cni0"] {
        fs::copy(
            Path::new(STAND_IN_LINKS).join(link),
            standin.join("links").join(link),
        )
        .unwrap();
    }
    Node {
        _tmp: tmp,
        root,
        standin,
    }
}

impl Node {
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.standin.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--root")
            .arg(&self.root)
            .env("PATH", path)
            .env("STANDIN_DIR", &self.standin)
            .env("STANDIN_ROOT", &self.root)
            .env_remove("PREFLIGHT_FAULT_AT")
            .env_remove("PREFLIGHT_KILL_AT")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    fn argv_log(&self) -> String {
        fs::read_to_string(self.standin.join("argv.log")).unwrap_or_default()
    }
    fn link_exists(&self, name: &str) -> bool {
        self.standin.join("links").join(name).exists()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?} signal {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        o.status.signal(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `root`: type, mode, owner, and content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ids = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, format!("dir {ids}"));
                walk(root, &p, out);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.insert(
                    rel,
                    format!("file {ids} {}", String::from_utf8_lossy(&bytes)),
                );
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn assert_same(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, ctx: &str) {
    if before != after {
        let mut diff = String::new();
        for (k, v) in before {
            match after.get(k) {
                None => diff.push_str(&format!("  missing: {k}\n")),
                Some(w) if w != v => {
                    diff.push_str(&format!("  changed: {k}\n    was {v:?}\n    now {w:?}\n"))
                }
                _ => {}
            }
        }
        for k in after.keys().filter(|k| !before.contains_key(*k)) {
            diff.push_str(&format!("  extra: {k} = {:?}\n", after[k]));
        }
        panic!("{ctx}: tree differs from before:\n{diff}");
    }
}

/// The version is pinned so the expected command lines do not follow the default target.
fn install_args() -> Vec<&'static str> {
    vec!["install", "--yes", "--cilium-version", "1.18.4"]
}

/// How many fault points a hooked run passes (the size of the matrix).
fn fault_points(o: &Output) -> u32 {
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find_map(|l| {
            l.strip_prefix("preflight: test hook: ")?
                .strip_suffix(" fault points passed")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no fault point count:\n{}", text(o)))
}

#[test]
fn plan_for_the_fixture_node_is_what_an_expert_would_do() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&["plan", "--cilium-version", "1.18.4"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // The steps, in the order a careful operator would take them.
    let order = [
        "Write /etc/systemd/system/sys-fs-bpf.mount",
        "systemctl daemon-reload",
        "Mount bpffs at /sys/fs/bpf",
        "Write k3s drop-in /etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml",
        "Move aside /var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist",
        "Move aside stale Cilium state /var/run/cilium/state/globals/node_config.h",
        "Move aside stale Cilium state /var/run/cilium/state/templates",
        "Move aside old pin /sys/fs/bpf/tc/globals/cilium_calls_overlay_2",
        "systemctl restart k3s",
        "Check containerd's CNI dirs after the restart",
        "ip link del cni0  [todo]",
        "ip link del flannel.1  [todo]",
        "Write Helm values /var/lib/preflight/cilium-values.yaml",
        "helm upgrade --install cilium (Cilium 1.18.4)",
        "Wait for daemonset/cilium",
        "Wait for deployment/coredns",
        "Agent reports healthy",
    ];
    let mut at = 0;
    for step in order {
        let found = out[at..]
            .find(step)
            .unwrap_or_else(|| panic!("{step:?} missing or out of order:\n{out}"));
        at += found + step.len();
    }
    for must in [
        "| flannel-backend: none",
        "| disable-network-policy: true",
        "|   binPath: /opt/cni/bin",
        "|   confPath: /etc/cni/net.d",
        "|     - 10.42.0.0/16",
        "--repo https://helm.cilium.io/ --version 1.18.4 --namespace kube-system --values ",
        "rollout status daemonset/cilium --timeout=300s",
        "cilium-dbg status --brief",
    ] {
        assert!(out.contains(must), "{must:?} missing:\n{out}");
    }
    // Without kube-proxy replacement kube-proxy stays; the user's config.yaml is never a target.
    assert!(!out.contains("disable-kube-proxy"), "{out}");
    assert!(
        !out.contains("Write /etc/rancher/k3s/config.yaml "),
        "{out}"
    );
    // Printing a plan changes nothing and runs only read-only queries.
    assert_same(&before, &snapshot(&n.root), "after plan");
    for line in n.argv_log().lines() {
        assert!(
            line.starts_with("ip -d -j addr show dev "),
            "plan ran {line:?}"
        );
    }
}

#[test]
fn kube_proxy_replacement_adds_the_k3s_flag_and_api_server_values() {
    let n = node();
    let o = n.run(&["plan", "--kube-proxy-replacement"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--k8s-service-host"),
        "{}",
        text(&o)
    );
    let o = n.run(
        &[
            "plan",
            "--kube-proxy-replacement",
            "--k8s-service-host",
            "192.168.1.10",
        ],
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("| disable-kube-proxy: true"), "{out}");
    assert!(out.contains("| kubeProxyReplacement: true"), "{out}");
    assert!(out.contains("| k8sServiceHost: 192.168.1.10"), "{out}");
}

#[test]
fn emit_gitops_writes_values_and_an_argo_cd_application() {
    let n = node();
    let dir = n.standin.join("gitops");
    let o = n.run(
        &[
            "plan",
            "--emit-gitops",
            dir.to_str().unwrap(),
            "--cilium-version",
            "1.17.6",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let app: preflight::plan::gitops::Application =
        serde_norway::from_str(&fs::read_to_string(dir.join("cilium-application.yaml")).unwrap())
            .unwrap();
    assert_eq!(app.api_version, "argoproj.io/v1alpha1");
    assert_eq!(app.kind, "Application");
    assert_eq!(app.spec.source.target_revision, "1.17.6");
    assert_eq!(app.spec.destination.namespace, "kube-system");
    let values: serde_json::Value =
        serde_norway::from_str(&fs::read_to_string(dir.join("cilium-values.yaml")).unwrap())
            .unwrap();
    assert_eq!(values, app.spec.source.helm.values_object);
    assert_eq!(
        values["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"],
        serde_json::json!(["10.42.0.0/16"])
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("helm upgrade"),
        "the GitOps plan has no Helm step:\n{out}"
    );
    assert!(out.contains("Argo CD Application"), "{out}");
}

#[test]
fn install_then_rollback_restores_the_node_byte_for_byte() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let root = &n.root;
    let drop_in =
        fs::read_to_string(root.join("etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml"))
            .unwrap();
    assert!(drop_in.contains("flannel-backend: none"));
    assert!(
        !root
            .join("var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist")
            .exists()
    );
    assert!(root.join("var/lib/preflight/journal/journal.json").exists());
    assert!(!n.link_exists("flannel.1") && !n.link_exists("cni0"));
    let log = n.argv_log();
    for cmd in [
        "systemctl enable --now sys-fs-bpf.mount",
        "systemctl restart k3s",
        "ip link del flannel.1",
        "ip link del cni0",
        "helm upgrade --install cilium cilium --repo https://helm.cilium.io/ --version 1.18.4",
        "kubectl --kubeconfig",
        "rollout status daemonset/cilium",
        "rollout status deployment/coredns",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    assert!(
        log.find("systemctl restart k3s").unwrap() < log.find("ip link del flannel.1").unwrap()
    );
    // flannel's chains: saved, the jumps deleted by their spec, then flushed and deleted.
    for cmd in [
        "\niptables-save\n",
        "\niptables -t nat -D POSTROUTING -m comment --comment flanneld masq -j FLANNEL-POSTRTG\n",
        "\niptables -t filter -D FORWARD -m comment --comment flanneld forward -j FLANNEL-FWD\n",
        "\niptables -t nat -F FLANNEL-POSTRTG\n",
        "\niptables -t filter -X FLANNEL-FWD\n",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    assert!(
        !fs::read_to_string(n.standin.join("iptables"))
            .unwrap()
            .contains("FLANNEL"),
        "flannel's chains removed"
    );

    // Idempotent: a second run changes nothing on the node (only the journal notes the run),
    // and issues no mutating helm or kubectl command: the release is at the revision the first
    // run made with the same chart and values, CoreDNS was restarted already.
    let after_install = snapshot(&n.root);
    let log_before = n.argv_log();
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let second = n.argv_log()[log_before.len()..].to_string();
    for line in second.lines() {
        let mutating = (line.starts_with("helm ")
            && ["upgrade", "install", "uninstall", "rollback"]
                .iter()
                .any(|v| line.split(' ').nth(1) == Some(v)))
            || (line.starts_with("kubectl ")
                && (line.contains(" rollout restart ")
                    || line.contains(" delete ")
                    || line.contains(" apply ")));
        assert!(!mutating, "second install ran {line:?}:\n{second}");
    }
    assert!(second.contains("helm status cilium"), "{second}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already done (release kube-system/cilium is at the revision an earlier install made with Cilium 1.18.4 and these values)"),
        "{out}"
    );
    assert!(
        out.contains("Restart CoreDNS onto Cilium (up to 900 s) …\n      already done (restarted by an earlier install)"),
        "{out}"
    );
    // The header the agent wrote is the running agent's, not a leftover to move aside.
    assert!(
        out.contains("Move aside stale Cilium state /var/run/cilium/state/globals/node_config.h …\n      already done (the agent preflight installed wrote it"),
        "{out}"
    );
    let strip = |s: BTreeMap<String, String>| -> BTreeMap<String, String> {
        s.into_iter()
            .filter(|(k, _)| !k.starts_with("var/lib/preflight/journal"))
            .collect()
    };
    assert_same(
        &strip(after_install),
        &strip(snapshot(&n.root)),
        "after a second install",
    );

    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same(&before, &snapshot(&n.root), "after rollback");
    assert!(
        n.link_exists("flannel.1") && n.link_exists("cni0"),
        "flannel links recreated"
    );
    assert!(!n.link_exists("cilium_host"), "Cilium's link removed");
    assert_eq!(
        fs::read_to_string(n.standin.join("iptables")).unwrap(),
        FLANNEL_IPTABLES,
        "iptables as saved"
    );
    let log = n.argv_log();
    assert!(log.contains("\niptables-restore "), "{log}");
    assert!(
        log.contains("helm uninstall cilium -n kube-system --wait"),
        "{log}"
    );
    assert!(
        log.contains("ip link add flannel.1 address aa:bb:cc:00:11:22 mtu 1450 type vxlan id 1 local 192.168.1.10 dev eth0 dstport 8472 nolearning"),
        "{log}"
    );
    assert!(
        log.contains("systemctl disable --now sys-fs-bpf.mount"),
        "{log}"
    );
    // Idempotent rollback.
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Nothing to roll back"));
    assert_same(&before, &snapshot(&n.root), "after a second rollback");
}

/// The re-run skip is for the same request only: other values upgrade the release again, and
/// rollback still undoes both runs.
#[test]
fn a_rerun_with_other_values_upgrades_the_release() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut args = install_args();
    args.extend(["--set", "hubble.relay.enabled=true"]);
    let o = n.run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert_eq!(
        log.matches("helm upgrade --install cilium").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches(" rollout restart ").count(), 1, "{log}");
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        n.argv_log()
            .contains("helm rollback cilium 1 -n kube-system --wait")
    );
    assert_same(&before, &snapshot(&n.root), "after rollback of both runs");
}

/// No iptables-save on the node: the flannel-chains step says what to do by hand and changes
/// nothing; it does not refuse the install (the rest of the migration does not need iptables).
#[test]
fn without_iptables_save_the_chains_step_is_skipped_with_advice() {
    let n = node();
    let o = n.run(
        &install_args(),
        &[("PREFLIGHT_IPTABLES_SAVE", "/nonexistent/iptables-save")],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("already done (not checked: ") && out.contains("remove them by hand"),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(n.standin.join("iptables")).unwrap(),
        FLANNEL_IPTABLES
    );
    assert!(!n.argv_log().contains("iptables"), "{}", n.argv_log());
}

#[test]
fn late_failure_rolls_back_automatically_with_the_agent_log_as_evidence() {
    let n = node();
    let before = snapshot(&n.root);
    let log = "level=error msg=\"Failed to compile bpf_lxc.o\"\n\
               /var/lib/cilium/bpf/node_config.h:42:9: error: 'CALLS_MAP' macro redefined [-Werror,-Wmacro-redefined]\n\
               level=info msg=unrelated";
    let o = n.run(
        &install_args(),
        &[
            ("STANDIN_FAIL", "rollout status daemonset/cilium"),
            ("STANDIN_AGENT_LOG", log),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("INSTALL FAILED at step"), "{out}");
    assert!(
        out.contains(
            "agent log: /var/lib/cilium/bpf/node_config.h:42:9: error: 'CALLS_MAP' macro redefined"
        ),
        "{out}"
    );
    assert!(!out.contains("msg=unrelated"), "{out}");
    assert!(out.contains("Rollback complete"), "{out}");
    assert_same(&before, &snapshot(&n.root), "after automatic rollback");
    assert!(n.argv_log().contains("helm uninstall cilium"));
}

#[test]
fn a_post_check_failure_also_rolls_back() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[("STANDIN_FAIL", "nslookup")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("post.dns"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&n.root), "after automatic rollback");
}

#[test]
fn fail_at_every_fault_point_leaves_the_node_as_it_was() {
    let probe = node();
    let o = probe.run(&install_args(), &[("PREFLIGHT_FAULT_AT", "1000000")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let total = fault_points(&o);
    assert!(total > 40, "only {total} fault points");
    for k in 1..=total {
        let n = node();
        let before = snapshot(&n.root);
        let o = n.run(&install_args(), &[("PREFLIGHT_FAULT_AT", &k.to_string())]);
        // 1: failed and rolled back; 2: failed while opening the journal, before any change.
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "fault at {k}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("injected fault"),
            "fault at {k}: {}",
            text(&o)
        );
        assert_same(&before, &snapshot(&n.root), &format!("fault at {k}"));
        assert_eq!(
            fs::read_to_string(n.standin.join("iptables")).unwrap(),
            FLANNEL_IPTABLES,
            "iptables after fault at {k}"
        );
    }
    eprintln!("fail-at matrix: {total} fault points, all rolled back exactly");
}

#[test]
fn sigkill_at_every_fault_point_then_rollback_restores_the_node() {
    let mut k = 1;
    loop {
        let n = node();
        let before = snapshot(&n.root);
        let o = n.run(&install_args(), &[("PREFLIGHT_KILL_AT", &k.to_string())]);
        if o.status.signal().is_none() {
            assert_eq!(
                o.status.code(),
                Some(0),
                "kill at {k} past the end: {}",
                text(&o)
            );
            assert!(k > 40, "only {k} kill points");
            break;
        }
        assert_eq!(o.status.signal(), Some(9), "kill at {k}: {}", text(&o));
        let r = n.run(&["rollback"], &[]);
        assert_eq!(
            r.status.code(),
            Some(0),
            "rollback after kill at {k}: {}",
            text(&r)
        );
        assert_same(
            &before,
            &snapshot(&n.root),
            &format!("rollback after SIGKILL at {k}"),
        );
        assert_eq!(
            fs::read_to_string(n.standin.join("iptables")).unwrap(),
            FLANNEL_IPTABLES,
            "iptables after rollback of SIGKILL at {k}"
        );
        k += 1;
    }
    eprintln!(
        "kill matrix: {} kill points, all rolled back exactly",
        k - 1
    );
}

#[test]
fn sigkill_inside_rollback_then_rollback_again_finishes() {
    let mut k = 1;
    loop {
        let n = node();
        let before = snapshot(&n.root);
        let o = n.run(&install_args(), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let r = n.run(&["rollback"], &[("PREFLIGHT_KILL_AT", &k.to_string())]);
        if r.status.signal().is_none() {
            assert_eq!(r.status.code(), Some(0), "{}", text(&r));
            assert_same(&before, &snapshot(&n.root), "unkilled rollback");
            break;
        }
        let r = n.run(&["rollback"], &[]);
        assert_eq!(
            r.status.code(),
            Some(0),
            "second rollback after kill at {k}: {}",
            text(&r)
        );
        assert_same(
            &before,
            &snapshot(&n.root),
            &format!("rollback killed at {k}, re-run"),
        );
        k += 1;
    }
    assert!(k > 10, "only {k} kill points in rollback");
}

#[test]
fn bad_plans_leave_the_node_as_it_was() {
    // A file where the drop-in directory must go: the step fails, everything before is undone.
    let n = node();
    fs::write(
        n.root.join("etc/rancher/k3s/config.yaml.d"),
        "not a directory\n",
    )
    .unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("k3s.drop-in"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&n.root), "file in place of a directory");

    // A missing CNI dir: nothing to move, the rest still runs and rolls back exactly.
    let n = node();
    fs::remove_dir_all(n.root.join("var/lib/rancher/k3s/agent/etc/cni")).unwrap();
    let before = snapshot(&n.root);
    let o = n.run(
        &install_args(),
        &[("STANDIN_FAIL", "rollout status deployment/coredns")],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_same(&before, &snapshot(&n.root), "missing CNI dir");

    // A broken k3s config: exit 2 naming the file and line; nothing written.
    let n = node();
    fs::write(
        n.root.join("etc/rancher/k3s/config.yaml"),
        "node-name: a\ncluster-cidr: [unclosed\n",
    )
    .unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("config.yaml:"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&n.root), "broken config");

    // A failing helm: rolled back before anything Kubernetes-side happened.
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[("STANDIN_FAIL", "helm upgrade")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_same(&before, &snapshot(&n.root), "failing helm");
}

#[test]
fn install_without_a_terminal_needs_yes() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&["install", "--cilium-version", "1.18.4"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--yes"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&n.root), "unconfirmed install");
}

#[test]
fn fallback_flannel_undoes_cilium_and_hardens_then_rolls_back() {
    let n = node();
    fs::create_dir_all(n.root.join("etc/NetworkManager/conf.d")).unwrap();
    fs::create_dir_all(n.root.join("etc/firewalld")).unwrap();
    fs::create_dir_all(n.root.join("proc/sys/net/ipv4")).unwrap();
    fs::write(n.root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
    let before = snapshot(&n.root);
    assert_eq!(n.run(&install_args(), &[]).status.code(), Some(0));
    let o = n.run(&["fallback", "flannel", "--yes"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Rolling back the Cilium install first"),
        "{out}"
    );
    assert!(out.contains("EnableNFTables"), "{out}");
    assert!(out.contains("iptables backend"), "{out}");
    let r = &n.root;
    assert!(
        r.join("var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist")
            .exists()
    );
    assert!(
        !r.join("etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml")
            .exists()
    );
    let modules =
        fs::read_to_string(r.join("etc/modules-load.d/90-preflight-flannel.conf")).unwrap();
    for m in ["br_netfilter", "overlay", "nf_conntrack", "vxlan"] {
        assert!(modules.contains(m), "{modules}");
    }
    let nm =
        fs::read_to_string(r.join("etc/NetworkManager/conf.d/90-preflight-flannel.conf")).unwrap();
    assert!(nm.contains(
        "unmanaged-devices=interface-name:cni*;interface-name:flannel*;interface-name:veth*"
    ));
    assert!(
        fs::read_to_string(r.join("etc/sysctl.d/90-preflight-flannel.conf"))
            .unwrap()
            .contains("net.ipv4.ip_forward = 1")
    );
    let log = n.argv_log();
    for cmd in [
        "modprobe br_netfilter",
        "sysctl -w net.ipv4.ip_forward=1",
        "firewall-cmd --permanent --add-port=8472/udp",
        "firewall-cmd --permanent --zone=trusted --add-source=10.42.0.0/16",
        "systemctl reload NetworkManager",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    // The hardening is journaled too.
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same(
        &before,
        &snapshot(&n.root),
        "after rolling back the fallback",
    );
    let log = n.argv_log();
    assert!(log.contains("sysctl -w net.ipv4.ip_forward=0"), "{log}");
    assert!(
        log.contains("firewall-cmd --permanent --remove-port=8472/udp"),
        "{log}"
    );
}

/// Disk full: the node root sits on a tiny tmpfs that is filled up. The install fails at
/// whichever write hits ENOSPC; once space is freed, rollback leaves the tree as it was. Runs in
/// a private mount namespace (`unshare -m`), so the tmpfs vanishes even if the test is killed.
#[test]
#[cfg_attr(
    not(prereq = "root"),
    ignore = "needs root to mount a tmpfs in a private mount namespace"
)]
fn disk_full_fails_cleanly_and_rollback_restores_after_space_is_freed() {
    let n = node();
    let script = include_str!("scripts/disk-full.sh");
    let work = n.standin.join("diskfull");
    fs::create_dir_all(&work).unwrap();
    let path = format!(
        "{}:{}",
        n.standin.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "bash",
        ])
        .arg(work.join("mnt"))
        .arg(&n.root)
        .arg(BIN)
        // The stand-ins only for preflight: the script itself needs the real mount.
        .env("STANDIN_PATH", path)
        .env("STANDIN_DIR", &n.standin)
        .env("STANDIN_ROOT", work.join("mnt/root"))
        .output()
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(90),
        "root, yet no tmpfs mount\n{}",
        text(&o)
    );
    let read = |f: &str| fs::read_to_string(work.join(f)).unwrap_or_default();
    let install = read("install.txt");
    assert!(
        install.contains("No space left on device"),
        "install did not hit ENOSPC:\n{install}\n{}",
        text(&o)
    );
    assert!(!install.contains("install exit 0"), "{install}");
    let rollback = read("rollback.txt");
    assert!(rollback.contains("rollback exit 0"), "{rollback}");
    assert_eq!(
        read("before.txt"),
        read("after.txt"),
        "tree differs after disk full + rollback\n{install}\n{rollback}"
    );
}

/// Files preflight wrote (the drop-in, the values file) or that k3s and the agent wrote under
/// its guard (Cilium's conflist) and that somebody edited after the install: rollback restores
/// the node but keeps each edited version under /var/lib/preflight/edited/<time>/ and says so.
#[test]
fn rollback_keeps_files_edited_after_the_install() {
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let edits = [
        (
            "etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml",
            "node-label: [edited=by-hand]\n",
        ),
        (
            "var/lib/preflight/cilium-values.yaml",
            "hubble:\n  enabled: true\n",
        ),
        ("etc/cni/net.d/05-cilium.conflist", "{\"edited\": true}\n"),
    ];
    let mut edited = BTreeMap::new();
    for (rel, extra) in edits {
        let p = n.root.join(rel);
        let mut s = fs::read_to_string(&p).unwrap();
        s.push_str(extra);
        fs::write(&p, &s).unwrap();
        edited.insert(rel, s);
    }
    // One file left as preflight wrote it: no copy for it.
    let untouched = "etc/systemd/system/sys-fs-bpf.mount";
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for rel in edited.keys() {
        assert!(
            out.contains(&format!(
                "WARNING: /{rel} was edited after preflight wrote it: your version is kept as /var/lib/preflight/edited/"
            )),
            "{rel}:\n{out}"
        );
    }
    assert!(!out.contains(&format!("WARNING: /{untouched}")), "{out}");
    // Each edited version is kept byte for byte; everything else is as before the install.
    let after = snapshot(&n.root);
    let mut kept = BTreeMap::new();
    let mut rest = BTreeMap::new();
    for (k, v) in after {
        match k.strip_prefix("var/lib/preflight/edited/") {
            Some(tail) => {
                if let Some((_, rel)) = tail.split_once('/')
                    && v.starts_with("file ")
                {
                    kept.insert(rel.to_string(), v);
                }
            }
            None if k == "var/lib/preflight" || k == "var/lib/preflight/edited" => {}
            None => {
                rest.insert(k, v);
            }
        }
    }
    assert_same(&before, &rest, "after rollback, edited copies aside");
    assert_eq!(kept.len(), edited.len(), "{kept:?}");
    for (rel, content) in &edited {
        let v = &kept[*rel];
        assert!(v.ends_with(content.as_str()), "{rel}: {v}");
    }
}

/// Rancher Desktop: OpenRC, no systemd, and `flannel-backend: none` in config.yaml itself (not
/// in a drop-in of ours), with Cilium installed by hand. The fallback must remove the Cilium
/// release and its conflist, turn flannel on with a drop-in, and restart k3s with rc-service;
/// rollback undoes each of these.
#[test]
fn fallback_on_rancher_desktop_turns_flannel_on_and_removes_cilium() {
    let n = rancher_desktop_with_openrc();
    let conflist =
        "{\"cniVersion\":\"0.3.1\",\"name\":\"cilium\",\"plugins\":[{\"type\":\"cilium-cni\"}]}\n";
    fs::write(n.root.join("etc/cni/net.d/05-cilium.conflist"), conflist).unwrap();
    fs::write(n.standin.join("release-cilium"), "").unwrap();
    let before = snapshot(&n.root);
    let config = fs::read(n.root.join("etc/rancher/k3s/config.yaml")).unwrap();

    let o = n.run(&["fallback", "flannel", "--yes"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let drop_in = fs::read_to_string(
        n.root
            .join("etc/rancher/k3s/config.yaml.d/89-preflight-flannel.yaml"),
    )
    .unwrap();
    assert!(drop_in.contains("\nflannel-backend: vxlan\n"), "{drop_in}");
    assert_eq!(
        fs::read(n.root.join("etc/rancher/k3s/config.yaml")).unwrap(),
        config,
        "config.yaml is never rewritten"
    );
    assert!(!n.root.join("etc/cni/net.d/05-cilium.conflist").exists());
    assert!(
        !n.standin.join("release-cilium").exists(),
        "release removed"
    );
    let log = n.argv_log();
    for cmd in [
        "helm status cilium -n kube-system -o json",
        "helm get values cilium -n kube-system -o yaml",
        "helm uninstall cilium -n kube-system --wait",
        "rc-service k3s restart",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    assert!(
        !log.contains("systemctl restart"),
        "no systemd here:\n{log}"
    );
    assert!(
        log.find("helm uninstall").unwrap() < log.find("rc-service k3s restart").unwrap(),
        "{log}"
    );

    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert!(
        log.contains("helm upgrade --install cilium cilium --repo https://helm.cilium.io/ --namespace kube-system --values "),
        "{log}"
    );
    assert_eq!(log.matches("rc-service k3s restart").count(), 2, "{log}");
    // The stand-in helm plays the agent on reinstall (CNI binary, state dir): leave those out.
    let after: BTreeMap<_, _> = snapshot(&n.root)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("opt") && !k.starts_with("var/run"))
        .collect();
    assert_same(&before, &after, "after rolling back the fallback");
}

/// Rancher Desktop's bpffs is mounted private (the fixture's `proc/1/mountinfo`, the table the
/// `mounts.*` checks read): the plan reads the same table, so it has a make-shared step, the
/// install counts mounts.bpffs as fixed by it and runs it; rollback makes the mount private.
#[test]
fn install_on_rancher_desktop_makes_bpffs_shared() {
    let n = rancher_desktop_with_openrc();
    let o = n.run(&["plan", "--cilium-version", "1.18.4"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Make /sys/fs/bpf a shared mount  [todo]"),
        "{out}"
    );
    assert!(!out.contains("could not tell whether bpffs"), "{out}");

    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("(bpffs.shared): mounts.bpffs"), "{out}");
    assert!(!out.contains("blocking: mounts.bpffs"), "{out}");
    let log = n.argv_log();
    assert!(log.contains("\nmount --make-shared /sys/fs/bpf\n"), "{log}");

    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        n.argv_log()
            .contains("\nmount --make-private /sys/fs/bpf\n"),
        "{}",
        n.argv_log()
    );
}

/// Rancher Desktop's config.yaml already turns flannel and its network policy off: the plan
/// writes no drop-in and does not restart k3s for that; the restart it shows is OpenRC's.
#[test]
fn plan_on_openrc_with_flannel_already_off_needs_no_drop_in() {
    let n = rancher_desktop_with_openrc();
    let o = n.run(&["plan", "--cilium-version", "1.18.4"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("Write k3s drop-in"), "{out}");
    assert!(
        out.contains("your config already sets flannel-backend: none"),
        "{out}"
    );
    assert!(
        out.contains("rc-service k3s restart  [done: k3s config unchanged]"),
        "{out}"
    );
    assert!(!out.contains("systemctl restart"), "{out}");
    assert!(out.contains("|   binPath: /usr/libexec/cni"), "{out}");
}

const HOMELAB_VALUES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/values/homelab.yaml"
);

/// `plan` and `install` take `run`'s target flags: the user's values (-f, --set) go into the
/// values file with what the node needs and the verdict's value fixes; helm gets that file.
#[test]
fn plan_and_install_take_the_users_values() {
    let n = node();
    let dir = n.standin.join("gitops");
    let o = n.run(
        &[
            "plan",
            "-f",
            HOMELAB_VALUES,
            "--set",
            "hubble.relay.replicas=2",
            "--emit-gitops",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let values: serde_json::Value =
        serde_norway::from_str(&fs::read_to_string(dir.join("cilium-values.yaml")).unwrap())
            .unwrap();
    // The user's keys, as given.
    assert_eq!(
        values["hubble"]["ui"]["ingress"]["hosts"],
        serde_json::json!(["hubble.home.lan"])
    );
    assert_eq!(values["hubble"]["relay"]["replicas"], 2);
    assert_eq!(values["prometheus"]["serviceMonitor"]["enabled"], true);
    // The node's requirements.
    assert_eq!(values["cni"]["binPath"], "/opt/cni/bin");
    // The verdict's fixes for values the 1.18 chart rejects (docs/upstream.md#rejected-values).
    assert_eq!(values["kubeProxyReplacement"], false);
    assert!(values["tunnel"].is_null(), "{values}");
    // `tunnel: disabled` meant native routing: the fix says so, and never pairs
    // autoDirectNodeRoutes with a tunnel (the agent exits on that).
    assert_eq!(values["routingMode"], "native", "{values}");
    assert_eq!(values["autoDirectNodeRoutes"], true, "{values}");
    assert_eq!(values["ipv4NativeRoutingCIDR"], "10.42.0.0/16", "{values}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Value fixes from the preflight, written into the values file"),
        "{out}"
    );
    assert!(out.contains("values.chart-rules"), "{out}");

    // install: the same values reach the file helm is given.
    let o = n.run(
        &[
            "install",
            "--yes",
            "--cilium-version",
            "1.18.4",
            "--set",
            "hubble.relay.enabled=true",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let written = fs::read_to_string(n.root.join("var/lib/preflight/cilium-values.yaml")).unwrap();
    assert!(
        written.contains("hubble:\n  relay:\n    enabled: true\n"),
        "{written}"
    );
    assert!(
        n.argv_log().contains(&format!(
            "--values {}/var/lib/preflight/cilium-values.yaml",
            n.root.display()
        )),
        "{}",
        n.argv_log()
    );
}

/// `--chart DIR`: the chart the values were validated against is the one helm installs, by
/// its absolute path (no --repo, no --version: helm ignores --version for a local chart).
#[test]
fn install_with_chart_dir_installs_that_chart() {
    let n = node();
    let chart = fs::canonicalize(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/charts/mini-cilium"
    ))
    .unwrap();
    let o = n.run(
        &["install", "--yes", "--chart", chart.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    let want = format!(
        "\nhelm upgrade --install cilium {} --namespace kube-system --values {}/var/lib/preflight/cilium-values.yaml --kubeconfig ",
        chart.display(),
        n.root.display()
    );
    assert!(log.contains(&want), "{want:?} not run:\n{log}");
    assert!(!log.contains("--repo"), "{log}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("helm upgrade --install cilium (Cilium 1.16.4)"),
        "{out}"
    );
}

/// A values file that does not parse: exit 2 naming the file and line, nothing changed.
#[test]
fn a_values_error_exits_2_with_file_and_line() {
    let n = node();
    let bad = n.standin.join("bad-values.yaml");
    fs::write(&bad, "hubble:\n  relay: [unclosed\n").unwrap();
    let before = snapshot(&n.root);
    for cmd in [&["plan"][..], &["install", "--yes"][..]] {
        let mut args = cmd.to_vec();
        args.extend(["-f", bad.to_str().unwrap()]);
        let o = n.run(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("bad-values.yaml:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_same(&before, &snapshot(&n.root), "after a values error");
    assert_eq!(n.argv_log(), "", "nothing was run");
}

/// Every tool the plan runs is resolved and helm/kubectl must answer before step 1: a missing
/// helm is found before k3s restarts or flannel.1 is deleted, not half way through.
#[test]
fn missing_or_unreachable_tools_stop_install_before_any_change() {
    let n = node();
    fs::remove_file(n.standin.join("bin/helm")).unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[("PREFLIGHT_HELM", "/nonexistent/helm")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/nonexistent/helm is not an executable file"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_same(&before, &snapshot(&n.root), "helm missing");
    assert!(!n.root.join("var/lib/preflight").exists());
    let log = n.argv_log();
    assert!(
        !log.contains("systemctl") && !log.contains("link del"),
        "{log}"
    );

    // kubectl is there but the API server does not answer.
    let n = node();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[("STANDIN_FAIL", "k3s.yaml version")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("version exited with status 1"), "{err}");
    assert_same(&before, &snapshot(&n.root), "API unreachable");
    assert!(!n.argv_log().contains("systemctl restart"));
}

/// Each step is announced before it starts (with the time limit for commands), its result
/// after; a failed command says "exited with status N".
#[test]
fn install_reports_each_step_before_it_runs() {
    let n = node();
    let o = n.run(&install_args(), &[("STANDIN_FAIL", "nslookup")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Wait for daemonset/cilium (up to 900 s) …\n      ok\n"),
        "{out}"
    );
    assert!(
        out.contains("Write Helm values /var/lib/preflight/cilium-values.yaml …\n      ok\n"),
        "{out}"
    );
    assert!(
        out.contains("nslookup kubernetes.default.svc.cluster.local exited with status 1"),
        "{out}"
    );
    assert!(!out.contains("Some("), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("preflight: checking this node for Cilium 1.18.4"),
        "{}",
        text(&o)
    );
}

/// Pods keep flannel's IPs until recreated: CoreDNS is restarted always (and again after a
/// rollback); the rest only with --restart-pods, which deletes pods that have a controller and
/// lists the bare ones.
#[test]
fn coredns_is_restarted_onto_cilium_and_other_pods_on_request() {
    let n = node();
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--restart-pods"), "the note offers it:\n{out}");
    let log = n.argv_log();
    let restart = "-n kube-system rollout restart deployment/coredns";
    assert!(log.contains(restart), "{log}");
    assert!(
        log.find(restart).unwrap() < log.find("rollout status deployment/coredns").unwrap(),
        "{log}"
    );
    assert!(!log.contains("delete pod"), "{log}");
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert_eq!(
        log.matches(restart).count(),
        2,
        "restarted again on rollback:\n{log}"
    );
    assert!(
        log.rfind(restart).unwrap() > log.rfind("systemctl restart k3s").unwrap(),
        "after k3s is back:\n{log}"
    );

    let n = node();
    let mut args = install_args();
    args.push("--restart-pods");
    let o = n.run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert!(
        log.contains("-n default delete pod web-0 --wait=false"),
        "{log}"
    );
    assert!(
        !log.contains("delete pod cilium-x7k2p"),
        "hostNetwork pods stay:\n{log}"
    );
    assert!(
        !log.contains("delete pod scratch"),
        "bare pods stay:\n{log}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("recreate them yourself): default/scratch"),
        "{}",
        text(&o)
    );
}

/// An agent node: no server-only keys in a drop-in, no helm, no kubectl; the plan says the
/// server goes first and the DaemonSet reaches every node.
#[test]
fn agent_nodes_get_no_helm_and_no_server_keys() {
    let n = node();
    fs::rename(
        n.root.join("etc/systemd/system/k3s.service"),
        n.root.join("etc/systemd/system/k3s-agent.service"),
    )
    .unwrap();
    fs::write(
        n.root.join("etc/rancher/k3s/config.yaml"),
        "server: https://192.168.1.10:6443\ntoken: secret\n",
    )
    .unwrap();
    fs::remove_file(n.root.join("etc/rancher/k3s/k3s.yaml")).unwrap();
    let o = n.run(&["plan", "--cilium-version", "1.18.4"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("Write k3s drop-in"), "{out}");
    assert!(!out.contains("helm upgrade"), "{out}");
    assert!(!out.contains("rollout status"), "{out}");
    assert!(out.contains("systemctl restart k3s-agent  [todo]"), "{out}");
    assert!(out.contains("Migrate the server(s) first"), "{out}");
    assert!(
        out.contains("the Cilium DaemonSet then lands on every node"),
        "{out}"
    );
    // Before the server is migrated, the restarted agent keeps flannel's CNI dirs: the
    // install stops there and rolls back.
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("INSTALL FAILED at step 10 (k3s.cni-paths)"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&n.root), "agent before its server");
    // After the server: the install runs neither helm nor kubectl, so neither has to exist.
    fs::remove_file(n.standin.join("bin/helm")).unwrap();
    fs::write(n.standin.join("argv.log"), "").unwrap();
    let o = n.run(
        &install_args(),
        &[
            ("PREFLIGHT_HELM", "/nonexistent/helm"),
            ("PREFLIGHT_KUBECTL", "/nonexistent/kubectl"),
            ("STANDIN_SERVER_MIGRATED", "1"),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert!(log.contains("systemctl restart k3s-agent"), "{log}");
    assert!(!log.contains("helm") && !log.contains("kubectl"), "{log}");
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same(&before, &snapshot(&n.root), "agent install rolled back");
}

/// Rolling back a fallback on a node whose k3s runs: modules in use stay loaded, forwarding
/// stays on; the rollback completes and says what it left.
#[test]
fn fallback_rollback_leaves_busy_modules_and_forwarding_and_completes() {
    let n = node();
    fs::create_dir_all(n.root.join("proc/sys/net/ipv4")).unwrap();
    fs::write(n.root.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&["fallback", "flannel", "--yes"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // What the kernel says now: vxlan in use by flannel.1, br_netfilter idle; the other two
    // are not listed (not loaded).
    fs::write(
        n.root.join("proc/modules"),
        "vxlan 155648 1 - Live 0x0000000000000000\nbr_netfilter 32768 0 - Live 0x0000000000000000\n",
    )
    .unwrap();
    let o = n.run(&["rollback"], &[("STANDIN_ACTIVE", "k3s")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Rollback complete"), "{out}");
    assert!(
        out.contains("module vxlan left loaded: in use (1 users)"),
        "{out}"
    );
    assert!(
        out.contains("net.ipv4.ip_forward left at 1: k3s is running"),
        "{out}"
    );
    let log = n.argv_log();
    assert!(log.contains("modprobe -r br_netfilter"), "{log}");
    assert!(!log.contains("modprobe -r vxlan"), "{log}");
    assert!(!log.contains("modprobe -r overlay"), "not loaded: {log}");
    assert!(!log.contains("net.ipv4.ip_forward=0"), "{log}");
    fs::remove_file(n.root.join("proc/modules")).unwrap();
    assert_same(
        &before,
        &snapshot(&n.root),
        "after rolling back the fallback",
    );
}

/// A finding the plan does not fix (a kernel older than Cilium needs) refuses the install;
/// findings it fixes are named with the step that fixes them.
#[test]
fn install_names_the_steps_that_fix_blockers_and_refuses_the_rest() {
    let n = node();
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("fixed by step 4 (k3s.drop-in): k3s.flannel-backend"),
        "{out}"
    );
    assert!(
        out.contains("Every blocking finding is fixed by a step of the plan: proceeding."),
        "{out}"
    );

    let n = node();
    fs::write(n.root.join("proc/sys/kernel/osrelease"), "4.9.0\n").unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("  blocking: kernel."), "{out}");
    assert!(
        out.contains("Refusing to install: the plan does not fix"),
        "{out}"
    );
    assert_same(&before, &snapshot(&n.root), "refused install");
    assert!(!n.argv_log().contains("systemctl"), "{}", n.argv_log());
}

/// Read-only files: /etc/rancher/k3s is a read-only bind mount (a private mount namespace, so
/// nothing outlives the test). The drop-in cannot be written; the install fails there and the
/// automatic rollback leaves the tree as it was.
#[test]
#[cfg_attr(
    not(prereq = "root"),
    ignore = "needs root for a read-only bind mount in a private mount namespace"
)]
fn read_only_files_fail_cleanly_and_leave_the_node_as_it_was() {
    let n = node();
    let script = include_str!("scripts/read-only.sh");
    let work = n.standin.join("readonly");
    fs::create_dir_all(&work).unwrap();
    let path = format!(
        "{}:{}",
        n.standin.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
            "bash",
        ])
        .arg(&n.root)
        .arg(BIN)
        .arg(&work)
        .env("STANDIN_PATH", path)
        .env("STANDIN_DIR", &n.standin)
        .env("STANDIN_ROOT", &n.root)
        .output()
        .unwrap();
    assert_ne!(
        o.status.code(),
        Some(90),
        "root, yet no read-only bind mount\n{}",
        text(&o)
    );
    let read = |f: &str| fs::read_to_string(work.join(f)).unwrap_or_default();
    let install = read("install.txt");
    assert!(
        install.contains("install exit 1"),
        "{install}\n{}",
        text(&o)
    );
    assert!(install.contains("Read-only file system"), "{install}");
    assert!(
        install.contains("INSTALL FAILED at step 4 (k3s.drop-in)"),
        "{install}"
    );
    assert!(install.contains("Rollback complete"), "{install}");
    assert_eq!(read("before.txt"), read("after.txt"), "{install}");
}

/// flannel-backend: none in a user drop-in that sorts after preflight's flannel drop-in: an
/// override cannot win, so the fallback stops with exit 1 and says what to change.
#[test]
fn fallback_refuses_when_a_later_drop_in_keeps_flannel_off() {
    let n = node();
    fs::create_dir_all(n.root.join("etc/rancher/k3s/config.yaml.d")).unwrap();
    fs::write(
        n.root.join("etc/rancher/k3s/config.yaml.d/95-cni.yaml"),
        "flannel-backend: none\n",
    )
    .unwrap();
    let before = snapshot(&n.root);
    let o = n.run(&["fallback", "flannel", "--yes"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("95-cni.yaml sets flannel-backend: none"),
        "{out}"
    );
    assert!(out.contains("Remove that line"), "{out}");
    assert_same(&before, &snapshot(&n.root), "refused fallback");
}

/// `--release-name`, `--namespace` and `--context` (helm and kubectl are the stand-ins: no
/// cluster here, so the real command lines are what is tested). The plan prints them on every
/// helm and kubectl line, with each tool's own context flag; CoreDNS stays in kube-system.
#[test]
fn plan_carries_release_namespace_and_context_into_every_command_line() {
    let n = node();
    let kubeconfig = n
        .root
        .canonicalize()
        .unwrap()
        .join("etc/rancher/k3s/k3s.yaml");
    let kc = kubeconfig.display();
    let o = n.run(
        &[
            "plan",
            "--cilium-version",
            "1.18.4",
            "--release-name",
            "cni",
            "--namespace",
            "cilium-system",
            "--context",
            "edge@lab",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for must in [
        "helm upgrade --install cni (Cilium 1.18.4)".to_string(),
        format!(
            "helm upgrade --install cni cilium --repo https://helm.cilium.io/ --version 1.18.4 \
             --namespace cilium-system --values {}/var/lib/preflight/cilium-values.yaml \
             --kubeconfig {kc} --kube-context edge@lab",
            n.root.canonicalize().unwrap().display()
        ),
        "Helm release cilium-system/cni installed".to_string(),
        format!(
            "kubectl --kubeconfig {kc} --context edge@lab -n cilium-system rollout status \
             daemonset/cilium --timeout=300s"
        ),
        format!(
            "kubectl --kubeconfig {kc} --context edge@lab -n kube-system rollout restart \
             deployment/coredns"
        ),
    ] {
        assert!(out.contains(&must), "{must:?} missing:\n{out}");
    }
    assert!(
        !out.contains("-n kube-system rollout status daemonset/cilium"),
        "{out}"
    );
    assert!(!out.contains("upgrade --install cilium "), "{out}");
    // Every kubectl line names the context, every helm line the kube-context.
    for line in out.lines().map(str::trim) {
        if line.starts_with("kubectl ") {
            assert!(line.contains(" --context edge@lab "), "{line}");
        }
        if line.starts_with("helm ") {
            assert!(line.contains(" --kube-context edge@lab"), "{line}");
        }
    }
}

/// The release installed under another name and namespace is the one rollback removes: the
/// journal recorded them (and the context), so a plain `rollback` needs no flags; a flag that
/// names another release is refused before anything is undone.
#[test]
fn rollback_undoes_the_release_the_journal_recorded() {
    let n = node();
    let before = snapshot(&n.root);
    let mut args = install_args();
    args.extend([
        "--release-name",
        "cni",
        "--namespace",
        "cilium-system",
        "--context",
        "edge",
    ]);
    let o = n.run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    for cmd in [
        "helm status cni -n cilium-system -o json --kubeconfig ",
        "helm upgrade --install cni cilium --repo https://helm.cilium.io/ --version 1.18.4 --namespace cilium-system --values ",
        " --context edge version\n",
        " --context edge -n cilium-system rollout status daemonset/cilium",
        " --context edge -n kube-system rollout restart deployment/coredns",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    assert!(n.standin.join("release-cni").exists(), "{log}");
    let journal =
        fs::read_to_string(n.root.join("var/lib/preflight/journal/journal.json")).unwrap();
    assert!(
        journal.contains("\"namespace\": \"cilium-system\""),
        "{journal}"
    );
    assert!(journal.contains("\"release\": \"cni\""), "{journal}");

    let o = n.run(&["rollback", "--namespace", "kube-system"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--namespace kube-system: the journal")
            && err.contains("recorded the release cilium-system/cni"),
        "{err}"
    );
    assert!(n.standin.join("release-cni").exists(), "nothing undone");

    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    assert!(
        log.contains("\nhelm uninstall cni -n cilium-system --wait --kubeconfig ")
            && log.contains(" --kube-context edge\n"),
        "{log}"
    );
    assert!(!n.standin.join("release-cni").exists(), "{log}");
    assert_same(&before, &snapshot(&n.root), "after rollback");
}

/// Names Kubernetes or Helm would refuse are refused before anything runs: exit 2, the flag and
/// the rule named.
#[test]
fn bad_release_names_namespaces_and_contexts_exit_2() {
    let n = node();
    let before = snapshot(&n.root);
    let long = "a".repeat(54);
    for (flag, value, says) in [
        ("--namespace", "Kube_System", "not a valid DNS-1123 label"),
        ("--namespace", "-ns", "start and end with a letter or digit"),
        ("--release-name", "Cilium", "not a valid Helm release name"),
        ("--release-name", long.as_str(), "Helm allows at most 53"),
        ("--context", "-x", "would read as an option"),
        ("--context", "a b", "only letters, digits"),
    ] {
        for cmd in [
            &["plan"][..],
            &["install", "--yes"],
            &["rollback"],
            &["fallback", "flannel", "--yes"],
        ] {
            // `--flag=VALUE`: a value starting with '-' would otherwise read as an option.
            let given = format!("{flag}={value}");
            let mut args = cmd.to_vec();
            args.push(&given);
            let o = n.run(&args, &[]);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(flag) && err.contains(says), "{args:?}: {err}");
        }
    }
    assert_same(&before, &snapshot(&n.root), "after refused flags");
    assert_eq!(n.argv_log(), "", "no tool ran");
}

/// `fallback flannel --release-name/--namespace` removes the Cilium release by that name.
#[test]
fn fallback_uninstalls_the_named_release() {
    let n = rancher_desktop_with_openrc();
    fs::write(n.standin.join("release-cni"), "").unwrap();
    let o = n.run(
        &[
            "fallback",
            "flannel",
            "--yes",
            "--release-name",
            "cni",
            "--namespace",
            "cilium-system",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = n.argv_log();
    for cmd in [
        "helm status cni -n cilium-system -o json",
        "helm get values cni -n cilium-system -o yaml",
        "helm uninstall cni -n cilium-system --wait",
    ] {
        assert!(log.contains(cmd), "{cmd:?} not run:\n{log}");
    }
    assert!(!n.standin.join("release-cni").exists(), "{log}");
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        n.argv_log().contains(
            "helm upgrade --install cni cilium --repo https://helm.cilium.io/ --namespace cilium-system --values "
        ),
        "{}",
        n.argv_log()
    );
}

/// A journal from before the release and namespace were recorded (the fields absent) rolls
/// back cilium in kube-system, as it was installed.
#[test]
fn rollback_of_a_journal_without_release_fields_keeps_the_old_defaults() {
    let n = node();
    let o = n.run(&install_args(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let path = n.root.join("var/lib/preflight/journal/journal.json");
    let mut journal: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let mut stripped = 0;
    for e in journal["entries"].as_array_mut().unwrap() {
        if e["undo"]["undo"] == "helm" {
            let u = e["undo"].as_object_mut().unwrap();
            u.remove("release");
            u.remove("namespace");
            stripped += 1;
        }
    }
    assert_eq!(stripped, 1, "{journal}");
    fs::write(&path, serde_json::to_vec_pretty(&journal).unwrap()).unwrap();
    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        n.argv_log()
            .contains("\nhelm uninstall cilium -n kube-system --wait"),
        "{}",
        n.argv_log()
    );
}

/// `--kubeconfig FILE` outside the node's root (the operator's own file): install journals it;
/// rollback trusts it only when given the same file again (a journal alone must not point helm
/// at credentials outside the root), then undoes the release through it.
#[test]
fn an_operators_kubeconfig_outside_the_root_is_trusted_only_when_given_again() {
    let n = node();
    let before = snapshot(&n.root);
    let kc = n.standin.join("operator.kubeconfig");
    fs::write(&kc, "apiVersion: v1\nkind: Config\n").unwrap();
    let kc = kc.canonicalize().unwrap();
    let kc_arg = kc.to_str().unwrap();
    let mut args = install_args();
    args.extend(["--kubeconfig", kc_arg]);
    let o = n.run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A second install with the same file continues the journal (nothing to redo).
    let o = n.run(&args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("already done (the agent preflight installed wrote it"),
        "{}",
        text(&o)
    );

    let o = n.run(&["rollback"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused") && err.contains(&format!("give it again: --kubeconfig {kc_arg}")),
        "{err}"
    );
    assert!(n.standin.join("release-cilium").exists(), "nothing undone");

    let o = n.run(&["rollback", "--kubeconfig", kc_arg], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        n.argv_log().contains(&format!(
            "helm uninstall cilium -n kube-system --wait --kubeconfig {kc_arg}\n"
        )),
        "{}",
        n.argv_log()
    );
    assert_same(&before, &snapshot(&n.root), "after rollback");
}

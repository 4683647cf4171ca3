//! `preflight run --root fixtures/nodes/<node>` gives the findings an expert would list for
//! each node tree, and bad node files become findings naming the file (and line), never a panic.
mod common;

use std::{collections::BTreeMap, path::PathBuf};

use common::{bin, json};

struct Run {
    code: i32,
    report: serde_json::Value,
    /// check id → (status, detail)
    checks: BTreeMap<String, (String, String)>,
}

impl Run {
    fn status(&self, id: &str) -> &str {
        &self
            .checks
            .get(id)
            .unwrap_or_else(|| panic!("no check {id}"))
            .0
    }
    fn detail(&self, id: &str) -> &str {
        &self.checks[id].1
    }
    fn check(&self, id: &str) -> &serde_json::Value {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
    }
    fn assert(&self, id: &str, status: &str) {
        assert_eq!(
            self.status(id),
            status,
            "{id}: {}",
            serde_json::to_string_pretty(self.check(id)).unwrap()
        );
    }
    fn blocking(&self, capability: &str) -> Vec<String> {
        self.report["verdict"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["capability"] == capability)
            .map(|c| {
                c["blocking"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn fixture(node: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/nodes")
        .join(node)
}

fn run_root(root: &std::path::Path, extra: &[&str]) -> Run {
    let out = bin()
        .args(["run", "--format", "json", "--root"])
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let report = json(&out);
    // The contract: every check object carries these fields (remedy is null on pass/skip).
    for c in report["checks"].as_array().unwrap() {
        for field in ["id", "status", "title", "detail", "remedy"] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
    }
    let checks = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        report,
        checks,
    }
}

fn run(node: &str, extra: &[&str]) -> Run {
    run_root(&fixture(node), extra)
}

/// Facts that only exist on the running system are skipped, with a reason, for every fixture.
fn live_only_facts_are_skipped(r: &Run) {
    for id in [
        "network.tunnel-port.vxlan",
        "network.tunnel-port.geneve",
        "network.flannel-leftovers",
        "network.cilium-leftovers",
        "bpf.prog.sched_cls",
    ] {
        if r.checks.contains_key(id) {
            r.assert(id, "skip");
            assert!(r.detail(id).contains("live"), "{id}: {}", r.detail(id));
        }
    }
}

#[test]
fn k3s_node_that_ran_flannel() {
    let r = run("k3s-flannel", &[]);
    live_only_facts_are_skipped(&r);
    // k3s still runs flannel: the blocker for the default target, and what follows from it
    // when Cilium starts: flannel.1 holds VXLAN's port, datapath init stops before writing
    // node_config.h, and the endpoints fail to compile against the dummy header (the seed
    // incident, predicted from the node's files).
    r.assert("k3s.flannel-backend", "fail");
    assert_eq!(
        r.blocking("base-datapath"),
        [
            "k3s.flannel-backend",
            "compile.init",
            "compile.bpf_lxc",
            "compile.bpf_host"
        ]
    );
    r.assert("compile.init", "fail");
    assert!(
        r.detail("compile.init")
            .contains("flannel.1 will hold UDP 8472")
    );
    assert!(
        r.detail("compile.bpf_lxc")
            .contains("macro redefined: CALLS_MAP")
    );
    assert!(
        r.check("compile.init")["remedy"]
            .as_str()
            .unwrap()
            .contains("flannel-backend: none")
    );
    assert_eq!(r.code, 1);
    r.assert("k3s.network-policy", "warn");
    // k3s's flannel-era config points containerd at a versioned k3s data dir. The remedy is
    // the plan's (flannel-backend: none, chart defaults /opt/cni/bin); the fallback values
    // name the versionless data/current/bin, never the data/<hash> dir (k3s-io/k3s#10869).
    r.assert("cni.dirs", "warn");
    let remedy = r.check("cni.dirs")["remedy"].as_str().unwrap();
    assert!(
        remedy.starts_with("start k3s with flannel-backend: none")
            && remedy.contains("cni.binPath=/var/lib/rancher/k3s/data/current/bin")
            && remedy.contains("cni.confPath=/var/lib/rancher/k3s/agent/etc/cni/net.d")
            && !remedy.contains("7c2e3a1f9b"),
        "{remedy}"
    );
    assert!(
        r.detail("cni.dirs")
            .contains("/opt/cni/bin and /etc/cni/net.d")
    );
    r.assert("cni.bin-dir-versioned", "warn");
    let remedy = r.check("cni.bin-dir-versioned")["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("data/current/bin") && !remedy.contains("data/cni"),
        "{remedy}"
    );
    r.assert("cni.configs", "pass");
    assert!(r.detail("cni.configs").contains("flannel"));
    // =m options judged with module state: vxlan loaded, cls_bpf loadable (.ko.xz), geneve's
    // file missing — which only matters for a geneve tunnel.
    r.assert("kernel.config.vxlan", "pass");
    assert!(r.detail("kernel.config.vxlan").contains("loaded"));
    r.assert("kernel.config.net-cls-bpf", "pass");
    assert!(r.detail("kernel.config.net-cls-bpf").contains("not loaded"));
    r.assert("kernel.config.geneve", "fail");
    assert!(
        r.detail("kernel.config.geneve")
            .contains("geneve.ko.xz is missing")
    );
    assert_eq!(r.check("kernel.config.geneve")["relevant"], false);
    let geneve = run("k3s-flannel", &["--need", "tunnel-geneve"]);
    assert!(
        geneve
            .blocking("tunnel-geneve")
            .contains(&"kernel.config.geneve".to_string())
    );
    r.assert("mounts.bpffs", "pass");
    r.assert("distro.iptables", "pass");
    assert!(r.detail("distro.iptables").contains("legacy"));
    r.assert("modules.br-netfilter", "pass");
    r.assert("k3s.rancher-desktop", "skip");
}

#[test]
fn rancher_desktop_vm() {
    let r = run("rancher-desktop", &[]);
    live_only_facts_are_skipped(&r);
    r.assert("k3s.rancher-desktop", "warn");
    r.assert("cni.dirs", "warn");
    assert_eq!(
        r.check("cni.dirs")["remedy"].as_str().unwrap(),
        "--set cni.binPath=/usr/libexec/cni"
    );
    // bpffs mounted, but private: the agent's Bidirectional mount cannot reach the host.
    r.assert("mounts.bpffs", "fail");
    assert!(r.detail("mounts.bpffs").contains("not a shared mount"));
    assert_eq!(r.blocking("base-datapath"), ["mounts.bpffs"]);
    // The one-line verdict names both fixes: the value and the node's mount.
    let summary = r.report["verdict"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("--set cni.binPath=/usr/libexec/cni"),
        "{summary}"
    );
    assert!(
        summary.contains("also fix on the node: mounts.bpffs"),
        "{summary}"
    );
    assert_eq!(r.report["verdict"]["patch_is_go"], false);
    // The config came from /proc/config.gz.
    let ev = r.check("kernel.config")["evidence"][0].as_str().unwrap();
    assert!(ev.ends_with("proc/config.gz"), "{ev}");
    r.assert("k3s.flannel-backend", "pass");
    r.assert("kernel.config.netkit", "fail"); // 6.6 has no netkit …
    assert_eq!(r.check("kernel.config.netkit")["relevant"], false); // … nobody asked for it
}

#[test]
fn rhel10_with_nftables_and_firewalld() {
    let r = run("rhel10", &["--need", "kube-proxy-replacement"]);
    live_only_facts_are_skipped(&r);
    r.assert("distro.firewalld", "warn");
    r.assert("distro.network-manager", "warn");
    r.assert("distro.iptables", "pass");
    assert!(r.detail("distro.iptables").contains("nft"));
    r.assert("sysctl.net-ipv4-conf-all-rp-filter", "warn");
    r.assert("k3s.kube-proxy", "pass");
    r.assert("k3s.flannel-backend", "pass");
    // containerd v3 config without a cni table: defaults, which match the chart.
    r.assert("cni.dirs", "pass");
    r.assert("modules.br-netfilter", "pass");
    assert!(r.detail("modules.br-netfilter").contains("built in"));
    r.assert("distro.os-release", "pass");
    assert!(r.detail("distro.os-release").contains("rhel"));
    assert_eq!(r.report["verdict"]["go"], true, "{}", r.report["verdict"]);
    assert_eq!(r.code, 0);
}

/// A kernel config cut at a line boundary parses cleanly line by line; Kconfig's menu markers
/// show it is incomplete, so it is refused (unknown), never read as "options not set".
#[test]
fn a_kernel_config_cut_at_a_line_boundary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(fixture("debian-bookworm"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    let config = root.join("boot/config-6.1.0-18-amd64");
    let text = std::fs::read_to_string(&config).unwrap();
    let cut: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains("NETFILTER"))
        .collect();
    std::fs::write(
        &config,
        format!("# end of General setup\n{}\n", cut.join("\n")),
    )
    .unwrap();
    let r = run_root(&root, &["--no-compile"]);
    r.assert("kernel.config", "unknown");
    assert!(
        r.detail("kernel.config").contains("cut short"),
        "{}",
        r.detail("kernel.config")
    );
    r.assert("kernel.config.netfilter-xt-match-socket", "unknown");
    assert!(
        !r.checks
            .values()
            .any(|(s, d)| s == "fail" && d.contains("is not set"))
    );
}

/// A module directory whose modules.dep is empty (depmod never ran): not "0 modules, fine".
#[test]
fn an_empty_module_index_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("proc/sys/kernel")).unwrap();
    std::fs::write(root.join("proc/sys/kernel/osrelease"), "6.1.0-9-amd64\n").unwrap();
    std::fs::create_dir_all(root.join("lib/modules/6.1.0-9-amd64")).unwrap();
    std::fs::write(root.join("lib/modules/6.1.0-9-amd64/modules.dep"), "").unwrap();
    let r = run_root(root, &["--no-compile"]);
    r.assert("modules.index", "warn");
    assert!(
        r.detail("modules.index").contains("depmod has not run"),
        "{}",
        r.detail("modules.index")
    );
}

/// The same node with the chart's default values (kubeProxyReplacement off): k3s no longer runs
/// kube-proxy and nothing would replace it, so Services break: a blocker, with both ways out.
#[test]
fn rhel10_without_kube_proxy_needs_the_replacement() {
    let r = run("rhel10", &["--no-compile"]);
    r.assert("k3s.kube-proxy", "fail");
    assert!(
        r.detail("k3s.kube-proxy")
            .contains("nothing would program Service IPs")
    );
    let remedy = r.check("k3s.kube-proxy")["remedy"].as_str().unwrap();
    assert!(remedy.contains("kubeProxyReplacement=true"), "{remedy}");
    assert!(remedy.contains("remove disable-kube-proxy"), "{remedy}");
    assert!(
        r.blocking("base-datapath")
            .contains(&"k3s.kube-proxy".to_string())
    );
    assert_eq!(r.report["verdict"]["go"], false);
    assert_eq!(r.code, 1);
}

#[test]
fn debian_bookworm_modules_as_m() {
    let r = run("debian-bookworm", &[]);
    live_only_facts_are_skipped(&r);
    for id in [
        "kernel.config.net-cls-bpf",
        "kernel.config.net-sch-ingress",
        "kernel.config.vxlan",
        "kernel.config.netfilter-xt-match-socket",
    ] {
        r.assert(id, "pass");
        assert!(
            r.detail(id).contains("=m, module"),
            "{id}: {}",
            r.detail(id)
        );
    }
    let ev = r.check("kernel.config")["evidence"][0].as_str().unwrap();
    assert!(ev.ends_with("boot/config-6.1.0-18-amd64"), "{ev}");
    r.assert("mounts.bpffs", "warn");
    assert!(r.detail("mounts.bpffs").contains("no bpffs"));
    r.assert("sysctl.net-bridge-bridge-nf-call-iptables", "warn");
    r.assert("k3s.flannel-backend", "skip");
    r.assert("kernel.config.netkit", "fail");
    assert_eq!(r.report["verdict"]["go"], true);
    assert_eq!(r.code, 0);
}

#[test]
fn leftovers_of_a_failed_cilium_install() {
    let r = run("failed-cilium", &[]);
    live_only_facts_are_skipped(&r);
    r.assert("state.node-config", "warn");
    assert!(r.detail("state.node-config").contains("1.14 to 1.17"));
    r.assert("state.bpf-pins", "warn");
    assert!(r.detail("state.bpf-pins").contains("cilium_calls_65535"));
    r.assert("state.templates", "pass"); // 1.18 wipes stale templates itself
    r.assert("state.var-lib-cilium", "warn");
    r.assert("cni.configs", "warn");
    assert!(r.detail("cni.configs").contains("2 CNIs"));
    r.assert("cni.cilium-cni", "pass");
    r.assert("mounts.bpffs", "fail");
    assert!(r.detail("mounts.bpffs").contains("mounted 2 times"));
    assert!(r.detail("cni.dirs").contains("Go template"));
    let ev = r.check("kernel.config")["evidence"][0].as_str().unwrap();
    assert!(
        ev.ends_with("usr/lib/modules/6.8.0-45-generic/config"),
        "{ev}"
    );
    assert_eq!(r.code, 1);
}

/// A user's own `config.toml.tmpl` (k3s keeps it across the flannel switch) pinned to a
/// data/<hash> dir: the remedy is the versionless path, as `preflight plan` predicts it.
#[test]
fn user_containerd_template_on_a_versioned_k3s_dir_gets_the_versionless_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let hash = "a".repeat(64);
    let tmpl = root.join("var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl");
    std::fs::create_dir_all(tmpl.parent().unwrap()).unwrap();
    std::fs::write(
        &tmpl,
        format!(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  \
             bin_dir = \"/var/lib/rancher/k3s/data/{hash}/bin\"\n  \
             conf_dir = \"/etc/cni/net.d\"\n"
        ),
    )
    .unwrap();
    let r = run_root(root, &["--no-compile"]);
    r.assert("cni.dirs", "warn");
    assert_eq!(
        r.check("cni.dirs")["remedy"].as_str().unwrap(),
        "--set cni.binPath=/var/lib/rancher/k3s/data/current/bin"
    );
    r.assert("cni.bin-dir-versioned", "warn");
}

/// Garbage, truncated, binary, huge and looping files: findings that name the file (and line);
/// the run still completes with a full report and an honest verdict.
#[test]
fn bad_node_files_are_findings_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let put = |path: &str, bytes: &[u8]| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put("proc/sys/kernel/osrelease", b"6.1.0-1-amd64\n");
    put(
        "boot/config-6.1.0-1-amd64",
        b"CONFIG_BPF=y\nCONFIG_\x00\xff\xfe binary",
    );
    put("usr/src/linux/.config", b"CONFIG_BPF=y\nCONFIG_VXL");
    put("proc/config.gz", b"\x1f\x8b\x08\x00truncated");
    put(
        "proc/1/mountinfo",
        b"22 1 259:1 / / rw shared:1 - ext4 /dev/sda1 rw\nthis is not mountinfo\n",
    );
    put(
        "etc/rancher/k3s/config.yaml",
        b"flannel-backend: none\ndisable: [traefik\n",
    );
    put(
        "var/lib/rancher/k3s/agent/etc/containerd/config.toml",
        b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni\n",
    );
    put(
        "etc/cni/net.d/10-flannel.conflist",
        b"{\n  \"name\": \"cbr0\",\n  \"plugins\": [\n",
    );
    put(
        "lib/modules/6.1.0-1-amd64/modules.dep",
        b"\x7fELF\x02\x01\x01\x00\x00\n",
    );
    put("var/run/cilium/state/globals/node_config.h", b"");
    // An enormous /proc/modules (sparse, so the test stays cheap).
    let big = std::fs::File::create(root.join("proc/modules")).unwrap();
    big.set_len(64 << 20).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release.b", root.join("etc/os-release")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", root.join("etc/os-release.b")).unwrap();
    // A FIFO where a config file should be (open(2) would block forever) and directories that
    // are symlink loops: findings naming the path, not a hang and not "nothing there".
    std::fs::create_dir_all(root.join("etc/containerd")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(root.join("etc/containerd/config.toml"))
        .status()
        .unwrap();
    assert!(fifo.success());
    for dir in ["sys/fs/bpf/tc/globals", "var/run/cilium/state/templates"] {
        let d = root.join(dir);
        std::fs::create_dir_all(d.parent().unwrap()).unwrap();
        // Relative links: an absolute one would resolve inside the root, to nothing.
        let name = d.file_name().unwrap().to_owned();
        let other = d.with_extension("b");
        std::os::unix::fs::symlink(other.file_name().unwrap(), &d).unwrap();
        std::os::unix::fs::symlink(&name, &other).unwrap();
    }
    let r = run_root(root, &[]);
    // A full report either way; here nothing about the kernel or k3s can be told from these
    // files, so the verdict is undecided (exit 2, as documented), not a guessed no-go.
    assert_eq!(
        r.report["verdict"]["decided"], false,
        "{}",
        r.report["verdict"]
    );
    assert_eq!(r.code, 2);
    let summary = r.report["verdict"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("kernel config under --root is unusable"),
        "{summary}"
    );
    let shown = root.display().to_string();
    r.assert("kernel.config", "unknown");
    let kc = r.detail("kernel.config");
    assert!(
        kc.contains(&format!("{shown}/boot/config-6.1.0-1-amd64:2: not UTF-8")),
        "{kc}"
    );
    assert!(
        kc.contains(&format!("{shown}/usr/src/linux/.config:2")),
        "{kc}"
    );
    assert!(kc.contains("proc/config.gz: not gzip"), "{kc}");
    // Unknown, never fail, when the config is unusable.
    r.assert("kernel.config.bpf", "unknown");
    r.assert("mounts.bpffs", "unknown");
    assert!(
        r.detail("mounts.bpffs").contains("proc/1/mountinfo:2"),
        "{}",
        r.detail("mounts.bpffs")
    );
    r.assert("k3s.config", "warn");
    assert!(
        r.detail("k3s.config")
            .contains("etc/rancher/k3s/config.yaml:"),
        "{}",
        r.detail("k3s.config")
    );
    // The unread config may set exactly these flags: could not tell, never a guess.
    for id in [
        "k3s.flannel-backend",
        "k3s.network-policy",
        "k3s.kube-proxy",
    ] {
        r.assert(id, "unknown");
        assert!(
            r.detail(id).contains("config.yaml:"),
            "{id}: {}",
            r.detail(id)
        );
    }
    // containerd refuses its broken config too: the dirs are unknown, not the defaults.
    for id in ["cni.dirs", "cni.cilium-cni", "cni.bin-dir-versioned"] {
        r.assert(id, "unknown");
        assert!(
            r.detail(id).contains("containerd/config.toml:2"),
            "{id}: {}",
            r.detail(id)
        );
    }
    r.assert("cni.configs", "warn");
    let cni = r.detail("cni.configs");
    assert!(cni.contains("10-flannel.conflist:4"), "{cni}");
    assert!(cni.contains("containerd/config.toml:2"), "{cni}");
    r.assert("modules.index", "warn");
    let m = r.detail("modules.index");
    assert!(m.contains("proc/modules: larger than"), "{m}");
    assert!(m.contains("modules.dep:1"), "{m}");
    r.assert("distro.os-release", "unknown");
    assert!(r.detail("distro.os-release").contains("symlink loop"));
    r.assert("state.node-config", "unknown");
    let cni = r.detail("cni.configs");
    assert!(
        cni.contains("etc/containerd/config.toml: a FIFO, not a regular file"),
        "{cni}"
    );
    for id in ["state.bpf-pins", "state.templates"] {
        r.assert(id, "unknown");
        assert!(
            r.detail(id).contains("symlink loop"),
            "{id}: {}",
            r.detail(id)
        );
    }
}

#[test]
fn a_missing_root_is_an_error() {
    let out = bin()
        .args(["run", "--root", "/nonexistent/preflight-root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/preflight-root"));
}

fn summary(r: &Run) -> &str {
    r.report["verdict"]["summary"].as_str().unwrap()
}

fn capability<'a>(r: &'a Run, name: &str) -> &'a serde_json::Value {
    r.report["verdict"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["capability"] == name)
        .unwrap_or_else(|| panic!("no capability {name}"))
}

#[test]
fn the_verdict_line_separates_blocked_from_undecided_capabilities() {
    // The plan node: k3s still runs flannel (blocks base-datapath), and tunnel-vxlan, l7-proxy
    // and hubble have nothing but unknowns (no kernel config under the root): they are
    // undecided, not blocked. The plan fixes the one failure, so nothing is left for a person:
    // the node is undecided (exit 2), and the line names the step.
    let r = run("k3s-flannel-plan", &["--no-compile", "--no-canaries"]);
    assert_eq!(r.code, 2, "{}", summary(&r));
    assert_eq!(capability(&r, "tunnel-vxlan")["undecided"], true);
    assert_eq!(
        capability(&r, "tunnel-vxlan")["blocking"],
        serde_json::json!([])
    );
    assert_eq!(
        capability(&r, "base-datapath")["blocking"],
        serde_json::json!(["k3s.flannel-backend"])
    );
    assert_eq!(r.report["verdict"]["readiness"], "undecided");
    let line = summary(&r);
    assert!(
        line.starts_with(
            "UNDECIDED: could not verify tunnel-vxlan, l7-proxy, hubble for Cilium 1.20.2: "
        ),
        "{line}"
    );
    assert!(
        line.ends_with("every failure is fixed by the steps of `preflight plan`: k3s.drop-in (fixes k3s.flannel-backend)"),
        "{line}"
    );
    // With that failure ignored, the unknowns alone make it undecided too.
    let r = run(
        "k3s-flannel-plan",
        &[
            "--no-compile",
            "--no-canaries",
            "--ignore",
            "k3s.flannel-backend",
        ],
    );
    assert_eq!(r.code, 2, "{}", summary(&r));
}

#[test]
fn an_empty_root_is_undecided_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let r = run_root(root.path(), &["--no-compile", "--no-canaries"]);
    // File-based passes (CNI dirs, no node state) say nothing about the kernel.
    assert_eq!(capability(&r, "base-datapath")["undecided"], true);
    assert_eq!(capability(&r, "base-datapath")["go"], false);
    assert_eq!(r.code, 2, "{}", summary(&r));
    let s = summary(&r);
    assert!(
        s.starts_with("UNDECIDED: could not verify base-datapath"),
        "{s}"
    );
    assert!(
        s.contains("no kernel config under --root and live probes do not run with --root"),
        "{s}"
    );
    assert!(!s.contains("run as root"), "{s}");
}

#[test]
fn a_go_from_a_fixture_root_says_it_rests_on_files_only() {
    let r = run("debian-bookworm", &["--no-compile", "--no-canaries"]);
    assert_eq!(r.code, 0, "{}", summary(&r));
    assert!(
        summary(&r).ends_with(
            "; from files only: live bpf()/canary/compile checks were skipped (--root is not \
             this kernel's root)"
        ),
        "{}",
        summary(&r)
    );
}

//! The real datapath: unmodified Cilium trees (../shared/cilium: 1.16.15, 1.18.3, 1.20.0-dev,
//! test data outside the repository) compiled the way their agent compiles them, with Debian's
//! clang 14, 16 and 19 (scripts/setup.sh). The trees are extracted into a temp dir once per
//! run; objects are shared between the tests through one object cache, so a cell compiled by
//! one test is not compiled again by another. Without ../shared these tests are ignored (the
//! build script sets `cfg(shared_cilium)`), and `cargo test` lists them as ignored.
#![cfg_attr(not(shared_cilium_trees), allow(dead_code, unused_imports))]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use preflight::{
    cilium::Target,
    compile::{
        self, CompileReport, Options, StateSource, cache::CacheMode, elf::Verdict, explain::Cause,
        version_guess,
    },
    host::HostRoot,
};

const VERSIONS: &[&str] = &["1.16.15", "1.18.3", "1.20.0-dev"];

fn shared() -> PathBuf {
    PathBuf::from(option_env!("PREFLIGHT_SHARED_CILIUM").unwrap_or("../shared/cilium"))
}

/// The trees, extracted once: `<tmp>/<version>/bpf`.
fn trees() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for v in VERSIONS {
            let file = std::fs::File::open(shared().join(v).join("bpf.tar.gz")).unwrap();
            let dest = dir.path().join(v);
            std::fs::create_dir_all(&dest).unwrap();
            tar::Archive::new(flate2::read::GzDecoder::new(file))
                .unpack(&dest)
                .unwrap();
        }
        dir
    })
    .path()
}

fn tree(version: &str) -> PathBuf {
    trees().join(version).join("bpf")
}

/// One object cache for the whole run: the matrix compiles each cell once.
fn cache() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_path_buf()
}

fn clang(major: u32) -> PathBuf {
    let path = PathBuf::from(format!("/usr/bin/clang-{major}"));
    assert!(
        path.is_file(),
        "{} missing: scripts/setup.sh installs clang-14, -16 and -19",
        path.display()
    );
    path
}

fn options(version: &str, target: Target, clang_major: u32) -> Options {
    let mut o = Options::new(target);
    o.bpf_dir = Some(tree(version));
    o.clang = Some(clang(clang_major));
    o.verify = false;
    o.cache = CacheMode::Dir(cache());
    o
}

fn run(o: &Options) -> CompileReport {
    compile::run(o).expect("compile stage runs")
}

fn defaults(version: &str) -> Target {
    Target::chart_defaults(version)
}

fn with(version: &str, values: serde_json::Value) -> Target {
    let mut t = Target::chart_defaults(version);
    t.values = values;
    t.capabilities = preflight::cilium::derive::capabilities(&t.effective_values());
    t
}

fn names(r: &CompileReport) -> Vec<&str> {
    r.programs.iter().map(|p| p.name.as_str()).collect()
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn every_shared_tree_compiles_as_its_agent_does_with_clang_14_16_and_19() {
    for version in VERSIONS {
        for major in [14, 16, 19] {
            let r = run(&options(version, defaults(version), major));
            let cell = format!("{version} with clang {major}");
            // The chart defaults: endpoints, host, overlay (VXLAN) and the alignment check.
            assert_eq!(
                names(&r),
                ["bpf_lxc", "bpf_host", "bpf_overlay", "bpf_alignchecker"],
                "{cell}"
            );
            assert!(
                r.not_built.iter().any(|n| n.name == "bpf_sock"),
                "{cell}: bpf_sock is not built without socket LB: {:?}",
                r.not_built
            );
            let old_sources_new_clang = version.starts_with("1.16") && major >= 19;
            if major == 16 {
                load_time_config(version, &r);
            }
            if !old_sources_new_clang {
                for p in &r.programs {
                    assert!(
                        p.compiled && p.findings.is_empty(),
                        "{cell}: {} failed: {:#?}",
                        p.name,
                        p.findings
                    );
                }
                continue;
            }
            // 1.16 sources with clang 19: the known mismatch, named as such, with the LLVM the
            // 1.16 image bundles.
            let failed: Vec<_> = r.programs.iter().filter(|p| !p.compiled).collect();
            assert!(
                !failed.is_empty(),
                "{cell}: expected -Wshorten-64-to-32 failures"
            );
            for p in failed {
                assert!(!p.findings.is_empty(), "{cell}: {} unexplained", p.name);
                for f in &p.findings {
                    assert!(
                        matches!(&f.cause, Cause::ClangTooNew { image_llvm, clang_major: 19, .. } if image_llvm == "17.0.6"),
                        "{cell}: {}: {:?}",
                        p.name,
                        f
                    );
                    assert!(
                        f.explanation.contains("clang too new") && f.explanation.contains("17.0.6")
                    );
                }
            }
        }
    }
}

/// From 1.18 each object carries the values the agent sets at load time (for the loader).
fn load_time_config(version: &str, r: &CompileReport) {
    let lxc = r.program("bpf_lxc").unwrap();
    if version.starts_with("1.16") {
        assert_eq!(lxc.load_config, None, "1.16 has no load-time configuration");
        return;
    }
    let c = lxc
        .load_config
        .as_ref()
        .expect("1.18+ objects have .rodata.config");
    assert_eq!(
        c.variables["__config_interface_ifindex"],
        10u32.to_le_bytes()
    );
    assert_eq!(c.variables["__config_endpoint_id"], 3663u16.to_le_bytes());
    assert_eq!(c.map_renames["cilium_calls"], "cilium_calls_65535");
    let host = r.program("bpf_host").unwrap().load_config.as_ref().unwrap();
    assert_eq!(
        host.variables["__config_security_label"],
        1u32.to_le_bytes()
    );
    assert_eq!(
        host.map_renames["cilium_calls"],
        "cilium_calls_hostns_65535"
    );
    let overlay = r
        .program("bpf_overlay")
        .unwrap()
        .load_config
        .as_ref()
        .unwrap();
    assert_eq!(
        overlay.map_renames["cilium_calls"],
        "cilium_calls_overlay_2"
    );
    if version.starts_with("1.20") {
        // The ARP responder became a load-time switch in 1.20 (#43525).
        assert_eq!(c.variables["__config_enable_arp_responder"], [1]);
        assert_eq!(c.variables["__config_tunnel_port"], 8472u16.to_le_bytes());
    }
}

/// `defaults` plus `values`, capabilities derived again.
fn target_with(version: &str, values: serde_json::Value) -> Target {
    with(version, values)
}

/// Values under which the agent builds every program it has: kube-proxy replacement (socket
/// LB), XDP acceleration, VXLAN (overlay), IPsec (bpf_network up to 1.18).
fn everything(version: &str) -> Target {
    target_with(
        version,
        serde_json::json!({
            "kubeProxyReplacement": true,
            "loadBalancer": {"acceleration": "native"},
            "encryption": {"enabled": true, "type": "ipsec"},
        }),
    )
}

/// WireGuard: up to 1.17 the agent builds bpf_wireguard only for NodePort with native routing
/// and the L7 proxy.
fn wireguard(version: &str) -> Target {
    target_with(
        version,
        serde_json::json!({
            "kubeProxyReplacement": true,
            "routingMode": "native",
            "ipv4NativeRoutingCIDR": "10.0.0.0/8",
            "encryption": {"enabled": true, "type": "wireguard"},
        }),
    )
}

/// Every program the agent builds for kube-proxy replacement, XDP acceleration and WireGuard
/// compiles on every tree with the headers preflight writes (the NodePort block included:
/// 1.16's lib/lb.h takes `DSR_XLATE_FRONTEND` from node_config.h), and as root each object
/// loads; only XDP may be refused, by the kernel itself (this machine's 6.18 refuses
/// `bpf_xdp_adjust_meta` in XDP programs), and then with the verifier's own words. (With IPsec
/// instead, 1.16.15's bpf_xdp does not compile: lib/encap.h calls `set_ipsec_encrypt` in XDP
/// context; docs/compile.md, *Not done*.)
#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn every_program_built_for_kube_proxy_replacement_xdp_and_wireguard_compiles_and_loads() {
    let root = nix::unistd::geteuid().is_root();
    for version in VERSIONS {
        let major = if version.starts_with("1.16") { 16 } else { 19 };
        let values = serde_json::json!({
            "kubeProxyReplacement": true,
            "loadBalancer": {"acceleration": "native"},
            "encryption": {"enabled": true, "type": "wireguard"},
        });
        let mut o = options(version, target_with(version, values), major);
        o.verify = root;
        let r = run(&o);
        assert!(names(&r).contains(&"bpf_xdp") && names(&r).contains(&"bpf_sock"));
        for p in &r.programs {
            assert!(
                p.compiled && p.findings.is_empty(),
                "{version} {}: {:?}",
                p.name,
                p.findings
            );
            let Some(v) = &p.verify else { continue };
            assert!(v.object_error.is_none(), "{version} {}", p.name);
            for prog in &v.programs {
                match &prog.verdict {
                    Verdict::Loaded => {}
                    Verdict::Rejected { log_tail, .. } if p.name == "bpf_xdp" => {
                        assert!(!log_tail.trim().is_empty(), "{version} {}", prog.name)
                    }
                    other => panic!("{version} {} {}: {other:?}", p.name, prog.name),
                }
            }
        }
    }
}

fn program<'a>(p: &'a compile::Prepared, name: &str) -> &'a preflight::compile::runner::Job {
    p.jobs
        .iter()
        .find(|j| j.program == name)
        .unwrap_or_else(|| panic!("{name} not built: {:?}", p.report.not_built))
}

fn calls_map(job: &preflight::compile::runner::Job) -> Option<&str> {
    job.clang_args
        .iter()
        .find_map(|a| a.strip_prefix("-DCALLS_MAP="))
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn the_agents_programs_and_per_program_flags() {
    // 1.16: the loader passes CALLS_MAP per program; bpf_network only with IPsec.
    let p = compile::prepare(&options("1.16.15", everything("1.16.15"), 16)).unwrap();
    assert_eq!(calls_map(program(&p, "bpf_sock")), Some("cilium_calls_lb"));
    assert_eq!(
        calls_map(program(&p, "bpf_xdp")),
        Some("cilium_calls_xdp_2")
    );
    assert_eq!(
        calls_map(program(&p, "bpf_overlay")),
        Some("cilium_calls_overlay_2")
    );
    let xdp = &program(&p, "bpf_xdp").clang_args;
    for flag in [
        "-Dcapture_enabled=0",
        "-DNATIVE_DEV_IFINDEX=2",
        "-DDISABLE_LOOPBACK_LB",
        "-DSECLABEL=2",
    ] {
        assert!(
            xdp.iter().any(|a| a == flag),
            "bpf_xdp lacks {flag}: {xdp:?}"
        );
    }
    assert_eq!(calls_map(program(&p, "bpf_network")), None);
    assert_eq!(
        calls_map(program(&p, "bpf_lxc")),
        None,
        "endpoints get CALLS_MAP from ep_config.h"
    );
    let node = std::fs::read_to_string(p.layout.node_config()).unwrap();
    assert!(
        node.contains("#define ENABLE_IPSEC 1"),
        "bpf_network's switch comes through node_config.h"
    );
    // Endpoints compile against their own template dirs; base programs against the state dir.
    let lxc = program(&p, "bpf_lxc").command_line();
    let host = program(&p, "bpf_host").command_line();
    assert!(lxc.contains(&format!("templates/{}", p.layout.template_hash)));
    assert!(host.contains(&format!("templates/{}", p.layout.host_template_hash)));
    assert_ne!(p.layout.template_hash, p.layout.host_template_hash);
    assert!(!p.jobs.iter().any(|j| j.program == "bpf_wireguard"));
    let wg_off = p
        .report
        .not_built
        .iter()
        .find(|n| n.name == "bpf_wireguard")
        .unwrap();
    assert!(wg_off.why.contains("WireGuard is off"), "{wg_off:?}");

    let p = compile::prepare(&options("1.16.15", wireguard("1.16.15"), 16)).unwrap();
    assert_eq!(
        calls_map(program(&p, "bpf_wireguard")),
        Some("cilium_calls_wireguard_2")
    );
    assert!(
        !p.jobs.iter().any(|j| j.program == "bpf_overlay"),
        "native routing: no overlay"
    );
    // WireGuard over VXLAN without kube-proxy replacement: 1.16's agent does not need it.
    let wg_tunnel = target_with(
        "1.16.15",
        serde_json::json!({"encryption": {"enabled": true, "type": "wireguard"}}),
    );
    let p = compile::prepare(&options("1.16.15", wg_tunnel, 16)).unwrap();
    let why = &p
        .report
        .not_built
        .iter()
        .find(|n| n.name == "bpf_wireguard")
        .unwrap()
        .why;
    assert!(why.contains("NodePort"), "{why}");

    // 1.18: map renames at load time instead of CALLS_MAP flags; WireGuard whenever it is on.
    let p = compile::prepare(&options("1.18.3", everything("1.18.3"), 19)).unwrap();
    for j in &p.jobs {
        assert_eq!(calls_map(j), None, "{}: {}", j.program, j.command_line());
        assert!(
            !j.clang_args.iter().any(|a| a.starts_with("-DSECLABEL")),
            "{}",
            j.command_line()
        );
    }
    assert!(p.jobs.iter().any(|j| j.program == "bpf_network"));
    let wg_tunnel = target_with(
        "1.18.3",
        serde_json::json!({"encryption": {"enabled": true, "type": "wireguard"}}),
    );
    let p = compile::prepare(&options("1.18.3", wg_tunnel, 19)).unwrap();
    assert!(p.jobs.iter().any(|j| j.program == "bpf_wireguard"));

    // 1.20: no bpf_network in the tree; its newer programs are not compiled at run time.
    let p = compile::prepare(&options("1.20.0-dev", everything("1.20.0-dev"), 19)).unwrap();
    assert!(!p.jobs.iter().any(|j| j.program == "bpf_network"));
    for extra in ["bpf_probes", "bpf_sock_term"] {
        let n = p.report.not_built.iter().find(|n| n.name == extra).unwrap();
        assert!(n.why.contains("not compiled by the agent"), "{n:?}");
    }
    let ep = std::fs::read_to_string(p.layout.ep_config()).unwrap();
    assert!(
        !ep.contains("ENABLE_ARP_RESPONDER"),
        "1.20 made the ARP responder a load-time variable:\n{ep}"
    );
    let ep18 = std::fs::read_to_string(
        compile::prepare(&options("1.18.3", defaults("1.18.3"), 19))
            .unwrap()
            .layout
            .ep_config(),
    )
    .unwrap();
    assert!(ep18.contains("#define ENABLE_ARP_RESPONDER 1"), "{ep18}");
}

/// A state dir the target's agent would have written, with globals/node_config.h removed.
fn state_without_node_config(version: &str, target: &Target) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(version, target.clone(), 16);
    o.emit_state = Some(dir.path().join("state"));
    compile::prepare(&o).unwrap();
    std::fs::remove_file(dir.path().join("state/globals/node_config.h")).unwrap();
    dir
}

/// (version, values, [(program, the redefinitions the agent's compile of it logs)]).
type Case = (
    &'static str,
    fn(&str) -> Target,
    &'static [(&'static str, &'static [&'static str])],
);

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn without_node_config_each_program_hits_the_macros_the_agent_would() {
    const CM: &str = "CALLS_MAP";
    const ARP: &str = "ENABLE_ARP_RESPONDER";
    const AGG: &str = "MONITOR_AGGREGATION";
    let cases: &[Case] = &[
        (
            "1.16.15",
            everything,
            &[
                ("bpf_lxc", &[CM, ARP]),
                ("bpf_host", &[CM, ARP, AGG]),
                ("bpf_sock", &[CM, AGG]),
                ("bpf_xdp", &[CM, AGG]),
                ("bpf_overlay", &[CM, AGG]),
                ("bpf_network", &[AGG]),
            ],
        ),
        ("1.16.15", wireguard, &[("bpf_wireguard", &[CM, AGG])]),
        (
            "1.18.3",
            everything,
            &[
                ("bpf_lxc", &[ARP, AGG]),
                ("bpf_host", &[ARP, AGG]),
                ("bpf_sock", &[AGG]),
                ("bpf_xdp", &[AGG]),
                ("bpf_overlay", &[AGG]),
                ("bpf_network", &[AGG]),
            ],
        ),
        ("1.18.3", wireguard, &[("bpf_wireguard", &[AGG])]),
        (
            "1.20.0-dev",
            everything,
            &[
                ("bpf_lxc", &[AGG]),
                ("bpf_host", &[AGG]),
                ("bpf_sock", &[AGG]),
                ("bpf_xdp", &[AGG]),
                ("bpf_overlay", &[AGG]),
            ],
        ),
        ("1.20.0-dev", wireguard, &[("bpf_wireguard", &[AGG])]),
    ];
    for (version, target, expected) in cases {
        let target = target(version);
        let state = state_without_node_config(version, &target);
        let mut o = options(version, target, 16);
        o.state = StateSource::Existing(state.path().join("state"));
        let r = run(&o);
        assert_eq!(r.state.node_config, "missing");
        for (name, macros) in *expected {
            let p = r
                .program(name)
                .unwrap_or_else(|| panic!("{version}: {name} not built"));
            assert!(
                !p.compiled,
                "{version} {name} compiled without node_config.h"
            );
            assert_eq!(&r.missing_header_macros(name), macros, "{version} {name}");
            // Every error of the program is put down to the missing header, and the
            // explanation names the missing file and the dummy it fell through to.
            for f in &p.findings {
                match &f.cause {
                    Cause::GeneratedHeaderMissing { missing, dummy, .. } => {
                        assert!(missing.ends_with("/globals/node_config.h"), "{missing}");
                        assert!(dummy.ends_with("/bpf/node_config.h"), "{dummy}");
                    }
                    other => panic!("{version} {name}: {} explained as {other:?}", f.message),
                }
            }
            // One explanation for the whole set, not one per macro.
            assert_eq!(
                compile::explain::grouped(&p.findings).len(),
                1,
                "{version} {name}"
            );
        }
    }
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn each_agents_node_config_is_judged_as_its_version_and_a_stale_one_is_named() {
    let header = |version: &str| {
        let p = compile::prepare(&options(version, defaults(version), 16)).unwrap();
        std::fs::read_to_string(p.layout.node_config()).unwrap()
    };
    let h16 = header("1.16.15");
    let h18 = header("1.18.3");
    let h20 = header("1.20.0-dev");
    for (h, minor, range) in [
        (&h16, 16, "1.14–1.17"),
        (&h18, 18, "1.17–1.19"),
        (&h20, 20, "1.19 or newer"),
    ] {
        let g = version_guess::judge(h).expect("judged");
        assert!(
            g.contains(minor) && g.label().contains(range),
            "{}",
            g.label()
        );
    }
    // A mix no agent writes: the guess says it cannot tell.
    assert_eq!(version_guess::judge(&format!("{h16}\n{h20}")), None);

    // Each tree compiled against the other version's header, left in a replayed state dir.
    for (tree_version, stale, by) in [
        ("1.16.15", &h18, "1.17–1.19"),
        ("1.18.3", &h16, "1.14–1.17"),
    ] {
        let state = state_without_node_config(tree_version, &defaults(tree_version));
        let node = state.path().join("state/globals/node_config.h");
        std::fs::write(&node, stale).unwrap();
        let mut o = options(tree_version, defaults(tree_version), 16);
        o.state = StateSource::Existing(state.path().join("state"));
        let r = run(&o);
        assert!(
            r.state.node_config.starts_with("stale") && r.state.node_config.contains(by),
            "{tree_version}: {}",
            r.state.node_config
        );
        let failed: Vec<_> = r.programs.iter().filter(|p| !p.compiled).collect();
        assert!(
            !failed.is_empty(),
            "{tree_version}: a stale header breaks the build"
        );
        let mut named = 0;
        for p in failed {
            for f in &p.findings {
                if let Cause::StaleHeader {
                    header,
                    written_by,
                    from_node,
                    ..
                } = &f.cause
                {
                    named += 1;
                    assert_eq!(Path::new(header), node);
                    assert!(written_by.as_deref().is_some_and(|w| w.contains(by)));
                    assert!(*from_node && f.remedy.contains(&format!("rm {}", node.display())));
                }
            }
            // The stale header is named as the cause of this program's errors.
            assert!(
                p.findings
                    .iter()
                    .any(|f| matches!(f.cause, Cause::StaleHeader { .. })),
                "{tree_version} {}: {:#?}",
                p.name,
                p.findings
            );
        }
        assert!(named > 0);
    }
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn k3s_running_flannel_predicts_the_incident_on_the_real_1_16_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nodes/k3s-flannel");
    let mut o = options("1.16.15", defaults("1.16.4"), 16);
    o.state = StateSource::Predict(HostRoot::new(&root));
    let r = run(&o);
    let b = &r.init_blockers;
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        b[0].detail.contains("k3s") && b[0].detail.contains("8472"),
        "{:?}",
        b[0]
    );
    assert!(b[0].evidence.contains("config.yaml") && b[0].evidence.contains("vxlan (k3s default)"));
    assert!(
        b[0].remedy.contains("flannel-backend: none") && b[0].remedy.contains("tunnelPort=8473")
    );
    assert_eq!(r.state.node_config, "missing");
    // The agent regenerates its endpoints: these are the errors it logs.
    assert_eq!(
        r.missing_header_macros("bpf_lxc"),
        ["CALLS_MAP", "ENABLE_ARP_RESPONDER"]
    );
    assert_eq!(
        r.missing_header_macros("bpf_host"),
        ["CALLS_MAP", "ENABLE_ARP_RESPONDER", "MONITOR_AGGREGATION"]
    );
    // Datapath init never gets to the base programs.
    for base in ["bpf_overlay", "bpf_alignchecker"] {
        let n = r.not_built.iter().find(|n| n.name == base).unwrap();
        assert!(n.why.contains("not reached"), "{n:?}");
    }
    // The findings name the node's missing file, never a scratch path.
    for f in r.all_findings() {
        if let Cause::GeneratedHeaderMissing {
            missing,
            dummy,
            init_blockers,
        } = &f.cause
        {
            assert_eq!(
                Path::new(missing),
                root.join("var/run/cilium/state/globals/node_config.h")
            );
            assert!(
                dummy.starts_with(tree("1.16.15").to_str().unwrap()),
                "{dummy}"
            );
            assert!(!init_blockers.is_empty());
        }
        for text in [&f.explanation, &f.remedy] {
            assert!(
                !text.contains("preflight-compile."),
                "scratch path shown: {text}"
            );
        }
        for site in &f.sites {
            assert!(
                !site.contains("preflight-compile."),
                "scratch path shown: {site}"
            );
        }
    }
    // With flannel off in a drop-in, nothing stops init and the same tree compiles.
    let node = tempfile::tempdir().unwrap();
    copy(&root, node.path());
    std::fs::write(
        node.path()
            .join("etc/rancher/k3s/config.yaml.d/90-cilium.yaml"),
        "flannel-backend: none\n",
    )
    .unwrap();
    let mut o = options("1.16.15", defaults("1.16.4"), 16);
    o.state = StateSource::Predict(HostRoot::new(node.path()));
    let r = run(&o);
    assert!(r.init_blockers.is_empty(), "{:?}", r.init_blockers);
    assert!(
        r.programs.iter().all(|p| p.compiled),
        "{:#?}",
        r.programs
            .iter()
            .flat_map(|p| &p.findings)
            .collect::<Vec<_>>()
    );
}

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy(&e.path(), &dest);
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn a_second_run_takes_every_object_from_the_cache_and_a_changed_header_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options("1.18.3", defaults("1.18.3"), 19);
    o.cache = CacheMode::Dir(dir.path().to_path_buf());
    let first = run(&o);
    assert_eq!(first.timings.cached, 0);
    let second = run(&o);
    assert_eq!(second.timings.cached, second.programs.len());
    for (a, b) in first.programs.iter().zip(&second.programs) {
        assert_eq!(
            (a.compiled, &a.object),
            (b.compiled, &b.object),
            "{}",
            a.name
        );
        assert!(b.cached);
    }
    // Another value (another header) is another key: compiled again.
    let mut o2 = options(
        "1.18.3",
        target_with("1.18.3", serde_json::json!({"tunnelPort": 8473})),
        19,
    );
    o2.cache = CacheMode::Dir(dir.path().to_path_buf());
    let third = run(&o2);
    assert!(third.programs.iter().any(|p| !p.cached));
}

/// `run --root` on the k3s-flannel node with the target's own 1.16 tree: the same incident,
/// from the real sources.
#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn run_on_the_k3s_flannel_root_with_the_real_tree_shows_the_incident_coming() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/nodes/k3s-flannel");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_preflight"))
        .env("PREFLIGHT_CACHE_DIR", cache())
        .args([
            "run",
            "--no-canaries",
            "--cilium-version",
            "1.16.4",
            "--root",
        ])
        .arg(&root)
        .arg("--bpf-dir")
        .arg(tree("1.16.15"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |id: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{text}"))
            .to_string()
    };
    assert!(line("compile.init").contains("flannel.1 will hold UDP 8472"));
    let lxc = line("compile.bpf_lxc");
    assert!(
        lxc.contains("macro redefined: CALLS_MAP, ENABLE_ARP_RESPONDER"),
        "{lxc}"
    );
    let host = line("compile.bpf_host");
    assert!(
        host.contains("CALLS_MAP, ENABLE_ARP_RESPONDER, MONITOR_AGGREGATION"),
        "{host}"
    );
    assert!(
        host.contains(tree("1.16.15").join("node_config.h").to_str().unwrap()),
        "{host}"
    );
    assert!(text.contains("flannel-backend: none"));
    assert!(
        !text.contains("preflight-compile."),
        "a scratch path is shown:\n{text}"
    );
}

/// The agent's objects for the chart defaults, with the load-time configuration it would set,
/// through the loader into this kernel's verifier (root only).
#[test]
#[cfg_attr(
    not(shared_cilium_trees),
    ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository"
)]
fn the_agents_objects_load_into_this_kernels_verifier_with_their_load_time_config() {
    // Not root: the kernel is not asked, and every object's report must say so.
    let root = nix::unistd::geteuid().is_root();
    for (version, major) in [("1.16.15", 16), ("1.18.3", 19), ("1.20.0-dev", 19)] {
        let mut o = options(version, defaults(version), major);
        o.verify = true;
        let r = run(&o);
        for p in &r.programs {
            assert!(p.compiled, "{version} {}", p.name);
            if p.name == "bpf_alignchecker" {
                assert!(p.verify.is_none(), "never loaded");
                continue;
            }
            if !root {
                assert!(
                    p.verify.is_none()
                        && p.verify_skipped
                            .as_deref()
                            .is_some_and(|s| s.contains("not root")),
                    "{version} {}: {:?}",
                    p.name,
                    p.verify_skipped
                );
                continue;
            }
            let v = p
                .verify
                .as_ref()
                .unwrap_or_else(|| panic!("{version} {}: {:?}", p.name, p.verify_skipped));
            assert!(
                v.object_error.is_none(),
                "{version} {}: {:?}",
                p.name,
                v.object_error
            );
            assert!(!v.programs.is_empty(), "{version} {}", p.name);
            for prog in &v.programs {
                match &prog.verdict {
                    Verdict::Loaded => {}
                    // A rejection must come with the verifier's own words.
                    Verdict::Rejected { log_tail, .. } => {
                        assert!(
                            !log_tail.trim().is_empty(),
                            "{version} {} {}",
                            p.name,
                            prog.name
                        )
                    }
                    other => panic!("{version} {} {}: {other:?}", p.name, prog.name),
                }
            }
            // 1.18+: every value the agent sets reached a variable the object declares.
            if let Some(c) = &p.load_config {
                assert!(!v.config.applied.is_empty(), "{version} {}", p.name);
                assert!(
                    v.config.unknown.is_empty() && v.config.invalid.is_empty(),
                    "{version} {}: {:?}",
                    p.name,
                    v.config
                );
                assert_eq!(
                    v.config.applied.len(),
                    c.variables.len(),
                    "{version} {}",
                    p.name
                );
            }
        }
    }
}

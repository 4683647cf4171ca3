//! Scenario fixtures for the compile stage, compiled for real with Debian's clang (installed by
//! scripts/setup.sh) and, as root, loaded into the running kernel.
mod common;

use std::path::PathBuf;

use common::{compile_fixture as fixture, is_root};
use preflight::{
    cilium::Target,
    compile::{self, CompileReport, Options, StateSource, explain::Cause},
    host::HostRoot,
};

fn run(scenario: &str, version: &str, clang: Option<&str>, verify: bool) -> CompileReport {
    let mut o = Options::new(Target::chart_defaults(version));
    o.cache = preflight::compile::cache::CacheMode::Dir(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    o.state = StateSource::Predict(HostRoot::new(fixture(scenario)));
    o.clang = clang.map(PathBuf::from);
    o.verify = verify;
    compile::run(&o).expect("compile stage runs")
}

/// The clean node for 1.18: every program compiles with the agent's command line.
fn clean_node_compiles(verify: bool) -> CompileReport {
    let r = run("clean", "1.18.4", None, verify);
    assert_eq!(r.toolchain.toolchain.major, 19, "exact match for 1.18");
    assert!(r.init_blockers.is_empty());
    assert_eq!(r.state.node_config, "present");
    assert_eq!(r.programs.len(), 5);
    for p in &r.programs {
        assert!(p.compiled, "{}: {:#?}", p.name, p.findings);
        assert!(p.findings.is_empty());
        let obj = p.object.as_ref().expect("object inspected");
        assert!(!obj.programs.is_empty() && obj.programs.iter().all(|x| x.insns > 0));
        assert!(obj.sections.contains_key(".maps") && obj.sections.contains_key(".BTF"));
        assert!(p.command.contains("-std=gnu99") && p.command.contains("-Werror"));
    }
    let lxc = r.program("bpf_lxc").unwrap();
    // Include order: globals, template dir, bpf dir, bpf dir/include.
    let globals = lxc.command.find("/state/globals").unwrap();
    let template = lxc.command.find("/state/templates/").unwrap();
    let bpf_include = lxc.command.find("/bpf/include").unwrap();
    assert!(
        globals < template && template < bpf_include,
        "{}",
        lxc.command
    );
    r
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn clean_node_compiles_every_program_in_the_agents_include_order() {
    clean_node_compiles(false);
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "clang-19")),
    ignore = "needs root (the kernel's verifier) and clang-19 (scripts/setup.sh)"
)]
fn clean_node_programs_all_load_into_the_kernel_with_their_tail_calls() {
    common::assert_root();
    let r = clean_node_compiles(true);
    for p in &r.programs {
        let v = p.verify.as_ref().expect("verified as root");
        assert!(v.all_loaded(), "{}: {v:#?}", p.name);
    }
    let tails = &r
        .program("bpf_lxc")
        .unwrap()
        .verify
        .as_ref()
        .unwrap()
        .tail_calls;
    assert!(
        tails.iter().any(|t| t.map == "cilium_calls_65535"
            && t.slot == 7
            && t.program == "tail_handle_ipv4_from_lxc"),
        "{tails:?}"
    );
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn missing_node_config_reproduces_the_redefinitions_and_names_flannel() {
    let r = run("missing-node-config", "1.18.4", None, false);
    assert_eq!(r.state.node_config, "missing");
    assert!(
        r.init_blockers
            .iter()
            .any(|b| b.detail.contains("flannel.1"))
    );
    let subjects = |prog: &str| -> Vec<String> {
        r.program(prog)
            .unwrap()
            .findings
            .iter()
            .filter(|f| f.kind == "macro-redefined")
            .filter_map(|f| f.subject.clone())
            .collect()
    };
    let lxc = subjects("bpf_lxc");
    let host = subjects("bpf_host");
    assert!(lxc.contains(&"CALLS_MAP".into()) && lxc.contains(&"ENABLE_ARP_RESPONDER".into()));
    assert!(
        !lxc.contains(&"MONITOR_AGGREGATION".into()),
        "guarded in lxc: {lxc:?}"
    );
    assert!(
        host.contains(&"MONITOR_AGGREGATION".into()),
        "host: {host:?}"
    );
    assert!(host.contains(&"CALLS_MAP".into()));
    assert!(!r.program("bpf_lxc").unwrap().compiled);
    for f in r.all_findings().filter(|f| f.kind == "macro-redefined") {
        match &f.cause {
            Cause::GeneratedHeaderMissing {
                missing,
                dummy,
                init_blockers,
            } => {
                assert!(missing.ends_with("globals/node_config.h"), "{missing}");
                assert_eq!(dummy, "<built-in templates>/node_config.h");
                assert!(init_blockers.iter().any(|b| b.contains("8472")));
            }
            other => panic!("{}: {} has cause {other:?}", f.program, f.message),
        }
        // Both definition sites: the dummy and the generated ep_config.h (or its note).
        assert_eq!(f.sites.len(), 2, "{:?}", f.sites);
        assert!(f.sites.iter().any(|s| s.contains("node_config.h")));
        assert!(f.sites.iter().any(|s| s.contains("ep_config.h")));
        assert!(f.remedy.contains("init"));
    }
    // Programs without ep_config.h are unaffected on 1.18 sources.
    for p in ["bpf_sock", "bpf_xdp", "bpf_overlay"] {
        assert!(r.program(p).unwrap().compiled, "{p}");
    }
}

#[test]
#[cfg_attr(not(prereq = "clang-16"), ignore = "needs clang-16 (scripts/setup.sh)")]
fn stale_node_config_from_another_version_is_judged_and_explained() {
    let r = run("stale-node-config", "1.16.5", None, false);
    assert_eq!(r.toolchain.toolchain.major, 16, "nearest to 1.16's LLVM 17");
    assert_eq!(r.state.node_config, "stale (written by Cilium 1.18+)");
    let lxc = r.program("bpf_lxc").unwrap();
    assert!(!lxc.compiled);
    let redefined = lxc
        .findings
        .iter()
        .find(|f| f.subject.as_deref() == Some("SNAT_COLLISION_RETRIES"))
        .expect("SNAT_COLLISION_RETRIES redefined");
    assert_eq!(redefined.kind, "macro-redefined");
    let undeclared = lxc
        .findings
        .iter()
        .find(|f| f.kind == "undeclared-identifier")
        .expect("undeclared identifier");
    assert_eq!(undeclared.subject.as_deref(), Some("CT_REPORT_INTERVAL"));
    for f in [redefined, undeclared] {
        match &f.cause {
            Cause::StaleHeader {
                header,
                written_by,
                target,
                from_node,
                ..
            } => {
                assert!(header.ends_with("globals/node_config.h"));
                assert!(*from_node, "the node's leftover header");
                assert_eq!(written_by.as_deref(), Some("Cilium 1.18+"));
                assert_eq!(target, "1.16");
            }
            other => panic!("{other:?}"),
        }
        assert!(f.remedy.contains("rm ") && f.remedy.contains("cleanState"));
    }
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-19", prereq = "clang-16")),
    ignore = "needs clang-19 and clang-16 (scripts/setup.sh)"
)]
fn clang_newer_than_the_targets_llvm_is_called_a_toolchain_mismatch() {
    let r = run("clean", "1.16.5", Some("/usr/bin/clang-19"), false);
    assert!(
        r.toolchain
            .risk
            .as_deref()
            .unwrap()
            .contains("-Wshorten-64-to-32")
    );
    let lxc = r.program("bpf_lxc").unwrap();
    assert!(!lxc.compiled);
    assert!(!lxc.findings.is_empty());
    for f in &lxc.findings {
        assert_eq!(f.kind, "shorten-64-to-32");
        assert_eq!(
            f.cause,
            Cause::ClangTooNew {
                clang_major: 19,
                target: "1.16".into(),
                image_llvm: "17.0.6".into(),
            }
        );
        assert!(f.remedy.contains("clang-16"));
    }
    // The same sources and node with the nearest clang compile: the node is fine.
    let r = run("clean", "1.16.5", Some("/usr/bin/clang-16"), false);
    assert!(r.programs.iter().all(|p| p.compiled));
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-16", prereq = "llc-16")),
    ignore = "needs clang-16 and llc-16 (scripts/setup.sh)"
)]
fn the_1_14_profile_pipes_clang_into_llc() {
    let r = run("clean", "1.14.19", None, false);
    let lxc = r.program("bpf_lxc").unwrap();
    assert!(lxc.command.contains("-emit-llvm") && lxc.command.contains("| "));
    assert!(lxc.command.contains("-D__NR_CPUS__="));
    assert!(r.programs.iter().all(|p| p.compiled), "{:#?}", r.programs);
}

#[test]
#[cfg_attr(not(prereq = "clang-16"), ignore = "needs clang-16 (scripts/setup.sh)")]
fn unknown_cpu_is_explained() {
    // clang 16 knows v1-v3 only; -mcpu=v9 stands in for an ISA newer than the compiler.
    let d = preflight::compile::diag::parse(
        &std::process::Command::new("/usr/bin/clang-16")
            .args([
                "--target=bpf",
                "-mcpu=v9",
                "-fno-color-diagnostics",
                "-c",
                "-x",
                "c",
            ])
            .args(["/dev/null", "-o", "/dev/null"])
            .output()
            .unwrap()
            .stderr
            .iter()
            .map(|b| *b as char)
            .collect::<String>(),
    );
    assert!(
        d.iter().any(|d| d.message == "unknown target CPU 'v9'"),
        "{d:?}"
    );
}

fn checks_for(report: CompileReport) -> Vec<preflight::model::CheckResult> {
    use preflight::{facts::Facts, model::Gathered};
    let empty = tempfile::tempdir().unwrap();
    let mut facts = Facts::from_root(empty.path());
    facts.live = true;
    facts.compile = Gathered::Got(report);
    preflight::checks::run_all(&facts, &Target::default(), &[])
}

fn check<'a>(
    results: &'a [preflight::model::CheckResult],
    id: &str,
) -> &'a preflight::model::CheckResult {
    results
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn run_checks_turn_the_missing_header_scenario_into_a_no_go_with_remedies() {
    use preflight::model::Status;
    let results = checks_for(run("missing-node-config", "1.18.4", None, false));
    let init = check(&results, "compile.init");
    assert_eq!(init.status, Status::Fail);
    assert!(init.remedy.as_deref().unwrap().contains("flannel.1"));
    // docs/upstream.md#the-calls_map-incident: the default 1.19 target stops at init; 1.18 carries
    // on into the dummy headers.
    assert!(
        init.detail.contains("this stops the agent"),
        "{}",
        init.detail
    );
    let report = run("missing-node-config", "1.18.4", None, false);
    let empty = tempfile::tempdir().unwrap();
    let mut facts = preflight::facts::Facts::from_root(empty.path());
    facts.live = true;
    facts.compile = preflight::model::Gathered::Got(report);
    let on_118 = preflight::checks::run_all(&facts, &Target::chart_defaults("1.18.4"), &[]);
    let init_118 = check(&on_118, "compile.init");
    assert!(
        init_118.detail.contains("carries on"),
        "{}",
        init_118.detail
    );
    let lxc = check(&results, "compile.bpf_lxc");
    assert_eq!(lxc.status, Status::Fail);
    assert!(lxc.blocks());
    assert!(
        lxc.detail.contains("node_config.h is missing"),
        "{}",
        lxc.detail
    );
    assert!(lxc.evidence.iter().any(|e| e.contains("ep_config.h")));
    assert_eq!(check(&results, "compile.bpf_sock").status, Status::Pass);
    // Not compiled, so not verified: skip, never fail.
    assert_eq!(
        check(&results, "compile.verifier.bpf_lxc").status,
        Status::Skip
    );
    // Verification was off in this run: the verifier could not tell.
    assert_eq!(
        check(&results, "compile.verifier.bpf_sock").status,
        Status::Unknown
    );
    assert_eq!(check(&results, "compile.toolchain").status, Status::Pass);
    assert!(!preflight::verdict::decide(&Target::default(), &results).go);
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn run_checks_call_a_too_new_clang_a_warning_not_a_node_failure() {
    use preflight::model::Status;
    let results = checks_for(run("clean", "1.16.5", Some("/usr/bin/clang-19"), false));
    assert_eq!(check(&results, "compile.toolchain").status, Status::Warn);
    let lxc = check(&results, "compile.bpf_lxc");
    assert_eq!(lxc.status, Status::Warn, "{}", lxc.detail);
    assert!(lxc.detail.contains("toolchain mismatch"));
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn tunnel_port_from_values_clears_the_flannel_port_conflict_and_reaches_the_header() {
    // Only the port is held in this root (no flannel.1 device): moving tunnelPort avoids it.
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "tunnelPort: 8473\nbpf:\n  monitorAggregation: none\n",
    )
    .unwrap();
    let target = Target::build(&preflight::cilium::TargetSpec {
        cilium_version: Some("1.18.4".parse().expect("a version")),
        value_files: vec![values],
        ..Default::default()
    })
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("proc/net")).unwrap();
    std::fs::copy(
        fixture("missing-node-config").join("proc/net/udp"),
        root.path().join("proc/net/udp"),
    )
    .unwrap();
    let mut o = Options::new(target);
    o.cache = preflight::compile::cache::CacheMode::Dir(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    o.state = StateSource::Predict(HostRoot::new(root.path()));
    o.verify = false;
    let emit = dir.path().join("state");
    o.emit_state = Some(emit.clone());
    let r = compile::run(&o).unwrap();
    assert!(r.init_blockers.is_empty(), "{:?}", r.init_blockers);
    assert!(r.programs.iter().all(|p| p.compiled));
    let node = std::fs::read_to_string(emit.join("globals/node_config.h")).unwrap();
    assert!(node.contains("#define TUNNEL_PORT 8473"), "{node}");
    let templates = std::fs::read_dir(emit.join("templates"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let ep = std::fs::read_to_string(templates.path().join("ep_config.h")).unwrap();
    assert!(ep.contains("#define MONITOR_AGGREGATION 0"), "{ep}");
}

/// Kernel helper numbers as include/bpf/helpers.h calls them (the kernel's `BPF_FUNC_*` ABI).
const REDIRECT_NEIGH: u32 = 152;
const REDIRECT_PEER: u32 = 155;
const CSUM_LEVEL: u32 = 135;
const JIFFIES64: u32 = 118;
const GET_NETNS_COOKIE: u32 = 122;

/// Probe results for a node with or without the 5.10 forwarding helpers (and csum_level,
/// get_netns_cookie for cgroup hooks, 5.7; jiffies64, 5.5), as on a 5.4 kernel that Cilium
/// 1.16/1.17 still support.
fn probes(helpers_present: bool) -> preflight::probe::ProbeReport {
    let h = helpers_present;
    preflight::probe::ProbeReport::stated(
        &[
            ("sched_cls", "redirect_neigh", h),
            ("sched_cls", "redirect_peer", h),
            ("sched_cls", "csum_level", h),
            ("sched_cls", "jiffies64", h),
            ("cgroup_sock_addr", "get_netns_cookie", h),
        ],
        &[("isa_v2", true)],
    )
}

/// Compiles the clean node for `version` with `values` over the chart defaults and the given
/// probe results; returns the report and the node_config.h the compile used.
fn compile_with(
    version: &str,
    values: serde_json::Value,
    probes: Option<preflight::probe::ProbeReport>,
) -> (CompileReport, String) {
    let mut o = Options::new(Target::chart_defaults(version).with_patch(&values));
    o.cache = preflight::compile::cache::CacheMode::Dir(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    o.state = StateSource::Predict(HostRoot::new(fixture("clean")));
    o.clang = Some(PathBuf::from("/usr/bin/clang-19"));
    o.probes = probes;
    o.verify = is_root();
    let emit = tempfile::tempdir().unwrap();
    o.emit_state = Some(emit.path().join("state"));
    let r = compile::run(&o).expect("compile stage runs");
    let node = std::fs::read_to_string(emit.path().join("state/globals/node_config.h")).unwrap();
    for p in &r.programs {
        assert!(p.compiled, "{}: {:#?}", p.name, p.findings);
        // As root the kernel has its say too: whichever path was compiled must load.
        if is_root() {
            let v = p.verify.as_ref().expect("verified as root");
            assert!(v.all_loaded(), "{}: {v:#?}", p.name);
        }
    }
    (r, node)
}

fn calls(r: &CompileReport, program: &str) -> Vec<u32> {
    r.program(program)
        .unwrap()
        .object
        .as_ref()
        .expect("object inspected")
        .helper_calls
        .clone()
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn kernel_without_the_forwarding_helpers_compiles_legacy_host_routing_like_the_agent() {
    let values = serde_json::json!({"kubeProxyReplacement": true, "bpf": {"masquerade": true}});

    // A 5.10+ kernel: NodePort and BPF host routing, and the objects use both helpers.
    let (r, node) = compile_with("1.17.4", values.clone(), Some(probes(true)));
    assert!(node.contains("#define ENABLE_NODEPORT 1"), "{node}");
    assert!(node.contains("#define ENABLE_HOST_ROUTING 1"), "{node}");
    assert!(r.features.host_routing && r.features.have["HAVE_FIB_NEIGH"]);
    assert!(r.features_written);
    let lxc = calls(&r, "bpf_lxc");
    assert!(
        lxc.contains(&REDIRECT_PEER) && lxc.contains(&REDIRECT_NEIGH),
        "{lxc:?}"
    );
    assert!(calls(&r, "bpf_host").contains(&REDIRECT_NEIGH));
    let overlay = calls(&r, "bpf_overlay");
    assert!(overlay.contains(&REDIRECT_PEER) && overlay.contains(&CSUM_LEVEL));
    assert!(lxc.contains(&JIFFIES64), "{lxc:?}");
    assert!(calls(&r, "bpf_sock").contains(&GET_NETNS_COOKIE));

    // The same values on a kernel without them (5.4-5.9): the agent falls back to legacy host
    // routing and the feature headers claim nothing, so no object calls a missing helper.
    let (r, node) = compile_with("1.17.4", values, Some(probes(false)));
    assert!(node.contains("#define ENABLE_NODEPORT 1"), "{node}");
    assert!(!node.contains("ENABLE_HOST_ROUTING"), "{node}");
    assert!(!r.features.host_routing);
    assert!(r.features.host_routing_reason.contains("falls back"));
    assert!(r.features.have.values().all(|on| !on));
    for p in ["bpf_lxc", "bpf_host", "bpf_overlay", "bpf_sock"] {
        let c = calls(&r, p);
        for h in [
            REDIRECT_NEIGH,
            REDIRECT_PEER,
            CSUM_LEVEL,
            JIFFIES64,
            GET_NETNS_COOKIE,
        ] {
            assert!(!c.contains(&h), "{p} calls helper {h}: {c:?}");
        }
    }
    // Without bpf_redirect_neigh, NodePort resolves next hops from the agent's neighbour map.
    let host = r.program("bpf_host").unwrap().object.as_ref().unwrap();
    assert!(
        host.maps.contains(&"cilium_nodeport_neigh4".to_string()),
        "{:?}",
        host.maps
    );

    // bpf.hostLegacyRouting=true on a kernel with the helpers: pods are reached through the
    // host stack (no redirect_peer), while NodePort still lets the kernel resolve neighbours.
    let legacy = serde_json::json!({
        "kubeProxyReplacement": true,
        "bpf": {"masquerade": true, "hostLegacyRouting": true}
    });
    let (r, node) = compile_with("1.17.4", legacy, Some(probes(true)));
    assert!(!node.contains("ENABLE_HOST_ROUTING"), "{node}");
    assert!(r.features.host_routing_reason.contains("hostLegacyRouting"));
    let lxc = calls(&r, "bpf_lxc");
    assert!(
        !lxc.contains(&REDIRECT_PEER) && !lxc.contains(&REDIRECT_NEIGH),
        "{lxc:?}"
    );
    assert!(!calls(&r, "bpf_overlay").contains(&REDIRECT_PEER));
    assert!(calls(&r, "bpf_host").contains(&REDIRECT_NEIGH));
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn kube_proxy_replacement_selects_the_nodeport_program() {
    let nodeport_nat = |r: &CompileReport| {
        r.program("bpf_host")
            .unwrap()
            .object
            .as_ref()
            .unwrap()
            .programs
            .iter()
            .any(|p| p.name == "tail_nodeport_nat_ipv4")
    };
    let (r, node) = compile_with("1.18.4", serde_json::json!({}), Some(probes(true)));
    assert!(!node.contains("ENABLE_NODEPORT"), "{node}");
    assert!(!r.features.host_routing && !nodeport_nat(&r));
    let kpr = serde_json::json!({"kubeProxyReplacement": true});
    let (r, node) = compile_with("1.18.4", kpr, Some(probes(true)));
    assert!(node.contains("#define ENABLE_NODEPORT 1"), "{node}");
    assert!(nodeport_nat(&r));
}

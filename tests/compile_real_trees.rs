//! The real datapath: unmodified Cilium trees (../shared/cilium: 1.16.15, 1.18.3, 1.20.0-dev,
//! test data outside the repository) compiled the way their agent compiles them, with Debian's
//! clang 14, 16 and 19 (scripts/setup.sh). The trees are extracted into a temp dir once per
//! run; objects are shared between the tests through one object cache, so a cell compiled by
//! one test is not compiled again by another. Without ../shared these tests are ignored (the
//! build script sets `cfg(shared_cilium)`), and `cargo test` lists them as ignored.
#![cfg_attr(not(shared_cilium), allow(dead_code, unused_imports))]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use preflight::{
    cilium::Target,
    compile::{
        self, CompileReport, Options, StateSource, cache::CacheMode, explain::Cause,
        version_guess,
    },
    host::HostRoot,
};

const VERSIONS: &[&str] = &["1.16.15", "1.18.3", "1.20.0-dev"];
const NO_SHARED: &str = "../shared/cilium is absent: the real Cilium trees are test data outside the repository";

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
#[cfg_attr(not(shared_cilium), ignore = "../shared/cilium is absent: the real Cilium trees are test data outside the repository")]
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
            assert!(!failed.is_empty(), "{cell}: expected -Wshorten-64-to-32 failures");
            for p in failed {
                assert!(!p.findings.is_empty(), "{cell}: {} unexplained", p.name);
                for f in &p.findings {
                    assert!(
                        matches!(&f.cause, Cause::ClangTooNew { image_llvm, clang_major: 19, .. } if image_llvm == "17.0.6"),
                        "{cell}: {}: {:?}",
                        p.name,
                        f
                    );
                    assert!(f.explanation.contains("clang too new") && f.explanation.contains("17.0.6"));
                }
            }
        }
    }
}

#[test]
#[ignore = "exploration"]
fn explore_missing() {
    for version in VERSIONS {
        for values in [
            serde_json::json!({"kubeProxyReplacement": true, "loadBalancer": {"acceleration": "native"}}),
            serde_json::json!({"kubeProxyReplacement": true, "routingMode": "native", "ipv4NativeRoutingCIDR": "10.0.0.0/8", "encryption": {"enabled": true, "type": "wireguard"}}),
            serde_json::json!({"encryption": {"enabled": true, "type": "ipsec"}}),
        ] {
            let emitted = tempfile::tempdir().unwrap();
            let mut o = options(version, with(version, values.clone()), 16);
            o.emit_state = Some(emitted.path().join("state"));
            let r = run(&o);
            eprintln!("{version} {values}: clean: {:?}", r.programs.iter().map(|p| (p.name.clone(), p.compiled, p.findings.iter().map(|f| f.subject.clone().unwrap_or_default()).collect::<Vec<_>>())).collect::<Vec<_>>());
            std::fs::remove_file(emitted.path().join("state/globals/node_config.h")).unwrap();
            o.emit_state = None;
            o.state = StateSource::Existing(emitted.path().join("state"));
            let r = run(&o);
            for p in &r.programs {
                eprintln!("  {} compiled={} missing={:?} other={:?}", p.name, p.compiled, r.missing_header_macros(&p.name), p.findings.iter().filter(|f| !matches!(f.cause, Cause::GeneratedHeaderMissing{..})).map(|f| format!("{} {:?} {:?}", f.kind, f.subject, f.cause)).collect::<Vec<_>>());
                eprintln!("    {}", p.command);
            }
        }
    }
}

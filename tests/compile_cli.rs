//! `preflight compile` end to end: exit codes, --emit-state / --state-dir replay, bad input, and
//! a program the kernel's verifier rejects (as root).
use std::{path::Path, process::Command};

use preflight::compile::{self, Options, elf::Verdict, tree};

/// The binary with its object cache under cargo's scratch dir (not /var/cache/preflight).
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_preflight"));
    c.env(
        "PREFLIGHT_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    c
}

fn preflight(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().args(args).output().expect("run preflight");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-16", prereq = "clang-19")),
    ignore = "needs clang-16 and clang-19 (scripts/setup.sh)"
)]
fn emitted_state_replays_and_a_stale_replay_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let (code, out, err) = preflight(&["compile", "--no-verify", "--emit-state", s]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("bpf_lxc") && out.contains("compiled"));
    assert!(state.join("globals/node_config.h").is_file());
    assert!(state.join("netdev_config.h").is_file());
    let templates: Vec<_> = std::fs::read_dir(state.join("templates"))
        .unwrap()
        .collect();
    assert_eq!(templates.len(), 1);
    // Same state, same version: compiles again.
    let (code, _, err) = preflight(&["compile", "--no-verify", "--state-dir", s]);
    assert_eq!(code, Some(0), "{err}");
    // The 1.18 state under a 1.16 target: no-go, explained as a stale header, in JSON too.
    let (code, out, _) = preflight(&[
        "compile",
        "--no-verify",
        "--state-dir",
        s,
        "--cilium-version",
        "1.16.5",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lxc = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bpf_lxc")
        .unwrap();
    assert_eq!(lxc["compiled"], false);
    assert!(
        lxc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["cause"] == "stale-header" && f["written_by"] == "Cilium 1.18+"),
        "{lxc}"
    );
}

#[test]
#[cfg_attr(
    not(all(prereq = "clang-16", prereq = "clang-19", prereq = "libclang-19")),
    ignore = "needs clang-16, clang-19 and libclang1-19 (scripts/setup.sh)"
)]
fn the_text_output_says_where_the_diagnostics_came_from() {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/compile/missing-node-config/root"
    );
    let args = ["compile", "--no-verify", "--as-node", "--root", root];
    let (code, out, err) = preflight(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("diagnostics from libclang 19\n"), "{out}");
    // A library that is not there (PREFLIGHT_LIBCLANG, as --libclang): the text parser, said so,
    // and the same root cause.
    let out = bin()
        .args(args)
        .env("PREFLIGHT_LIBCLANG", "/nonexistent/libclang.so.1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("diagnostics from clang text output (not libclang: libclang /nonexistent/libclang.so.1: No such file"),
        "{text}"
    );
    assert!(text.contains("[macro redefined: CALLS_MAP"), "{text}");
    assert!(text.contains("node_config.h is missing"), "{text}");
}

#[test]
fn bad_input_exits_2_and_names_it() {
    let (code, _, err) = preflight(&["compile", "--cilium-version", "latest"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("latest"), "{err}");
    let (code, _, err) = preflight(&["compile", "--bpf-dir", "/nonexistent/bpf"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/bpf"), "{err}");
    let (code, _, err) = preflight(&["compile", "--clang", "/bin/true"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/bin/true: not a runnable clang"), "{err}");
    let (code, _, err) = preflight(&["compile", "--values", "/nonexistent/values.yaml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("values.yaml"), "{err}");
    // A values file with a syntax error: named with its line, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("values.yaml");
    std::fs::write(&bad, "tunnelPort: 8473\nrouting: [unclosed\n").unwrap();
    let (code, _, err) = preflight(&["compile", "--values", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("values.yaml"), "{err}");
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "clang-16", prereq = "clang-19")),
    ignore = "needs root (the kernel's verifier) and clang-16, clang-19 (scripts/setup.sh)"
)]
fn a_program_the_verifier_rejects_becomes_a_finding_with_the_log_tail() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "built as root but running unprivileged"
    );
    let dir = tempfile::tempdir().unwrap();
    tree::unpack(dir.path(), 18).unwrap();
    // Reads the packet without a bounds check: compiles, but the verifier must refuse it.
    std::fs::write(
        dir.path().join("bpf_xdp.c"),
        "#include <node_config.h>\n#include <bpf/api.h>\n\
         __section_xdp\nint cil_xdp_entry(struct xdp_md *ctx)\n{\n\
         \treturn *(__u8 *)(long)ctx->data;\n}\nBPF_LICENSE(\"GPL\");\n",
    )
    .unwrap();
    let mut o = Options::new(preflight::cilium::Target::default());
    o.cache = preflight::compile::cache::CacheMode::Dir(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects"),
    );
    o.bpf_dir = Some(dir.path().to_path_buf());
    let r = compile::run(&o).unwrap();
    let xdp = r.program("bpf_xdp").unwrap();
    assert!(xdp.compiled, "{:#?}", xdp.findings);
    let v = xdp.verify.as_ref().unwrap();
    let rejected: Vec<_> = v.rejected().collect();
    assert_eq!(rejected.len(), 1);
    let Verdict::Rejected { log_tail, .. } = &rejected[0].verdict else {
        unreachable!()
    };
    assert!(log_tail.contains("invalid access to packet"), "{log_tail}");
    // The rest of the tree still loads.
    assert!(
        r.program("bpf_lxc")
            .unwrap()
            .verify
            .as_ref()
            .unwrap()
            .all_loaded()
    );
}

/// The seed incident, predicted before anything is installed: `run --root` on a k3s node that
/// still runs flannel, Cilium 1.16.4, with the built-in templates.
#[test]
#[cfg_attr(
    not(all(prereq = "clang-16", prereq = "clang-19")),
    ignore = "needs clang-16 and clang-19 (scripts/setup.sh)"
)]
fn run_on_a_k3s_flannel_root_shows_the_incident_coming_with_cause_and_fix() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/nodes/k3s-flannel");
    let (code, out, err) = preflight(&[
        "run",
        "--no-canaries",
        "--root",
        root,
        "--cilium-version",
        "1.16.4",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert_k3s_incident(&out);
    // Only the verifier load needs the live kernel: skipped, and it says so.
    let (_, json, _) = preflight(&[
        "run",
        "--no-canaries",
        "--root",
        root,
        "--cilium-version",
        "1.16.4",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let check = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "compile.verifier.bpf_sock")
        .unwrap();
    assert_eq!(check["status"], "skip", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("the verifier load needs the live kernel"),
        "{check}"
    );
}

/// What `run` must say on that node, whichever tree it compiled.
pub fn assert_k3s_incident(out: &str) {
    let line = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{out}"))
            .to_string()
    };
    // The cause: init fails on the tunnel port flannel.1 will hold, before node_config.h.
    let init = line("compile.init");
    assert!(
        init.starts_with("  FAIL") && init.contains("flannel.1 will hold UDP 8472"),
        "{init}"
    );
    assert!(init.contains("before writing node_config.h"), "{init}");
    // The macro errors the agent would log, per program, each explanation once.
    for (program, macros) in [
        (
            "compile.bpf_lxc",
            "macro redefined: CALLS_MAP, ENABLE_ARP_RESPONDER",
        ),
        ("compile.bpf_host", "MONITOR_AGGREGATION"),
    ] {
        let l = line(program);
        assert!(l.starts_with("  FAIL") && l.contains(macros), "{l}");
        assert_eq!(
            l.matches("is missing, so the include path").count(),
            1,
            "{l}"
        );
    }
    // The fix, and the plan's order.
    assert!(
        out.contains("fix: turn k3s's flannel off first: flannel-backend: none"),
        "{out}"
    );
    assert!(out.contains("--set tunnelPort=8473"), "{out}");
    assert!(
        !out.contains("preflight-compile."),
        "a scratch path is shown:\n{out}"
    );
}

/// `--cilium-version 1.20` compiles end to end with 1.20's facts from the release table (the
/// 1.18+ flags, LLVM 19); the version is written as given. Needs clang-19 (scripts/setup.sh).
#[test]
fn cilium_1_20_compiles_with_its_own_facts() {
    let (code, out, err) = preflight(&[
        "compile",
        "--no-verify",
        "--cilium-version",
        "1.20",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cilium_version"], "1.20");
    let text = v.to_string();
    assert!(
        text.contains("-std=gnu99") && text.contains("-ftrap-function=__undefined_trap"),
        "{text}"
    );
    let (code, _, err) = preflight(&["compile", "--no-verify", "--cilium-version", "1.21"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not a version preflight knows"), "{err}");
}

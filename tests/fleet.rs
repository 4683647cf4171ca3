//! `preflight aggregate` and `preflight job` as a user runs them: the real binary on the
//! fixture reports (real reports from the 6.1/6.12 guests of `cargo xtask vm-test` and this
//! machine's 6.18 kernel, plus a `kubectl logs --prefix` capture).
use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn preflight(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_preflight"))
        .args(args)
        .current_dir(fixtures())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn the_fixture_cluster_is_no_go_with_nodes_grouped_by_what_blocks_them() {
    let out = preflight(&["aggregate", "--format", "json", "reports"], None);
    assert_eq!(out.status.code(), Some(1), "no-go exits 1");
    let v = json(&out);
    assert_eq!(v["nodes"], 6);
    assert_eq!(v["nodes_go"], 2);
    assert_eq!(v["go"], false);
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups[0]["go"], true);
    assert_eq!(
        groups[0]["nodes"],
        serde_json::json!(["dev-6.18", "worker-1"])
    );
    assert_eq!(
        groups[1]["blocked_by"],
        serde_json::json!(["bpf.helper.sched_cls.get_netns_cookie"])
    );
    assert_eq!(groups[1]["count"], 4);
    let cap = |name: &str| {
        v["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["capability"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(cap("base-datapath")["go"], false);
    assert_eq!(cap("tunnel-vxlan")["go"], true);
    // The vm-test guests (and the log's copies of them) ran with --need netkit; the 6.18 host
    // and its copy did not, so the cluster cannot be go for netkit.
    assert_eq!(cap("netkit")["nodes_not_evaluated"], 2);
    assert_eq!(cap("netkit")["go"], false);
    // Three WARN lines and one kubectl error line in the log capture; blank lines are not noise.
    assert_eq!(v["noise_lines"], 4);
}

#[test]
fn kubectl_logs_on_stdin_are_read_and_the_text_names_the_groups() {
    let logs = std::fs::read(fixtures().join("reports/kubectl-logs-prefixed.txt")).unwrap();
    let out = preflight(&["aggregate", "-"], Some(&logs));
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NO-GO: 2 of 3 nodes are no-go"), "{text}");
    assert!(text.contains("go (1 nodes; kernels 6.18"), "{text}");
    assert!(
        text.contains("blocked by bpf.helper.sched_cls.get_netns_cookie (2 nodes"),
        "{text}"
    );
}

#[test]
fn another_schema_version_and_a_cut_off_report_are_refused_with_exit_2() {
    let out = preflight(&["aggregate", "reports-other-schema"], None);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reports-other-schema/node-schema-v2.json:1: schema_version 2"),
        "{text}"
    );
    assert!(
        text.contains("reports-other-schema/node-cut-off.json:1: report is cut off"),
        "{text}"
    );
    assert!(
        text.contains("old-node"),
        "the readable report still counts: {text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 reports refused"));
}

#[test]
fn no_reports_and_a_missing_path_are_errors() {
    let out = preflight(&["aggregate", "-"], Some(b"just log noise\n"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node reports"));
    let out = preflight(&["aggregate", "does-not-exist.json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.json"));
}

#[test]
fn job_prints_a_daemonset_with_the_target_flags_passed_through() {
    let out = preflight(
        &[
            "job",
            "--namespace",
            "ops",
            "--need",
            "wireguard",
            "--",
            "--ignore",
            "bpf.x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("kind: DaemonSet"), "{yaml}");
    assert!(yaml.contains("namespace: ops"), "{yaml}");
    for arg in ["- --host-kernel", "- wireguard", "- bpf.x", "- json-line"] {
        assert!(yaml.contains(arg), "{arg} missing: {yaml}");
    }
    assert!(!yaml.contains("privileged: true"), "{yaml}");
}

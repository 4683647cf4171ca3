//! Without privileges (issue 12): `probe` exits 2 with one line saying why, nothing reads
//! "available" that the kernel did not prove to this process (`sk_storage` did, as `nobody`),
//! and `compile` does not exit 0 when the verifier could not be asked. Run as `nobody` through
//! setpriv(1) from a root test; listed as ignored, with the reason, when not root or without
//! setpriv.
mod common;

use common::Nobody;

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "setpriv")),
    ignore = "needs root and setpriv(1) to run as nobody"
)]
fn probe_as_nobody_is_undecided_in_one_line() {
    let n = Nobody::new();
    let m = n.run(&["probe"]);
    assert_eq!(m.code, Some(2), "{}", m.describe());
    assert!(m.stdout.is_empty(), "{}", m.describe());
    let lines: Vec<&str> = m.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", m.describe());
    assert!(
        lines[0].contains("not privileged")
            && lines[0].contains("CAP_BPF")
            && lines[0].contains("nothing was probed"),
        "{}",
        m.describe()
    );
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "setpriv")),
    ignore = "needs root and setpriv(1) to run as nobody"
)]
fn run_as_nobody_claims_no_bpf_feature_it_could_not_prove() {
    let n = Nobody::new();
    let m = n.run(&["run", "--no-compile", "--no-canaries", "--format", "json"]);
    assert_eq!(m.code, Some(2), "undecided\n{}", m.describe());
    let report: serde_json::Value = serde_json::from_str(&m.stdout).unwrap();
    let checks = report["checks"].as_array().expect("checks");
    let bpf: Vec<_> = checks
        .iter()
        .filter(|c| {
            let id = c["id"].as_str().unwrap_or_default();
            id.starts_with("bpf.") && !id.starts_with("bpf.misc.")
        })
        .collect();
    assert!(!bpf.is_empty());
    let claimed: Vec<_> = bpf
        .iter()
        .filter(|c| c["status"] == "pass")
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(claimed.is_empty(), "passed without a proof: {claimed:?}");
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "setpriv", prereq = "clang-19")),
    ignore = "needs root, setpriv(1) and clang-19 (scripts/setup.sh)"
)]
fn compile_as_nobody_without_the_verifier_is_not_a_pass() {
    let n = Nobody::new();
    let m = n.run(&["compile", "--jobs", "2"]);
    assert_eq!(m.code, Some(2), "{}", m.describe());
    assert!(
        m.stderr.contains("verifier was not asked"),
        "{}",
        m.describe()
    );
    let m = n.run(&["compile", "--jobs", "2", "--no-verify"]);
    assert_eq!(
        m.code,
        Some(0),
        "the compile alone was asked for\n{}",
        m.describe()
    );
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "setpriv")),
    ignore = "needs root and setpriv(1) to run as nobody"
)]
fn unprivileged_run_is_undecided_exit_2_with_unknown_checks() {
    let out = Nobody::new().run(&["run", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(out.code, Some(2), "verdict: {}", v["verdict"]);
    assert_eq!(v["verdict"]["decided"], false);
    let checks = v["checks"].as_array().unwrap();
    let status_of = |id: &str| checks.iter().find(|c| c["id"] == id).unwrap()["status"].clone();
    assert_eq!(status_of("bpf.prog_type.sched_cls"), "unknown");
    assert_eq!(status_of("attach.tc"), "unknown");
    // Failing for lack of privilege is forbidden; facts that fail for everyone (a kernel config
    // option that is not set) fail as root too.
    let as_root = common::json(
        &common::bin()
            .args(["run", "--format", "json"])
            .output()
            .unwrap(),
    );
    let failing = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let only_unprivileged: Vec<_> = failing(&v)
        .difference(&failing(&as_root))
        .cloned()
        .collect();
    assert!(
        only_unprivileged.is_empty(),
        "no check may fail for lack of privilege: {only_unprivileged:?}"
    );
}

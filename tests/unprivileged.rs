//! Without privileges (issue 12): `probe` exits 2 with one line saying why, nothing reads
//! "available" that the kernel did not prove to this process (`sk_storage` did, as `nobody`),
//! and `compile` does not exit 0 when the verifier could not be asked. Run as `nobody` through
//! setpriv(1) from a root test; skipped, saying so, when not root or without setpriv.
mod common;

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use common::measure::{Measured, measure};

/// The binary copied where `nobody` can run it (the target dir may be closed to it).
struct AsNobody {
    _dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

fn as_nobody() -> Option<AsNobody> {
    if !common::is_root() {
        eprintln!("SKIP: needs root to switch to nobody");
        return None;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIP: no setpriv(1) (util-linux)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("preflight");
    std::fs::copy(env!("CARGO_BIN_EXE_preflight"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(AsNobody { _dir: dir, bin })
}

impl AsNobody {
    fn run(&self, args: &[&str]) -> Measured {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&self.bin)
        .args(args)
        .current_dir("/")
        .env("TMPDIR", "/tmp")
        .stdin(std::process::Stdio::null());
        measure(c, Duration::from_secs(300))
    }
}

#[test]
fn probe_as_nobody_is_undecided_in_one_line() {
    let Some(n) = as_nobody() else { return };
    let m = n.run(&["probe"]);
    assert_eq!(m.code, Some(2), "{}", m.describe());
    assert!(m.stdout.is_empty(), "{}", m.describe());
    let lines: Vec<&str> = m.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", m.describe());
    assert!(
        lines[0].contains("not privileged") && lines[0].contains("CAP_BPF"),
        "{}",
        m.describe()
    );
}

#[test]
fn run_as_nobody_claims_no_bpf_feature_it_could_not_prove() {
    let Some(n) = as_nobody() else { return };
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
fn compile_as_nobody_without_the_verifier_is_not_a_pass() {
    let Some(n) = as_nobody() else { return };
    let m = n.run(&["compile", "--jobs", "2"]);
    if m.stderr.contains("clang") && m.code == Some(2) && !m.stderr.contains("verifier") {
        eprintln!("SKIP: no usable clang\n{}", m.describe());
        return;
    }
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

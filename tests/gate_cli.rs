//! `preflight gate` refuses what it cannot do before it downloads or boots anything, with exit
//! 2 and a message naming the problem. The gate itself (two Debian kernels booted under qemu
//! by the shipped static binary) runs in scripts/dist-check.sh, where that binary is built.
mod common;

use common::bin;

fn gate(args: &[&str]) -> (Option<i32>, String) {
    let out = bin().arg("gate").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty(), "printed before refusing");
    (out.status.code(), stderr)
}

#[test]
fn one_kernel_is_refused() {
    let (code, stderr) = gate(&["--kernel", "6.1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("at least two kernels"), "{stderr}");
}

#[test]
fn a_dynamically_linked_preflight_refuses_to_be_the_guests_binary() {
    // The test binary is the debug build: linked against the shared glibc, it cannot run in
    // the guest, and the gate says which binary to use instead of downloading kernels first.
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = gate(&[
        "--kernel",
        "6.1",
        "--kernel",
        "6.12",
        "--cache",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("dynamically linked") && stderr.contains("--guest-binary"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "cache touched"
    );
}

#[test]
fn a_bad_values_file_is_refused_by_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "cluster:\n  name: [a\n").unwrap();
    let (code, stderr) = gate(&[
        "--kernel",
        "6.1",
        "--kernel",
        "6.12",
        "-f",
        values.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("values.yaml:"), "{stderr}");
}

#[test]
fn a_guest_binary_of_another_architecture_is_refused_before_any_download() {
    // This machine's preflight for guests of the other architecture: refused by its ELF
    // header, naming the artifact to give, before a kernel or busybox is fetched.
    let other = if cfg!(target_arch = "aarch64") {
        "amd64"
    } else {
        "arm64"
    };
    let dir = tempfile::tempdir().unwrap();
    let me = env!("CARGO_BIN_EXE_preflight");
    let (code, stderr) = gate(&[
        "--arch",
        other,
        "--guest-binary",
        me,
        "--kernel",
        "6.1",
        "--kernel",
        "6.12",
        "--cache",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("another architecture")
            && stderr.contains(&format!("target/dist/{other}/preflight")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "cache touched"
    );
}

#[test]
fn help_names_the_kernel_forms_and_the_exit_codes() {
    let out = bin().args(["gate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    for needle in [
        ".deb",
        "vmlinuz",
        "linux-image-",
        "--cilium-version",
        "Exit codes",
        "--arch",
    ] {
        assert!(help.contains(needle), "{needle} missing:\n{help}");
    }
}

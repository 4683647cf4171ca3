//! Shared helpers for the integration tests: the built binary, fixtures, root, the run as
//! `nobody`.
//!
//! A test that needs something this machine may lack is gated at build time, visibly:
//! `#[cfg_attr(not(prereq = "root"), ignore = "needs root ...")]` (preflight/build.rs sets
//! `prereq = "root" | "clang-19" | "clang-16" | "llc-16" | "libclang-19" | "libclang-16" |
//! "setpriv" | "proc-config"`). It is then listed and counted as ignored, with the reason, and
//! never passes by returning early. The `assert_*` helpers catch a binary built as root and run
//! as someone else: the test fails, saying so.
#![allow(dead_code)] // each test binary uses a different subset

pub mod measure;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use measure::{Measured, measure};

/// The built binary, with its object cache in cargo's scratch dir for tests (not the
/// machine's /var/cache/preflight).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_preflight"));
    c.env("PREFLIGHT_CACHE_DIR", test_cache_dir());
    c
}

/// Where tests keep compiled objects: under the target dir, shared by the test binaries.
pub fn test_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("preflight-objects")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// For a test gated on `prereq = "root"`: fails (never skips) when the binary runs unprivileged.
pub fn assert_root() {
    assert!(
        is_root(),
        "built as root (cfg prereq = \"root\") but running as uid {}: run as root, or rebuild as \
         this user so the test is listed as ignored",
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() }
    );
}

/// For a test gated on a tool: fails (never skips) when it vanished since the build.
pub fn assert_tool(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} was there when the tests were built but is gone: run scripts/setup.sh"
    );
}

/// The root of a compile scenario under fixtures/compile/.
pub fn compile_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/compile")
        .join(name)
        .join("root")
}

pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); stderr: {}\nstdout: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The binary copied where `nobody` can run it (the target dir may be closed to it, as under
/// /root in CI), run through setpriv(1) with no capabilities. Needs root and setpriv: gate the
/// test on `all(prereq = "root", prereq = "setpriv")`.
pub struct Nobody {
    _dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Nobody {
    pub fn new() -> Nobody {
        assert_root();
        assert_tool("/usr/bin/setpriv");
        let dir = tempfile::tempdir().expect("scratch dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod scratch dir");
        let bin = dir.path().join("preflight");
        // Copied by cp(1), not std::fs::copy: a write fd open in this process would be
        // inherited by a child another test thread forks at that moment, and exec of the copy
        // then fails with ETXTBSY ("Text file busy") until that child execs.
        let copied = std::process::Command::new("cp")
            .arg(env!("CARGO_BIN_EXE_preflight"))
            .arg(&bin)
            .status()
            .expect("run cp");
        assert!(copied.success(), "copy the binary: {copied}");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the binary");
        Nobody { _dir: dir, bin }
    }

    pub fn run(&self, args: &[&str]) -> Measured {
        let mut c = Command::new("/usr/bin/setpriv");
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
        .stdin(Stdio::null());
        measure(c, Duration::from_secs(300))
    }
}

/// Every tool the migration runs, which the migration tests put stand-ins for first on PATH
/// (tests/standins; what they stand in for: docs/migration.md).
pub const MIGRATION_TOOLS: [&str; 12] = [
    "helm",
    "kubectl",
    "systemctl",
    "ip",
    "mount",
    "sysctl",
    "modprobe",
    "firewall-cmd",
    "rc-service",
    "iptables-save",
    "iptables",
    "iptables-restore",
];

/// Writes `script` as an executable stand-in for each of `tools` into `bin`.
pub fn install_standins(bin: &Path, tools: &[&str], script: &str) {
    std::fs::create_dir_all(bin).expect("create the stand-in bin dir");
    for tool in tools {
        let path = bin.join(tool);
        std::fs::write(&path, script).expect("write a stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod a stand-in");
    }
}

//! Shared helpers for the integration tests: the built binary, root detection, skips that say why.
#![allow(dead_code)] // each test binary uses a different subset

pub mod measure;

use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_preflight"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns early from a privileged test when not root, saying so on stderr (shown by cargo).
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            eprintln!(
                "SKIP {}: needs root (real bpf(), namespaces, cgroups)",
                module_path!()
            );
            return;
        }
    };
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

//! How every subcommand treats its standard output: a reader that goes away early
//! (`preflight probe --all | head -1`) ends the output quietly with the command's own exit code,
//! a stdout that cannot be written is an error (exit 2), and each subcommand offers only the
//! formats it can print. No root needed: unprivileged probes answer "unknown" just as fast.
mod common;

use std::{
    path::PathBuf,
    process::{Output, Stdio},
};

use common::bin;

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_str()
        .unwrap()
        .to_string()
}

/// Commands that print more than a pipe buffer's worth or less, with and without a verdict.
fn commands() -> Vec<Vec<String>> {
    let node = repo("fixtures/nodes/k3s-flannel");
    [
        vec!["probe", "--all"],
        vec!["probe", "--format", "json"],
        vec!["schema"],
        vec!["job"],
        // A no-go node: the exit code (1) must survive the closed pipe.
        vec!["run", "--no-canaries", "--no-compile", "--root", &node],
        vec![
            "run",
            "--no-canaries",
            "--no-compile",
            "--format",
            "json",
            "--root",
            &node,
        ],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect()
}

fn assert_no_panic(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
    assert_ne!(out.status.code(), Some(101), "{what}: {stderr}");
}

#[test]
fn a_closed_reader_ends_the_output_with_the_commands_own_exit_code() {
    for args in commands() {
        let what = args.join(" ");
        let normal = bin().args(&args).output().unwrap();
        assert!(!normal.stdout.is_empty(), "{what} prints nothing");
        assert_no_panic(&normal, &what);
        // The read end is closed before the child starts, so its first write gets EPIPE,
        // whatever the timing.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let closed = bin()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_no_panic(&closed, &what);
        assert_eq!(
            closed.status.code(),
            normal.status.code(),
            "{what}: {}",
            String::from_utf8_lossy(&closed.stderr)
        );
    }
}

#[test]
fn a_stdout_that_cannot_be_written_is_an_error() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = bin()
        .arg("schema")
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("writing to stdout"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn probe_offers_only_text_and_json() {
    for format in ["junit", "markdown", "json-line"] {
        let out = bin().args(["probe", "--format", format]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(out.stdout.is_empty(), "{format} printed something");
        assert!(
            stderr.contains(&format!("invalid value '{format}'"))
                && stderr.contains("[possible values: text, json]"),
            "{stderr}"
        );
    }
}

#[test]
fn probe_json_carries_its_schema_version() {
    let out = bin().args(["probe", "--format", "json"]).output().unwrap();
    assert!(out.status.success());
    let v = common::json(&out);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["tool_version"], env!("CARGO_PKG_VERSION"));
    // Whatever the privilege, every program type is answered, tracing included.
    assert!(v["program_types"]["tracing"]["status"].is_string(), "{v}");
    assert!(v["misc"]["jit_always_on"]["status"].is_string(), "{v}");
}

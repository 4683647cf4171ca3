//! Golden reports: what the binary prints for every fixture, compared byte for byte with the files
//! under `fixtures/golden/`. A refactor must leave them unchanged; a change of behaviour changes
//! them on purpose, in the same commit, where a reviewer sees the difference.
//!
//! Regenerate after an intended change (then read the diff before committing):
//!
//! ```sh
//! PREFLIGHT_BLESS=1 cargo test -p preflight --test golden_reports
//! ```
//!
//! Only what differs from one run to the next is normalised: timings (`*_ms` fields in JSON,
//! "in 72 ms" in text, JUnit's `time="…"`); the compile stage's scratch directory, and the size
//! of each object and of its .BTF (BTF's strings hold the scratch dir's path, whose length
//! follows the PID); the checkout's absolute path (`plan` prints the canonical --root).
//! Everything else (hostnames, kernel releases, check order, remedies, exit codes) must match.
//! Each command runs with an empty environment (but for a fresh `PREFLIGHT_CACHE_DIR`: compiles
//! run cold) and the repository as its working directory, so
//! the paths in the output are the relative ones given on the command line. `plan` runs with an empty PATH, so the commands it prints name
//! `helm`, `kubectl`, `systemctl` as bare programs whatever this machine has installed.
//!
//! The compile fixtures need clang-19 and libclang-19 (scripts/setup.sh) and root (the compile
//! stage probes this kernel's ISA and helpers for its -D flags): where one is missing their test
//! is listed as ignored, with the reason (preflight/build.rs's `prereq` cfg).
mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The repository root: fixture paths are given relative to it.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn golden_dir() -> PathBuf {
    repo().join("fixtures/golden")
}

fn blessing() -> bool {
    std::env::var_os("PREFLIGHT_BLESS").is_some_and(|v| v != "0")
}

/// One command and the file its standard output is compared with.
struct Case {
    /// Path under fixtures/golden/, with the extension of the format.
    file: String,
    args: Vec<String>,
}

impl Case {
    fn new(file: impl Into<String>, args: &[&str]) -> Self {
        Self {
            file: file.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Which PATH a command runs with.
enum Path_ {
    /// An empty directory: no tool is found (plan prints bare program names).
    Empty,
    /// Debian's: clang-19 is /usr/bin/clang-19.
    System,
}

/// Every fixture node directory, sorted: a new fixture node without golden files fails the test.
fn fixture_nodes() -> Vec<String> {
    let mut nodes: Vec<String> = std::fs::read_dir(repo().join("fixtures/nodes"))
        .expect("fixtures/nodes")
        .map(|e| e.expect("fixtures/nodes entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    nodes.sort();
    nodes
}

fn compile_fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("fixtures/compile"))
        .expect("fixtures/compile")
        .map(|e| e.expect("fixtures/compile entry"))
        .filter(|e| e.path().join("root").is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The commands whose output needs nothing but the fixtures: no root, no clang.
fn file_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for node in fixture_nodes() {
        let root = format!("fixtures/nodes/{node}");
        cases.push(Case::new(
            format!("run/{node}.txt"),
            &["run", "--root", &root],
        ));
        cases.push(Case::new(
            format!("run/{node}.json"),
            &["run", "--root", &root, "--format", "json"],
        ));
    }
    // The other renderers, on the node with the most findings of every kind.
    let flannel = "fixtures/nodes/k3s-flannel";
    for (ext, format) in [("junit.xml", "junit"), ("md", "markdown")] {
        cases.push(Case::new(
            format!("run/k3s-flannel.{ext}"),
            &["run", "--root", flannel, "--format", format],
        ));
    }
    // The values fixture: the default target, the release it was written against, and the
    // chart stand-in's schema.
    let homelab = "fixtures/values/homelab.yaml";
    for (name, extra) in [
        ("homelab", &[][..]),
        ("homelab-1.16.4", &["--cilium-version", "1.16.4"][..]),
        (
            "homelab-chart",
            &["--chart", "fixtures/charts/mini-cilium"][..],
        ),
    ] {
        for (ext, format) in [("txt", "text"), ("json", "json")] {
            let mut args = vec!["run", "--root", flannel, "-f", homelab, "--format", format];
            args.extend_from_slice(extra);
            cases.push(Case::new(format!("values/{name}.{ext}"), &args));
        }
    }
    for (ext, format) in [("txt", "text"), ("json", "json")] {
        cases.push(Case::new(
            format!("aggregate/reports.{ext}"),
            &["aggregate", "fixtures/reports", "--format", format],
        ));
    }
    let (old, new) = (
        "fixtures/reports/vm-debian12-6.1.json",
        "fixtures/reports/vm-debian12-6.12.json",
    );
    cases.push(Case::new("diff/vm-6.1-6.12.txt", &["diff", old, new]));
    cases.push(Case::new(
        "diff/vm-6.1-6.12.json",
        &["diff", old, new, "--json"],
    ));
    cases.push(Case::new("schema/report.json", &["schema"]));
    cases.push(Case::new("job/default.yaml", &["job"]));
    cases.push(Case::new("job/homelab.yaml", &["job", "-f", homelab]));
    for node in ["k3s-flannel-plan", "rancher-desktop"] {
        cases.push(Case::new(
            format!("plan/{node}.txt"),
            &["plan", "--root", &format!("fixtures/nodes/{node}")],
        ));
    }
    // The whole-cluster plan from the three-node fixture cluster's reports.
    cases.push(Case::new(
        "plan/cluster-k3s-three-node.txt",
        &[
            "plan",
            "--cluster",
            "fixtures/cluster/k3s-three-node/reports",
            "--cilium-version",
            "1.18.4",
        ],
    ));
    cases
}

fn compile_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for name in compile_fixtures() {
        let root = format!("fixtures/compile/{name}/root");
        // --no-verify: the verifier's instruction counts are the running kernel's, not ours.
        let args = ["compile", "--as-node", "--root", &root, "--no-verify"];
        for (ext, format) in [("txt", "text"), ("json", "json")] {
            let mut args = args.to_vec();
            args.extend(["--format", format]);
            cases.push(Case::new(format!("compile/{name}.{ext}"), &args));
        }
    }
    cases
}

/// Runs one case: its normalised standard output and exit code.
fn run(case: &Case, path: &Path_, empty_dir: &Path) -> (String, i32) {
    let path = match path {
        Path_::Empty => empty_dir.as_os_str().to_owned(),
        Path_::System => "/usr/bin:/bin".into(),
    };
    // A fresh cache per command: every compile runs cold (a cached object would say so in the
    // report), and nothing is written to this machine's /var/cache/preflight.
    let cache = tempfile::tempdir().expect("scratch cache dir");
    let out = Command::new(env!("CARGO_BIN_EXE_preflight"))
        .args(&case.args)
        .current_dir(repo())
        .env_clear()
        .env("PATH", path)
        .env("PREFLIGHT_CACHE_DIR", cache.path())
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot run preflight: {e}", case.file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{}: preflight {} panicked: {stderr}",
        case.file,
        case.args.join(" ")
    );
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("{}: killed by a signal; stderr: {stderr}", case.file));
    let stdout = String::from_utf8(out.stdout)
        .unwrap_or_else(|e| panic!("{}: stdout is not UTF-8: {e}", case.file));
    (normalise(&stdout), code)
}

/// Replaces what changes from run to run (and only that) with a fixed placeholder.
fn normalise(output: &str) -> String {
    use regex::Regex;
    use std::sync::LazyLock;
    static REPO: LazyLock<String> = LazyLock::new(|| repo().to_string_lossy().into_owned());
    // The compile stage's scratch dir: std::env::temp_dir()/preflight-compile.<pid>.<random>.
    static SCRATCH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"/[^\s\x22]*/preflight-compile\.[0-9]+\.[A-Za-z0-9]+").unwrap()
    });
    // JSON: "total_ms": 5.7, "wall_ms": 68.8, "elapsed_ms": 3.1.
    static JSON_MS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"("[a-z_]*_ms": )-?[0-9][0-9.eE+-]*"#).unwrap());
    // JSON: the per-stage map "stages_ms": { "checks": 3.2, ... }.
    static STAGES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""stages_ms": \{[^}]*\}"#).unwrap());
    static NUMBER_VALUE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"(": )-?[0-9][0-9.eE+-]*"#).unwrap());
    // A compiled object's size and its .BTF section's: BTF's string table holds the source
    // paths, which sit in the scratch dir, whose name grows with the PID's digits.
    static OBJECT_SIZE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"("size": )[0-9]+(,\s*"sections": \{\s*"\.BTF": )[0-9]+"#).unwrap()
    });
    static OBJECT_BYTES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bobject: [0-9]+ bytes").unwrap());
    // JUnit: time="0.020" (seconds).
    static JUNIT_TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#"\btime="[0-9.]+""#).unwrap());
    // Text: "compiled in 72 ms", "FAILED in 28 ms", "probed in 9.0 ms".
    static TEXT_MS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\bin [0-9]+(\.[0-9]+)? ms\b").unwrap());

    let s = output.replace(REPO.as_str(), "<repo>");
    let s = SCRATCH.replace_all(&s, "<scratch>");
    let s = STAGES.replace_all(&s, |c: &regex::Captures| {
        NUMBER_VALUE.replace_all(&c[0], "${1}0").into_owned()
    });
    let s = JSON_MS.replace_all(&s, "${1}0");
    let s = JUNIT_TIME.replace_all(&s, r#"time="0""#);
    let s = OBJECT_SIZE.replace_all(&s, "${1}0${2}0");
    let s = OBJECT_BYTES.replace_all(&s, "object: N bytes");
    TEXT_MS.replace_all(&s, "in N ms").into_owned()
}

/// Compares every case with its golden file (or writes them all under PREFLIGHT_BLESS), plus the
/// exit codes in `<group>/exit-codes.txt`; golden files no case produces are failures too.
fn check_group(group: &str, cases: &[&Case], path: &Path_) -> Vec<String> {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let dir = golden_dir();
    let mut codes = String::new();
    let mut failures = Vec::new();
    for case in cases {
        let (actual, code) = run(case, path, scratch.path());
        codes.push_str(&format!(
            "{code} {}  # preflight {}\n",
            case.file,
            case.args.join(" ")
        ));
        let file = dir.join(&case.file);
        if blessing() {
            std::fs::create_dir_all(file.parent().expect("golden file has a parent"))
                .expect("create golden dir");
            std::fs::write(&file, &actual).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: output of `preflight {}` differs:\n{}",
                case.file,
                case.args.join(" "),
                first_difference(&expected, &actual)
            )),
            Err(e) => failures.push(format!(
                "{}: {e} (new case? bless it, see tests/golden_reports.rs)",
                file.display()
            )),
        }
    }
    let codes_file = dir.join(group).join("exit-codes.txt");
    if blessing() {
        std::fs::write(&codes_file, &codes).expect("write exit codes");
    } else {
        let expected = std::fs::read_to_string(&codes_file).unwrap_or_default();
        if expected != codes {
            failures.push(format!(
                "{}: exit codes differ:\n{}",
                codes_file.display(),
                first_difference(&expected, &codes)
            ));
        }
    }
    // Golden files of this group that no case writes any more: stale contract.
    let mut expected_files: Vec<PathBuf> = cases.iter().map(|c| dir.join(&c.file)).collect();
    expected_files.push(codes_file);
    for file in files_under(&dir.join(group)) {
        if !expected_files.contains(&file) {
            if blessing() {
                std::fs::remove_file(&file).expect("remove stale golden file");
            } else {
                failures.push(format!("{}: no case produces it", file.display()));
            }
        }
    }
    failures
}

/// Runs every group of `cases` (the directory part of their file) and fails with every difference.
fn check(cases: Vec<Case>, path: Path_) {
    let mut groups: Vec<String> = cases
        .iter()
        .map(|c| {
            let (group, _) = c
                .file
                .split_once('/')
                .expect("every case is in a group directory");
            group.to_string()
        })
        .collect();
    groups.sort();
    groups.dedup();
    let mut failures = Vec::new();
    for group in groups {
        let in_group: Vec<&Case> = cases
            .iter()
            .filter(|c| c.file.starts_with(&format!("{group}/")))
            .collect();
        failures.extend(check_group(&group, &in_group, &path));
    }
    assert!(
        failures.is_empty(),
        "{} golden report(s) differ; if the change is intended, regenerate with \
         PREFLIGHT_BLESS=1 cargo test -p preflight --test golden_reports\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.expect("golden dir entry").path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The first line where two outputs part, with a little context, and the line counts.
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let show = |lines: &[&str]| {
        lines
            .iter()
            .skip(at)
            .take(3)
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "  first difference at line {} (golden {} lines, now {} lines)\n  golden:\n{}\n  now:\n{}",
        at + 1,
        e.len(),
        a.len(),
        show(&e),
        show(&a)
    )
}

#[test]
fn reports_on_every_fixture_match_the_golden_files() {
    check(file_cases(), Path_::Empty);
}

#[test]
#[cfg_attr(
    not(all(prereq = "root", prereq = "clang-19", prereq = "libclang-19")),
    ignore = "needs root (the compile stage probes this kernel) and clang-19, libclang1-19"
)]
fn compile_fixtures_match_the_golden_files() {
    common::assert_root();
    common::assert_tool("/usr/bin/clang-19");
    check(compile_cases(), Path_::System);
}

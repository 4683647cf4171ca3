//! Every read and write of the node goes through host/'s root-confined API (issue 12): this
//! scans the code that touches node files (plan/, host/, checks/, facts.rs, the node side of
//! `compile --as-node`) for path-based std::fs calls, `File::open`, `Path::exists` and the
//! like, outside `#[cfg(test)]`. The few that touch something else (the operator's own output
//! dir, tools on PATH, the root argument itself) are allowlisted below, each with why.
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Dirs and files scanned (relative to preflight/src).
const SCANNED: &[&str] = &[
    "plan",
    "cmd/plan.rs",
    "host",
    "checks",
    "facts.rs",
    "compile/nodeinit.rs",
    "cilium/node.rs",
];

/// (file, text on the line, why it is not a node access).
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "cmd/plan.rs",
        "std::fs::canonicalize(c)",
        "--chart: a chart the operator names, made absolute for helm's command line",
    ),
    (
        "cmd/plan.rs",
        ".canonicalize()",
        "--root itself made absolute (it goes into tool command lines) before it is opened",
    ),
    (
        "cmd/plan.rs",
        "std::fs::create_dir_all(dir)",
        "--emit-gitops DIR: an output dir the operator names, not a node path",
    ),
    (
        "cmd/plan.rs",
        "std::fs::write(&values_path",
        "--emit-gitops DIR: the values file written there",
    ),
    (
        "cmd/plan.rs",
        "std::fs::write(&app_path",
        "--emit-gitops DIR: the Argo CD Application written there",
    ),
    (
        "plan/runner.rs",
        "std::fs::metadata(p)",
        "finding helm/kubectl/… on this system's PATH: the tools, not node files",
    ),
    (
        "host/sysctl.rs",
        "nix::unistd::access(probe",
        "live-only (`--root /`): access(2) on the running system's /proc/sys",
    ),
    (
        "host/mounts.rs",
        "nix::sys::statfs::statfs(path)",
        "live-only (`--root /`): this system's bpffs; a host root uses HostRoot::fs_magic",
    ),
];

/// Calls that open, inspect or change a path without the confined API.
const FORBIDDEN: &[&str] = &[
    "std::fs::read(",
    "std::fs::read_to_string(",
    "std::fs::write(",
    "std::fs::read_dir(",
    "std::fs::metadata(",
    "std::fs::symlink_metadata(",
    "std::fs::read_link(",
    "std::fs::canonicalize(",
    "std::fs::create_dir(",
    "std::fs::create_dir_all(",
    "std::fs::remove_file(",
    "std::fs::remove_dir(",
    "std::fs::remove_dir_all(",
    "std::fs::rename(",
    "std::fs::copy(",
    "std::fs::set_permissions(",
    "std::fs::hard_link(",
    " fs::read(",
    " fs::read_to_string(",
    " fs::write(",
    " fs::read_dir(",
    " fs::metadata(",
    " fs::symlink_metadata(",
    " fs::read_link(",
    " fs::create_dir",
    " fs::remove_",
    " fs::rename(",
    " fs::copy(",
    "File::open(",
    "File::create(",
    "OpenOptions::new(",
    "std::os::unix::fs::symlink(",
    "std::os::unix::fs::lchown(",
    "std::os::unix::fs::chown(",
    "nix::sys::statfs::statfs(",
    "nix::unistd::access(",
    ".canonicalize()",
    ".symlink_metadata()",
    ".read_link()",
    ".exists()",
];

/// `x.is_dir()` / `x.is_file()` on a path; on a [`Meta`] (named `m`) they are the API's own.
fn path_predicate(line: &str) -> bool {
    for call in [".is_dir()", ".is_file()"] {
        let mut rest = line;
        while let Some(at) = rest.find(call) {
            let before = &rest[..at];
            let receiver: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            if receiver != "m" {
                return true;
            }
            rest = &rest[at + call.len()..];
        }
    }
    false
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_std_fs_call_touches_the_node_outside_hosts_api() {
    let src = Path::new(SRC);
    let mut all = Vec::new();
    for s in SCANNED {
        files(&src.join(s), &mut all);
    }
    assert!(all.len() > 20, "scanned only {} files", all.len());
    let mut found = Vec::new();
    let mut allowed_hits = vec![0usize; ALLOWED.len()];
    let mut lines_scanned = 0;
    for file in &all {
        let rel = file.strip_prefix(src).unwrap().display().to_string();
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Tests sit at the end of each file and build their fixtures with std::fs.
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            let code = line.split("//").next().unwrap_or("");
            lines_scanned += 1;
            let hit = FORBIDDEN.iter().any(|f| code.contains(f)) || path_predicate(code);
            if !hit {
                continue;
            }
            match ALLOWED
                .iter()
                .position(|(f, t, _)| *f == rel && code.contains(t))
            {
                Some(i) => allowed_hits[i] += 1,
                None => found.push(format!("{rel}:{}: {}", n + 1, line.trim())),
            }
        }
    }
    eprintln!(
        "node fs lint: {} files, {lines_scanned} lines, {} allowlisted calls",
        all.len(),
        allowed_hits.iter().sum::<usize>()
    );
    assert!(
        found.is_empty(),
        "node files must be read and written through host::HostRoot (or allowlisted here with \
         a reason):\n{}",
        found.join("\n")
    );
    let stale: Vec<_> = ALLOWED
        .iter()
        .zip(&allowed_hits)
        .filter(|(_, n)| **n == 0)
        .map(|((f, t, _), _)| format!("{f}: {t}"))
        .collect();
    assert!(
        stale.is_empty(),
        "allowlist entries that match nothing: {stale:?}"
    );
}

#[test]
fn the_lint_catches_what_it_is_for() {
    for bad in [
        "    let t = std::fs::read_to_string(root.join(\"etc/x\"))?;",
        "    if host_path.exists() {",
        "    let f = File::open(&p)?;",
        "    if root.join(\"sys/module\").is_dir() {",
    ] {
        assert!(
            FORBIDDEN.iter().any(|f| bad.contains(f)) || path_predicate(bad),
            "{bad}"
        );
    }
    assert!(!path_predicate("    Some(m) if m.is_dir() => {}"));
}

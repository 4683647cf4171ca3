//! The command-line habits users bring from kubectl, cilium-cli, Helm and kubeadm, and the
//! readiness verdict, each through the real binary on fixture nodes (no root needed: `--root`
//! reads a fixture tree, `--no-compile` leaves clang out).
mod common;

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Output, Stdio},
};

use common::{bin, json};

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_str()
        .unwrap()
        .to_string()
}

/// `preflight run --root fixtures/nodes/NODE --no-compile ARGS…`.
fn run(node: &str, args: &[&str]) -> Output {
    bin()
        .args([
            "run",
            "--no-compile",
            "--root",
            &repo(&format!("fixtures/nodes/{node}")),
        ])
        .args(args)
        .env_remove("COLUMNS")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2, nothing on stdout, and stderr naming each of `names`.
fn refused(out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    for name in names {
        assert!(err.contains(name), "stderr does not name {name}: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_k3s_node_on_flannel_is_go_after_plan_and_names_the_step() {
    let out = run("k3s-flannel", &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    let verdict = &v["verdict"];
    assert_eq!(verdict["readiness"], "go-after-plan", "{verdict}");
    assert_eq!(verdict["plan_steps"][0]["step"], "k3s.drop-in");
    assert_eq!(
        verdict["plan_steps"][0]["fixes"],
        serde_json::json!(["k3s.flannel-backend"])
    );
    let summary = verdict["summary"].as_str().unwrap();
    assert!(summary.starts_with("GO after plan: "), "{summary}");
    assert!(!summary.contains("see the fix lines"), "{summary}");
    // The text report lists the step and ends on the same line.
    let text = stdout(&run("k3s-flannel", &[]));
    assert!(text.contains("  k3s.drop-in "), "{text}");
    assert_eq!(text.lines().last(), Some(summary));
}

#[test]
fn go_no_go_and_a_gap_only_a_person_can_close_keep_their_readiness() {
    for (node, readiness, code) in [
        ("debian-bookworm", "go", 0),
        // Two bpffs mounts: the plan only notes them; a person unmounts the extra one.
        ("failed-cilium", "no-go", 1),
        ("rhel10", "no-go", 1),
    ] {
        let out = run(node, &["-o", "json"]);
        assert_eq!(out.status.code(), Some(code), "{node}: {}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["verdict"]["readiness"], readiness, "{node}");
        assert!(v["verdict"].get("plan_steps").is_none(), "{node}");
    }
}

#[test]
fn dash_o_is_the_format_and_output_file_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let json_out = run("debian-bookworm", &["-o", "json"]);
    let format_out = run("debian-bookworm", &["--format", "json"]);
    assert_eq!(json(&json_out)["schema_version"], 1);
    assert_eq!(json(&format_out)["schema_version"], 1);
    // `-o json` never writes a file named `json` (the kubectl habit).
    assert!(!PathBuf::from("json").exists());

    let file = dir.path().join("report.json");
    let out = run(
        "debian-bookworm",
        &["-o", "json", "--output-file", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).starts_with("GO: "), "{}", stderr(&out));
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["verdict"]["readiness"], "go");

    refused(
        &run("debian-bookworm", &["-o", "yaml"]),
        &["--output", "yaml"],
    );
    let missing = dir.path().join("no/such/dir/r.json");
    refused(
        &run(
            "debian-bookworm",
            &["--output-file", missing.to_str().unwrap()],
        ),
        &["--output-file", missing.to_str().unwrap()],
    );
}

#[test]
fn one_run_writes_every_format_ci_wants() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (j, x, m) = (path("r.json"), path("r.xml"), path("r.md"));
    let out = run(
        "k3s-flannel",
        &["--json-file", &j, "--junit-file", &x, "--markdown-file", &m],
    );
    assert_eq!(out.status.code(), Some(1));
    // The text report still goes to stdout.
    assert!(stdout(&out).contains("Kernel config"), "{}", stdout(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(report["node"]["hostname"], "k3s-node-1");
    let junit = std::fs::read_to_string(&x).unwrap();
    assert!(junit.starts_with("<?xml"), "{junit}");
    // Per-node files merged by CI do not collide: the node is in every suite and class name.
    assert!(junit.contains(r#"hostname="k3s-node-1""#), "{junit}");
    assert!(
        junit.contains(r#"classname="preflight.k3s-node-1.k3s""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"name="k3s.flannel-backend" time=""#),
        "{junit}"
    );
    let md = std::fs::read_to_string(&m).unwrap();
    assert!(md.starts_with("## preflight"), "{md}");
    // `data/<hash>` is text, not an HTML tag GitHub would swallow.
    assert!(md.contains("data/&lt;hash&gt;"), "{md}");
    assert!(!md.contains("data/<hash>"), "{md}");
    assert!(md.contains("| `k3s.drop-in` |"), "{md}");
    refused(
        &run("k3s-flannel", &["--junit-file", "/nonexistent/dir/x.xml"]),
        &["--junit-file", "/nonexistent/dir/x.xml"],
    );
}

#[test]
fn quiet_prints_the_verdict_line_only_with_the_same_exit_code() {
    for (node, code) in [("debian-bookworm", 0), ("k3s-flannel", 1)] {
        let full = json(&run(node, &["-o", "json"]));
        let out = run(node, &["--quiet"]);
        assert_eq!(out.status.code(), Some(code), "{node}");
        let text = stdout(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(
            text.trim_end(),
            full["verdict"]["summary"].as_str().unwrap()
        );
        assert_eq!(stdout(&run(node, &["-q"])), text);
    }
}

#[test]
fn not_needed_gaps_are_not_a_red_fail() {
    let out = bin()
        .args(["--color", "always"])
        .args([
            "run",
            "--no-compile",
            "--root",
            &repo("fixtures/nodes/debian-bookworm"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let netkit = text
        .lines()
        .find(|l| l.contains("kernel.config.netkit"))
        .expect("the netkit gap is shown");
    assert!(
        netkit.contains("NOTE") && !netkit.contains("FAIL"),
        "{netkit}"
    );
    assert!(!netkit.contains("\x1b[1;31m"), "{netkit:?}");
}

#[test]
fn checks_lists_every_id_with_its_area_needs_and_fix() {
    let out = bin().args(["checks", "-o", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let list = json(&out);
    let list = list.as_array().unwrap();
    assert!(list.len() > 100, "{}", list.len());
    let flannel = list
        .iter()
        .find(|c| c["id"] == "k3s.flannel-backend")
        .expect("listed");
    assert_eq!(flannel["area"], "k3s");
    assert_eq!(flannel["needed_by"], serde_json::json!(["base-datapath"]));
    assert!(
        flannel["remedy"]
            .as_str()
            .unwrap()
            .contains("flannel-backend: none")
    );
    // Every id a report can carry is listed: the fixture's report has no other.
    let report = json(&run("k3s-flannel", &["-o", "json"]));
    for c in report["checks"].as_array().unwrap() {
        assert!(
            list.iter().any(|l| l["id"] == c["id"]),
            "{} not listed",
            c["id"]
        );
    }
    let text = stdout(&bin().args(["checks", "--area", "k3s"]).output().unwrap());
    assert!(text.contains("k3s.flannel-backend"), "{text}");
    assert!(text.contains("needed by base-datapath"), "{text}");
    assert!(!text.contains("kernel.release"), "{text}");
    refused(
        &bin().args(["checks", "--area", "nope"]).output().unwrap(),
        &["--area", "not an area"],
    );
}

#[test]
fn ignore_takes_lists_globs_and_all_and_refuses_what_matches_nothing() {
    let ignored = |args: &[&str]| -> Vec<String> {
        let v = json(&run("k3s-flannel", &[&["-o", "json"], args].concat()));
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ignored"] == true)
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = ignored(&["--ignore", "k3s.flannel-backend,kernel.config.*"]);
    assert!(
        list.contains(&"k3s.flannel-backend".to_string()),
        "{list:?}"
    );
    assert!(
        list.contains(&"kernel.config.geneve".to_string()),
        "{list:?}"
    );
    assert!(
        list.iter()
            .all(|id| id == "k3s.flannel-backend" || id.starts_with("kernel.config."))
    );
    let total = json(&run("k3s-flannel", &["-o", "json"]))["checks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(ignored(&["--ignore", "all"]).len(), total);
    // The flannel failure ignored: go.
    let out = run("k3s-flannel", &["--ignore", "k3s.flannel-backend", "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    refused(
        &run("k3s-flannel", &["--ignore", "k3s.nope*"]),
        &["--ignore", "k3s.nope*"],
    );
    refused(
        &run("k3s-flannel", &["--ignore", "mounts.bpfs"]),
        &["did you mean mounts.bpffs"],
    );
    refused(
        &run("k3s-flannel", &["--ignore", "kernel.[x"]),
        &["--ignore", "kernel.[x"],
    );
}

/// The values a run judged, read back through a check that reports them: `values.routing-mode`
/// names the routing mode, so the Helm flags are compared on what the tool made of them.
fn routing_detail(args: &[&str]) -> (Option<i32>, String) {
    let out = run("debian-bookworm", &[&["-o", "json"], args].concat());
    if out.status.code() == Some(2) {
        return (Some(2), stderr(&out));
    }
    let v = json(&out);
    let detail = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "values.routing-mode")
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .unwrap_or_default();
    (out.status.code(), detail)
}

#[test]
fn helm_set_flags_apply_in_helms_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_, vxlan) = routing_detail(&[]);
    assert!(vxlan.contains("vxlan"), "{vxlan}");
    // --set-json, then --set, then --set-string, then --set-file, whatever the order given.
    let (_, geneve) = routing_detail(&[
        "--set",
        "tunnelProtocol=vxlan",
        "--set-json",
        r#"tunnelProtocol="vxlan",routingMode="tunnel""#,
        "--set-string",
        "tunnelProtocol=geneve",
    ]);
    assert!(geneve.contains("geneve"), "{geneve}");
    let file = dir.path().join("protocol");
    std::fs::write(&file, "geneve").unwrap();
    let (_, from_file) = routing_detail(&[
        "--set-file",
        &format!("tunnelProtocol={}", file.display()),
        "--set-string",
        "tunnelProtocol=vxlan",
    ]);
    assert!(from_file.contains("geneve"), "{from_file}");
    // -f - reads the values from stdin.
    let mut child = bin()
        .args(["run", "--no-compile", "-o", "json", "-f", "-", "--root"])
        .arg(repo("fixtures/nodes/debian-bookworm"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tunnelProtocol: geneve\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = json(&out);
    assert!(
        v["target"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("tunnel-geneve")),
        "{}",
        v["target"]
    );
    // Bad input names the flag (exit 2).
    let (code, err) = routing_detail(&["--set-json", "tunnelProtocol={nope"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--set-json") && err.contains("not JSON"),
        "{err}"
    );
    let (code, err) = routing_detail(&["--set-file", "tunnelProtocol=/nonexistent/f"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--set-file") && err.contains("/nonexistent/f"),
        "{err}"
    );
}

#[test]
fn version_names_the_commit_and_the_cilium_releases() {
    let out = bin().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("preflight {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains("Cilium releases known: ") && text.contains("1.20 (up to"),
        "{text}"
    );
    assert!(text.contains("default target: Cilium "), "{text}");
    let short = stdout(&bin().arg("-V").output().unwrap());
    assert!(short.contains("(commit "), "{short}");
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, marker) in [
        ("bash", "_preflight()"),
        ("zsh", "#compdef preflight"),
        ("fish", "complete -c preflight"),
    ] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: {text}");
        // The new subcommands and flags complete too.
        assert!(
            text.contains("checks") && text.contains("--set-json"),
            "{shell}"
        );
    }
    refused(
        &bin().args(["completions", "tcsh"]).output().unwrap(),
        &["tcsh"],
    );
    let man = stdout(&bin().arg("man").output().unwrap());
    assert!(man.contains(".TH preflight 1"), "{man}");
    assert!(man.contains("completions"), "{man}");
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for page in ["preflight.1", "preflight-run.1", "preflight-checks.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in [
        "run",
        "probe",
        "compile",
        "schema",
        "diff",
        "plan",
        "install",
        "rollback",
        "aggregate",
        "job",
        "gate",
        "checks",
        "completions",
        "man",
    ] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub}");
        let text = stdout(&out);
        let examples = text
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{sub}: {text}"));
        assert!(
            examples.trim_start().starts_with("preflight ") || examples.contains("| preflight "),
            "{sub}: {examples}"
        );
    }
    let out = bin()
        .args(["fallback", "flannel", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("Examples:\n  preflight fallback flannel"));
}

#[test]
fn text_wraps_to_the_terminal_width_and_loses_nothing() {
    let node = repo("fixtures/nodes/k3s-flannel");
    let args = ["run", "--no-compile", "--root", node.as_str()];
    let wide = stdout(&bin().args(args).env_remove("COLUMNS").output().unwrap());
    assert!(wide.lines().any(|l| l.chars().count() > 80));
    let narrow = stdout(&bin().args(args).env("COLUMNS", "80").output().unwrap());
    let too_wide: Vec<&str> = narrow
        .lines()
        // A single word longer than the width (a path) cannot break.
        .filter(|l| l.chars().count() > 80 && l.trim().contains(' '))
        .collect();
    assert!(too_wide.is_empty(), "{too_wide:#?}");
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // The same words in the same order: lines broke at spaces only, never inside an id or path.
    let (w, n) = (words(&wide), words(&narrow));
    let first = w.iter().zip(&n).position(|(a, b)| a != b);
    assert!(
        first.is_none() && w.len() == n.len(),
        "words differ from {:?}",
        first.map(|i| &n[i..n.len().min(i + 5)])
    );
}

#[test]
fn other_commands_offer_only_their_formats_and_write_files() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, format) in [
        ("compile", "junit"),
        ("aggregate", "markdown"),
        ("diff", "junit"),
    ] {
        let out = bin().args([sub, "-o", format]).output().unwrap();
        refused(&out, &[&format!("invalid value '{format}'")]);
    }
    let help = stdout(&bin().args(["aggregate", "--help"]).output().unwrap());
    assert!(
        !help.contains("junit") && help.contains("json-line"),
        "{help}"
    );
    let file = dir.path().join("cluster.json");
    let out = bin()
        .args(["aggregate", "-o", "json", "--output-file"])
        .arg(&file)
        .arg(repo("fixtures/reports"))
        .output()
        .unwrap();
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("NO-GO"), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["readiness"]["no_go"], 2, "{v}");
    // diff: -o json is --json.
    let (a, b) = (
        repo("fixtures/reports/vm-debian12-6.1.json"),
        repo("fixtures/reports/vm-debian12-6.12.json"),
    );
    let o = stdout(&bin().args(["diff", &a, &b, "-o", "json"]).output().unwrap());
    let j = stdout(&bin().args(["diff", &a, &b, "--json"]).output().unwrap());
    assert_eq!(o, j);
    assert!(o.starts_with('{'), "{o}");
}

#[test]
fn aggregate_counts_go_after_plan_apart() {
    let dir = tempfile::tempdir().unwrap();
    for node in ["k3s-flannel", "debian-bookworm", "rhel10"] {
        let out = run(node, &["-o", "json-line"]);
        std::fs::write(dir.path().join(format!("{node}.json")), &out.stdout).unwrap();
    }
    let out = bin()
        .args(["aggregate", "-o", "json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(
        v["readiness"],
        serde_json::json!({"go": 1, "go_after_plan": 1, "no_go": 1, "undecided": 0})
    );
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .contains("1 of them go after `preflight plan`"),
        "{v}"
    );
    // Without the node only a person can fix, the cluster is go after the plan.
    std::fs::remove_file(dir.path().join("rhel10.json")).unwrap();
    let out = bin().args(["aggregate"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("GO after plan: 1 of 2 nodes"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plan_takes_the_kubeconfig_helm_and_kubectl_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admin.yaml");
    std::fs::write(&config, "apiVersion: v1\nkind: Config\n").unwrap();
    let root = repo("fixtures/nodes/k3s-flannel-plan");
    let out = bin()
        .args(["plan", "--root", &root, "--kubeconfig"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let flag = format!("--kubeconfig {}", config.canonicalize().unwrap().display());
    let helm = text
        .lines()
        .find(|l| l.contains("runs:    helm upgrade"))
        .expect("a helm step");
    assert!(helm.contains(&flag), "{helm}");
    assert!(
        !text.contains("etc/rancher/k3s/k3s.yaml"),
        "the node's kubeconfig is not used"
    );
    refused(
        &bin()
            .args([
                "plan",
                "--root",
                &root,
                "--kubeconfig",
                "/nonexistent/kubeconfig",
            ])
            .output()
            .unwrap(),
        &["--kubeconfig /nonexistent/kubeconfig"],
    );
}

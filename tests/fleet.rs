//! `preflight aggregate` and `preflight job` as a user runs them: the real binary on the
//! fixture reports (real reports from the 6.1/6.12 guests of `cargo xtask vm-test` and this
//! machine's 6.18 kernel, plus a `kubectl logs --prefix` capture made from them by
//! scripts/gen-kubectl-logs-fixture.py).
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

/// The documents `preflight job` printed (after its leading comment), once it exited 0.
fn manifests(out: std::process::Output) -> Vec<serde_json::Value> {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_norway::from_str(d).unwrap())
        .collect()
}

#[test]
fn the_fixture_cluster_is_no_go_with_nodes_grouped_by_what_blocks_them() {
    let out = preflight(&["aggregate", "--format", "json", "reports"], None);
    assert_eq!(out.status.code(), Some(1), "no-go exits 1");
    let v = json(&out);
    assert_eq!(v["nodes"], 6);
    assert_eq!(v["nodes_go"], 4);
    assert_eq!(v["go"], false);
    let groups = v["groups"].as_array().unwrap();
    // The 6.18 host, the Debian 6.12 guest and their copies in the log: the guest has what a
    // prepared node has (shared bpffs, the modules), and its kernel all the default target needs.
    assert_eq!(groups[0]["go"], true);
    assert_eq!(
        groups[0]["nodes"],
        serde_json::json!([
            "dev-6.18",
            "vm-6.12.117+deb12-cloud-amd64",
            "worker-1",
            "worker-3"
        ])
    );
    // The Debian 6.1 guest (and its copy) ran with --need netkit, which 6.1 lacks: that alone
    // blocks it; its base datapath, L7 proxy and tunnel are go.
    assert_eq!(
        groups[1]["blocked_by"],
        serde_json::json!(["kernel.config.netkit", "kernel.feature-minimum.netkit"])
    );
    assert_eq!(
        groups[1]["nodes"],
        serde_json::json!(["vm-6.1.0-57-cloud-amd64", "worker-2"])
    );
    assert_eq!(
        groups[1]["kernels"],
        serde_json::json!(["6.1.0-57-cloud-amd64"])
    );
    assert_eq!(groups.len(), 2);
    let cap = |name: &str| {
        v["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["capability"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(cap("base-datapath")["go"], true);
    assert_eq!(cap("l7-proxy")["go"], true);
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
    assert!(text.starts_with("NO-GO: 1 of 3 nodes are no-go"), "{text}");
    assert!(
        text.contains("go (2 nodes; kernels 6.12.117+deb12-cloud-amd64, 6.18"),
        "{text}"
    );
    assert!(
        text.contains(
            "blocked by kernel.config.netkit, kernel.feature-minimum.netkit \
             (1 nodes; kernels 6.1.0-57-cloud-amd64): worker-2"
        ),
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
            "mounts.bpffs",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("kind: DaemonSet"), "{yaml}");
    assert!(yaml.contains("namespace: ops"), "{yaml}");
    for arg in [
        "- --host-kernel",
        "- wireguard",
        "- mounts.bpffs",
        "- json-line",
    ] {
        assert!(yaml.contains(arg), "{arg} missing: {yaml}");
    }
    assert!(!yaml.contains("privileged: true"), "{yaml}");
}

/// `job` takes `run`'s target flags itself (not only after `--`) and puts them on the pods'
/// command line; flags after `--` follow them.
#[test]
fn job_takes_runs_target_flags() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "tunnelProtocol: geneve\n").unwrap();
    let out = preflight(
        &[
            "job",
            "--cilium-version",
            "1.16.4",
            "--set",
            "hubble.enabled=false",
            "--chart",
            "/host/opt/cilium-chart",
            "-f",
            values.to_str().unwrap(),
            "--need",
            "wireguard",
            "--",
            "--ignore",
            "mounts.bpffs",
        ],
        None,
    );
    let ds = manifests(out)
        .into_iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap();
    let check = init_container(&ds, "preflight");
    let args: Vec<_> = check["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "run",
            "--root",
            "/host",
            "--host-kernel",
            "--format",
            "json-line",
            "--exit-zero",
            "--color",
            "never",
            "-f",
            "/etc/preflight/values/values.yaml",
            "--bpf-dir",
            "/cilium-datapath/bpf",
            "--clang",
            "/cilium-datapath/clang",
            "--cilium-version",
            "1.16.4",
            "--set",
            "hubble.enabled=false",
            "--chart",
            "/host/opt/cilium-chart",
            "--need",
            "wireguard",
            "--ignore",
            "mounts.bpffs",
        ]
    );
    // Checked as the nodes would: a bad version, a chart the pod cannot see, a flag given
    // twice (here and after `--`).
    let out = preflight(&["job", "--cilium-version", "banana"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("banana"));
    let out = preflight(&["job", "--chart", "charts/cilium"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--chart charts/cilium: that is a path in the pod")
    );
    let out = preflight(
        &[
            "job",
            "--cilium-version",
            "1.16.4",
            "--",
            "--cilium-version",
            "1.17.0",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used multiple times"));
}

/// An init container by name, from a DaemonSet document.
fn init_container(ds: &serde_json::Value, name: &str) -> serde_json::Value {
    ds["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no init container {name}: {ds}"))
}

/// The nodes compile the target's own datapath with its own clang: an init container from the
/// target's Cilium image copies them into an emptyDir first.
#[test]
fn job_compiles_the_targets_datapath_from_its_cilium_image() {
    let daemonset = |args: &[&str]| {
        let out = preflight(args, None);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let ds = manifests(out)
            .into_iter()
            .find(|d| d["kind"] == "DaemonSet")
            .unwrap();
        (ds, stderr)
    };
    let (ds, _) = daemonset(&["job", "--cilium-version", "1.18.3"]);
    let names: Vec<_> = ds["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["cilium-datapath", "preflight"]);
    let copy = init_container(&ds, "cilium-datapath");
    assert_eq!(copy["image"], "quay.io/cilium/cilium:v1.18.3");
    assert_eq!(copy["command"][0], "sh");
    let volumes = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == "cilium-datapath" && v["emptyDir"]["sizeLimit"] == "512Mi"),
        "{volumes:?}"
    );
    // Another image (a mirror).
    let (ds, _) = daemonset(&[
        "job",
        "--cilium-version",
        "1.18.3",
        "--cilium-image",
        "mirror.example/cilium/cilium:v1.18.3",
    ]);
    assert_eq!(
        init_container(&ds, "cilium-datapath")["image"],
        "mirror.example/cilium/cilium:v1.18.3"
    );
    // A minor is its newest release preflight knows (the release table): that image.
    let (ds, stderr) = daemonset(&["job", "--cilium-version", "1.18"]);
    assert_eq!(
        init_container(&ds, "cilium-datapath")["image"],
        "quay.io/cilium/cilium:v1.18.6"
    );
    assert!(!stderr.contains("built-in templates"), "{stderr}");
    // Tree flags for the nodes are refused: the init container gives them their tree.
    for flags in [
        &["--bpf-dir", "/host/bpf"][..],
        &["--image", "quay.io/cilium/cilium:v1.18.3"],
        &["--clang", "/host/usr/bin/clang"],
    ] {
        let mut args = vec!["job", "--"];
        args.extend_from_slice(flags);
        let out = preflight(&args, None);
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not for the nodes"),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn job_refuses_flags_run_would_refuse_and_prints_nothing() {
    // Every pod's init container would exit 2 forever: refuse here, with clap's message.
    let out = preflight(&["job", "--", "--bogus-flag"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no manifest on bad input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unexpected argument '--bogus-flag'"), "{err}");
    assert!(err.contains("Usage: preflight run"), "{err}");
    // The pod already sets --format json-line; a second --format is refused as `run` would.
    let out = preflight(&["job", "--", "--format", "text"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used multiple times"));
    // A check id no check has, after `--` too: `run` refuses it, so every pod would exit 2.
    let out = preflight(&["job", "--", "--ignore", "bpf.x"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check id bpf.x"));
    // A --set or --cilium-version the nodes would refuse.
    let out = preflight(&["job", "--", "--cilium-version", "banana"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("banana"));
}

#[test]
fn job_refuses_pod_paths_nothing_ships() {
    let out = preflight(&["job", "--", "-f", "my-values.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("preflight job --values my-values.yaml"),
        "{err}"
    );
    // The values dir holds only what `--values` shipped.
    let out = preflight(&["job", "--", "-f", "/etc/preflight/values/x.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    let out = preflight(&["job", "--", "-o", "/tmp/report.json"], None);
    assert_eq!(out.status.code(), Some(2));
    // A file on the nodes, under the host root, is fine.
    let out = preflight(&["job", "--", "-f", "/host/etc/cilium/values.yaml"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn job_refuses_a_namespace_or_name_that_is_not_a_dns_label() {
    for args in [
        &["job", "--namespace", "Bad_NS"][..],
        &["job", "--namespace=-ns"],
        &["job", "--name", "Preflight"],
    ] {
        let out = preflight(args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a valid DNS-1123 label"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn job_ships_values_files_in_a_configmap_the_pod_reads() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "tunnelProtocol: geneve\n").unwrap();
    let other = dir.path().join("sub");
    std::fs::create_dir(&other).unwrap();
    let other = other.join("values.yaml");
    std::fs::write(&other, "encryption:\n  enabled: true\n  type: wireguard\n").unwrap();
    let out = preflight(
        &[
            "job",
            "--values",
            values.to_str().unwrap(),
            "-f",
            other.to_str().unwrap(),
        ],
        None,
    );
    let docs = manifests(out);
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let cm = &docs[1];
    assert_eq!(cm["metadata"]["name"], "preflight-values");
    assert_eq!(cm["data"]["values.yaml"], "tunnelProtocol: geneve\n");
    assert_eq!(
        cm["data"]["2-values.yaml"],
        "encryption:\n  enabled: true\n  type: wireguard\n"
    );
    let pod = &docs[2]["spec"]["template"]["spec"];
    let check = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "preflight")
        .unwrap();
    let args: Vec<_> = check["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let joined = args.join(" ");
    assert!(
        joined.contains(
            "-f /etc/preflight/values/values.yaml -f /etc/preflight/values/2-values.yaml"
        ),
        "{joined}"
    );
    let mount = check["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/etc/preflight/values")
        .unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "preflight-values");

    // The node's preflight reads exactly these files: copy them where the pod sees them and
    // run the target the pod would build (a fixture root, no live probes).
    let etc = dir.path().join("etc/preflight/values");
    std::fs::create_dir_all(&etc).unwrap();
    for (key, text) in cm["data"].as_object().unwrap() {
        std::fs::write(etc.join(key), text.as_str().unwrap()).unwrap();
    }
    let local: Vec<String> = args
        .iter()
        .map(|a| match a.strip_prefix("/etc/preflight/values/") {
            Some(key) => etc.join(key).display().to_string(),
            None => a.to_string(),
        })
        .collect();
    let f_args: Vec<&str> = local
        .windows(2)
        .filter(|w| w[0] == "-f")
        .flat_map(|w| [w[0].as_str(), w[1].as_str()])
        .collect();
    let node = fixtures().join("nodes/debian-bookworm");
    let mut run = vec![
        "run",
        "--root",
        node.to_str().unwrap(),
        "--format",
        "json",
        "--no-compile",
        "--no-canaries",
    ];
    run.extend(f_args);
    let report = preflight(&run, None);
    let v = json(&report);
    let caps: Vec<_> = v["target"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        caps.contains(&"tunnel-geneve") && caps.contains(&"wireguard"),
        "{caps:?}"
    );
    assert_eq!(v["target"]["value_sources"].as_array().unwrap().len(), 2);
}

#[test]
fn job_checks_values_files_locally_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "tunnelProtocol: geneve\nencryption: [\n").unwrap();
    let out = preflight(&["job", "--values", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", bad.display())), "{err}");
    let out = preflight(&["job", "--values", "no-such-values.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-values.yaml"));
}

/// Every fixture report is one this build reads: `aggregate` takes each file alone (a report,
/// or a log with reports in it), and `diff` takes every pair of the `.json` reports. A fixture
/// this build cannot read (exit 2) is a stale fixture or a reader that lost compatibility.
#[test]
fn diff_and_aggregate_read_every_fixture_report() {
    let dir = fixtures().join("reports");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let shown = file.display().to_string();
        let out = preflight(&["aggregate", "--format", "json", &shown], None);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "aggregate {shown}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&out);
        assert!(v["nodes"].as_u64().unwrap() >= 1, "{shown}: {v}");
        assert_eq!(v["refused"], serde_json::json!([]), "{shown}");
    }
    let reports: Vec<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(reports.len() >= 3, "{reports:?}");
    for old in &reports {
        for new in &reports {
            let out = preflight(&["diff", "--json", old, new], None);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "diff {old} {new}: exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
            let v = json(&out);
            assert!(v["changes"].is_array(), "{v}");
            if old == new {
                assert_eq!(out.status.code(), Some(0), "{old} against itself: {v}");
                assert_eq!(v["changes"], serde_json::json!([]), "{old} against itself");
            }
        }
    }
}

/// The nodes judge the release this command judges: `--cilium-version 1.20` goes to the pods as
/// given, and without it the newest release this preflight knows is written out.
#[test]
fn job_pins_the_cilium_version_for_the_nodes() {
    let out = preflight(&["job", "--cilium-version", "1.20"], None);
    assert_eq!(out.status.code(), Some(0));
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("- --cilium-version\n        - '1.20'")
            || yaml.contains("- --cilium-version\n        - \"1.20\""),
        "{yaml}"
    );
    let out = preflight(&["job"], None);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("- --cilium-version\n        - 1.20.2"),
        "{yaml}"
    );
    let out = preflight(&["job", "--cilium-version", "1.9"], None);
    assert_eq!(out.status.code(), Some(2));
}

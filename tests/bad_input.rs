//! Bounded work on any input (issue 12): every file-taking flag, stdin, and the node files a
//! command reads get a FIFO, /dev/zero, a 100 MB file, deep nesting, a million keys, and
//! `--set` gets a 20,000-level key. Each case must end in exit 2 naming the input, in under
//! 2 s and under 100 MB peak RSS (measured with wait4's rusage), never hang, never crash.
//! These are the behaviour bounds, asserted per case; the figures are printed.
mod common;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::measure::{Measured, measure};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/nodes/k3s-flannel-plan"
);
const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/charts/mini-cilium"
);
const REPORT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/reports/dev-host-6.18.json"
);
const MAX_SECS: f64 = 2.0;
const MAX_RSS_KB: i64 = 100 * 1024;

struct Inputs {
    dir: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        nix::unistd::mkfifo(&p.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // 100 MB of text (sparse: the disk is not filled, the size is real).
        fs::File::create(p.join("big.yaml"))
            .unwrap()
            .set_len(100 << 20)
            .unwrap();
        // Written in pieces: this process stays small, because a child's peak RSS as wait4
        // reports it starts at its parent's high-water mark (Linux carries it over exec), so
        // the figures are an upper bound of the child's own.
        let write = |name: &str, head: &str, piece: &str, n: usize, tail: &str| {
            let mut f = std::io::BufWriter::new(fs::File::create(p.join(name)).unwrap());
            f.write_all(head.as_bytes()).unwrap();
            for i in 0..n {
                f.write_all(piece.replace("{i}", &i.to_string()).as_bytes())
                    .unwrap();
            }
            f.write_all(tail.as_bytes()).unwrap();
        };
        write("deep-flow.yaml", "a: ", "[", 200_000, "\n");
        write("deep-block.yaml", "a:\n", "- ", 1_000_000, "x\n");
        write("keys.yaml", "", "k{i}: 1\n", 1_000_000, "");
        write("deep.json", "", "[", 200_000, "");
        std::os::unix::fs::symlink("loop.yaml", p.join("loop.yaml")).unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
    /// The YAML inputs every values-taking flag gets: (label, path, what stderr must name).
    fn yaml(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            "fifo.yaml",
            "big.yaml",
            "deep-flow.yaml",
            "deep-block.yaml",
            "keys.yaml",
            "loop.yaml",
        ]
        .iter()
        .map(|n| (n.to_string(), self.path(n)))
        .collect();
        v.push(("/dev/zero".into(), "/dev/zero".into()));
        v.push(("a directory".into(), self.dir.path().display().to_string()));
        v
    }
}

/// A fresh copy of the fixture node, with `change` applied to it.
fn node(change: impl FnOnce(&Path)) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    assert!(
        Command::new("cp")
            .args(["-a", FIXTURE])
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    change(&root);
    (tmp, root)
}

struct Case {
    label: String,
    args: Vec<String>,
    stdin: Option<PathBuf>,
    /// stderr must contain this (the input's name, or what was refused).
    names: String,
}

fn case(label: impl Into<String>, args: &[&str], names: impl Into<String>) -> Case {
    Case {
        label: label.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        names: names.into(),
    }
}

fn run_case(c: &Case) -> Measured {
    let mut cmd = common::bin();
    cmd.args(&c.args).env_remove("PREFLIGHT_MAX_INPUT_BYTES");
    match &c.stdin {
        Some(p) => cmd.stdin(fs::File::open(p).unwrap()),
        None => cmd.stdin(Stdio::null()),
    };
    measure(cmd, Duration::from_secs(20))
}

/// Runs every case; a case that breaks a bound is collected, all are reported at once.
fn check_all(cases: &[Case]) {
    let mut failures = Vec::new();
    let mut worst = (0.0f64, 0i64);
    for c in cases {
        let m = run_case(c);
        worst = (worst.0.max(m.secs), worst.1.max(m.max_rss_kb));
        let mut why = Vec::new();
        if m.code != Some(2) {
            why.push("exit code is not 2".to_string());
        }
        if m.secs >= MAX_SECS {
            why.push(format!("took {:.2} s (bound {MAX_SECS} s)", m.secs));
        }
        if m.max_rss_kb >= MAX_RSS_KB {
            why.push(format!(
                "peak RSS {} KiB (bound {MAX_RSS_KB} KiB)",
                m.max_rss_kb
            ));
        }
        if !m.stderr.contains(&c.names) {
            why.push(format!("stderr does not name {:?}", c.names));
        }
        if m.stderr.contains("panicked") {
            why.push("panicked".into());
        }
        if !why.is_empty() {
            failures.push(format!(
                "{} ({}): {}\n{}",
                c.label,
                c.args.join(" ").chars().take(200).collect::<String>(),
                why.join("; "),
                m.describe()
            ));
        }
    }
    eprintln!(
        "bad inputs: {} cases, {} failed; slowest {:.2} s, largest peak RSS {} KiB",
        cases.len(),
        failures.len(),
        worst.0,
        worst.1
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_values_flag_refuses_bad_files_quickly_and_small() {
    let inputs = Inputs::new();
    let (_keep, root) = node(|_| {});
    let root = root.display().to_string();
    let mut cases = Vec::new();
    for (label, path) in inputs.yaml() {
        let shown = if label == "a directory" {
            path.clone()
        } else {
            Path::new(&path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(path.clone())
        };
        for (cmd, args) in [
            ("run -f", vec!["run", "--root", &root, "-f", &path]),
            ("plan -f", vec!["plan", "--root", &root, "-f", &path]),
            (
                "install -f",
                vec!["install", "--root", &root, "--yes", "-f", &path],
            ),
            ("compile -f", vec!["compile", "--no-verify", "-f", &path]),
            ("job -f", vec!["job", "-f", &path]),
            (
                "run --chart",
                vec!["run", "--root", &root, "--chart", &path],
            ),
        ] {
            // A directory is a chart dir for --chart (without Chart.yaml: also refused).
            let names = if cmd == "run --chart" && label == "a directory" {
                "Chart.yaml".to_string()
            } else {
                shown.clone()
            };
            cases.push(case(format!("{cmd} {label}"), &args, names));
        }
    }
    check_all(&cases);
}

#[test]
fn stdin_is_read_with_the_same_caps() {
    let inputs = Inputs::new();
    let (_keep, root) = node(|_| {});
    let root = root.display().to_string();
    let mut cases = Vec::new();
    for input in [
        "/dev/zero".to_string(),
        inputs.path("big.yaml"),
        inputs.path("deep-flow.yaml"),
    ] {
        let mut c = case(
            format!("run -f - < {input}"),
            &["run", "--root", &root, "-f", "-"],
            "<stdin>",
        );
        c.stdin = Some(PathBuf::from(&input));
        cases.push(c);
        let mut c = case(
            format!("aggregate - < {input}"),
            &["aggregate", "-"],
            "<stdin>",
        );
        c.stdin = Some(PathBuf::from(&input));
        // A 100 MB file of zeros is one overlong line: refused, and no report found.
        cases.push(c);
    }
    check_all(&cases);
}

#[test]
fn reports_for_diff_and_aggregate_refuse_bad_files() {
    let inputs = Inputs::new();
    let mut cases = Vec::new();
    for name in ["fifo.yaml", "big.yaml", "deep.json", "loop.yaml"] {
        let p = inputs.path(name);
        cases.push(case(
            format!("diff {name} good"),
            &["diff", &p, REPORT],
            name,
        ));
        cases.push(case(
            format!("diff good {name}"),
            &["diff", REPORT, &p],
            name,
        ));
        cases.push(case(format!("aggregate {name}"), &["aggregate", &p], name));
    }
    cases.push(case(
        "diff /dev/zero",
        &["diff", "/dev/zero", REPORT],
        "/dev/zero",
    ));
    cases.push(case(
        "aggregate /dev/zero",
        &["aggregate", "/dev/zero"],
        "/dev/zero",
    ));
    check_all(&cases);
}

#[test]
fn a_20000_level_set_key_is_refused_by_every_command_that_takes_set() {
    let (_keep, root) = node(|_| {});
    let root = root.display().to_string();
    let deep = format!("{}=1", vec!["a"; 20_000].join("."));
    let cases: Vec<Case> = [
        vec!["run", "--root", &root, "--set", &deep],
        vec!["plan", "--root", &root, "--set", &deep],
        vec!["install", "--root", &root, "--yes", "--set", &deep],
        vec!["compile", "--no-verify", "--set", &deep],
        vec!["job", "--set", &deep],
    ]
    .into_iter()
    .map(|a| case(format!("{} --set 20000 levels", a[0]), &a, "20000 levels"))
    .collect();
    check_all(&cases);
}

#[test]
fn a_chart_with_a_bad_schema_or_archive_is_an_error_not_skipped() {
    let inputs = Inputs::new();
    let (_keep, root) = node(|_| {});
    let root = root.display().to_string();
    let work = tempfile::tempdir().unwrap();
    let chart = |name: &str, schema: &dyn Fn(&Path)| -> String {
        let dir = work.path().join(name);
        assert!(
            Command::new("cp")
                .args(["-a", CHART])
                .arg(&dir)
                .status()
                .unwrap()
                .success()
        );
        fs::remove_file(dir.join("values.schema.json")).unwrap();
        schema(&dir.join("values.schema.json"));
        dir.display().to_string()
    };
    let fifo = chart("schema-fifo", &|p| {
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()
    });
    let dir = chart("schema-dir", &|p| fs::create_dir(p).unwrap());
    let looped = chart("schema-loop", &|p| {
        std::os::unix::fs::symlink("values.schema.json", p).unwrap()
    });
    let big = chart("schema-big", &|p| {
        fs::File::create(p).unwrap().set_len(100 << 20).unwrap()
    });
    // A gzip bomb: 1 GiB of zeros packed into ~1 MiB.
    let bomb = work.path().join("bomb.tgz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 1073741824 /dev/zero | gzip -1 > {}",
            bomb.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let bomb = bomb.display().to_string();
    let mut cases = vec![
        case(
            "schema FIFO",
            &["run", "--root", &root, "--chart", &fifo],
            "values.schema.json",
        ),
        case(
            "schema dir",
            &["run", "--root", &root, "--chart", &dir],
            "values.schema.json",
        ),
        case(
            "schema loop",
            &["run", "--root", &root, "--chart", &looped],
            "values.schema.json",
        ),
        case(
            "schema 100 MB",
            &["run", "--root", &root, "--chart", &big],
            "values.schema.json",
        ),
        case(
            "gzip bomb",
            &["run", "--root", &root, "--chart", &bomb],
            "bomb.tgz",
        ),
    ];
    let deep = inputs.path("deep-flow.yaml");
    let deep_values = chart("values-deep", &|_| {});
    fs::copy(&deep, Path::new(&deep_values).join("values.yaml")).unwrap();
    cases.push(case(
        "chart values.yaml deep",
        &["run", "--root", &root, "--chart", &deep_values],
        "values.yaml",
    ));
    check_all(&cases);
}

#[test]
fn node_files_under_root_are_bounded_too() {
    let mut keep = Vec::new();
    let mut cases = Vec::new();
    let config = "etc/rancher/k3s/config.yaml";
    let containerd = "var/lib/rancher/k3s/agent/etc/containerd/config.toml";
    type Change = Box<dyn Fn(&Path)>;
    let hostile: Vec<(&str, &str, Change)> = vec![
        (
            "config.yaml FIFO",
            config,
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            }),
        ),
        (
            "config.yaml 100 MB",
            config,
            Box::new(|p: &Path| {
                fs::File::create(p).unwrap().set_len(100 << 20).unwrap();
            }),
        ),
        (
            "config.yaml deep",
            config,
            Box::new(|p: &Path| {
                fs::write(p, format!("a: {}\n", "[".repeat(200_000))).unwrap();
            }),
        ),
        (
            "config.yaml loop",
            config,
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                std::os::unix::fs::symlink("config.yaml", p).unwrap();
            }),
        ),
        (
            "config.toml FIFO",
            containerd,
            Box::new(|p: &Path| {
                let _ = fs::remove_file(p);
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap();
            }),
        ),
    ];
    for (label, rel, change) in &hostile {
        let (tmp, root) = node(|r| change(&r.join(rel)));
        let r = root.display().to_string();
        let leaf = Path::new(rel)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        cases.push(case(
            format!("plan {label}"),
            &["plan", "--root", &r],
            leaf.clone(),
        ));
        cases.push(case(
            format!("install {label}"),
            &["install", "--root", &r, "--yes"],
            leaf.clone(),
        ));
        keep.push(tmp);
    }
    if common::is_root() {
        let (tmp, root) = node(|r| {
            let p = r.join(config);
            fs::remove_file(&p).unwrap();
            nix::sys::stat::mknod(
                &p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::S_IRUSR,
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap();
        });
        let r = root.display().to_string();
        cases.push(case(
            "plan config.yaml /dev/zero",
            &["plan", "--root", &r],
            "config.yaml",
        ));
        keep.push(tmp);
    } else {
        eprintln!("SKIP the device-node case: mknod needs root");
    }
    // The journal: rollback and fallback read it first.
    for (label, make) in [
        (
            "journal FIFO",
            Box::new(|p: &Path| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap())
                as Box<dyn Fn(&Path)>,
        ),
        (
            "journal 100 MB",
            Box::new(|p: &Path| fs::File::create(p).unwrap().set_len(100 << 20).unwrap()),
        ),
        (
            "journal deep",
            Box::new(|p: &Path| fs::write(p, "[".repeat(200_000)).unwrap()),
        ),
    ] {
        let (tmp, root) = node(|r| {
            let dir = r.join("var/lib/preflight/journal");
            fs::create_dir_all(&dir).unwrap();
            make(&dir.join("journal.json"));
        });
        let r = root.display().to_string();
        cases.push(case(
            format!("rollback {label}"),
            &["rollback", "--root", &r],
            "journal.json",
        ));
        cases.push(case(
            format!("fallback {label}"),
            &["fallback", "flannel", "--root", &r, "--yes"],
            "journal.json",
        ));
        keep.push(tmp);
    }
    check_all(&cases);
}

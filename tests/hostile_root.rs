//! A hostile root (issue 12): `run`, `plan`, `install`, `rollback`, `fallback` and
//! `compile --as-node` on copies of the k3s fixture node where the paths they touch are
//! absolute, relative and directory symlinks out of the root, loops, FIFOs, devices,
//! hardlinks and oversized files. Next to the root lies an outside tree whose files carry a
//! `LEAK` sentinel: after every command it must be byte for byte, mode for mode what it was
//! (nothing read into the output, nothing written, moved or removed), and no output or tool
//! command line may contain the sentinel or the outside path. Also: crafted journals are
//! refused with nothing touched, pre-existing backup files survive a rollback, and two
//! installs on one root cannot run at once.
//!
//! helm, kubectl, systemctl, ip and the other tools are scripted stand-ins first on PATH (no
//! cluster exists here; docs/migration.md): they record their argv and succeed.
mod common;

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::measure::{Measured, measure};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/nodes/k3s-flannel-plan"
);
const SENTINEL: &str = "LEAK";
const LIMIT: Duration = Duration::from_secs(60);

const STAND_IN: &str = r#"#!/bin/bash
tool=$(basename "$0")
{ printf '%s' "$tool"; for a in "$@"; do printf ' %s' "$a"; done; echo; } >> "$STANDIN_DIR/argv.log"
case "$tool" in
ip) if [ "$1" = "-d" ]; then echo "Device \"$6\" does not exist." >&2; exit 1; fi ;;
helm)
  case "$1" in
  status) echo "Error: release: not found" >&2; exit 1 ;;
  upgrade)
    # The gate holds an install here, for the concurrency test.
    for _ in $(seq 400); do [ -e "$STANDIN_DIR/gate" ] || break; sleep 0.05; done ;;
  esac ;;
systemctl)
  case "$1" in
  is-active|is-enabled) exit 1 ;;
  restart)
    # k3s regenerates containerd's config on start: with flannel off it drops its CNI dirs.
    cfg="$STANDIN_ROOT/var/lib/rancher/k3s/agent/etc/containerd/config.toml"
    if [ -f "$STANDIN_ROOT/etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml" ] && [ -f "$cfg" ] && [ ! -L "$cfg" ]; then
      sed -i -e 's|bin_dir = .*|bin_dir = "/opt/cni/bin"|' -e 's|conf_dir = .*|conf_dir = "/etc/cni/net.d"|' "$cfg"
    fi ;;
  esac ;;
esac
exit 0
"#;

/// Files outside the root, each with the sentinel in it, and dirs with files inside.
const OUTSIDE: &[(&str, &str)] = &[
    (
        "config.yaml",
        "flannel-backend: LEAKBACKEND\ncluster-cidr: 10.99.0.0/16\n",
    ),
    (
        "config.yaml.d/50-leak.yaml",
        "flannel-backend: LEAKDROPIN\n",
    ),
    (
        "config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/LEAKBIN\"\n  conf_dir = \"/LEAKCONF\"\n",
    ),
    (
        "net.d/10-flannel-LEAK.conflist",
        "{\"name\":\"LEAKCONFLIST\"}\n",
    ),
    ("preflight/journal/backup/0001-keep", "LEAKKEEP\n"),
    ("preflight/cilium-values.yaml", "LEAKVALUES: 1\n"),
    ("varlib/preflight/journal/backup/0002-keep", "LEAKKEEP2\n"),
    (
        "systemd/system/LEAK.service",
        "[Unit]\nDescription=LEAKUNIT\n",
    ),
    ("node_config.h", "/* LEAKHEADER */\n#define LEAK 1\n"),
    ("rp_filter", "LEAK-rp-filter\n"),
    ("k3s.yaml", "LEAKKUBECONFIG: 1\n"),
    (
        "hardlinked.conflist",
        "{\"name\":\"cbr0\",\"plugins\":[{\"type\":\"flannel\"}]}\n",
    ),
    ("victim", "LEAKVICTIM\n"),
    ("victim-dir/inside", "LEAKVICTIMDIR\n"),
];

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    standin: PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    assert!(
        Command::new("cp")
            .args(["-a", FIXTURE])
            .arg(&root)
            .status()
            .unwrap()
            .success()
    );
    for (rel, text) in OUTSIDE {
        let p = outside.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
    }
    fs::set_permissions(outside.join("victim"), fs::Permissions::from_mode(0o640)).unwrap();
    let standin = tmp.path().join("standin");
    let bin = standin.join("bin");
    common::install_standins(&bin, &common::MIGRATION_TOOLS, STAND_IN);
    World {
        _tmp: tmp,
        root,
        outside,
        standin,
    }
}

/// Every path under `dir`: type, mode, owner, size and content or link target.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        let mut entries: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ids = format!("{:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
            let ft = m.file_type();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", fs::read_link(&p).unwrap().display()),
                );
            } else if ft.is_dir() {
                out.insert(rel, format!("dir {ids}"));
                walk(base, &p, out);
            } else if ft.is_file() {
                // Big sparse files: compare size, not bytes.
                let content = if m.len() > 1 << 20 {
                    format!("{} bytes", m.len())
                } else {
                    String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
                };
                out.insert(rel, format!("file {ids} {content}"));
            } else {
                out.insert(rel, format!("special {ids}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

impl World {
    fn out(&self, rel: &str) -> String {
        self.outside.join(rel).display().to_string()
    }
    fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    /// Replace `rel` in the root with a symlink to `target`.
    fn link(&self, rel: &str, target: &str) {
        let p = self.at(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
            Ok(_) => fs::remove_file(&p).unwrap(),
            Err(_) => {}
        }
        symlink(target, &p).unwrap();
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = common::bin();
        let path = format!(
            "{}:{}",
            self.standin.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.args(args)
            .arg("--root")
            .arg(&self.root)
            .env("PATH", path)
            .env("STANDIN_DIR", &self.standin)
            .env("STANDIN_ROOT", &self.root)
            .env_remove("PREFLIGHT_FAULT_AT")
            .env_remove("PREFLIGHT_KILL_AT")
            .stdin(std::process::Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Measured {
        measure(self.command(args), LIMIT)
    }
    fn argv_log(&self) -> String {
        fs::read_to_string(self.standin.join("argv.log")).unwrap_or_default()
    }
}

type Setup = fn(&World);

/// The hostile variants: each changes one path (or a few) a command touches.
fn variants() -> Vec<(&'static str, Setup)> {
    vec![
        ("config.yaml absolute symlink out", |w| {
            w.link("etc/rancher/k3s/config.yaml", &w.out("config.yaml"))
        }),
        ("config.yaml relative symlink climbing out", |w| {
            w.link(
                "etc/rancher/k3s/config.yaml",
                "../../../../outside/config.yaml",
            )
        }),
        ("config.yaml.d directory symlink out", |w| {
            w.link("etc/rancher/k3s/config.yaml.d", &w.out("config.yaml.d"))
        }),
        ("config.yaml.d -> /", |w| {
            w.link("etc/rancher/k3s/config.yaml.d", "/")
        }),
        ("var/lib/preflight absolute symlink out", |w| {
            w.link("var/lib/preflight", &w.out("preflight"))
        }),
        ("var/lib symlink out", |w| {
            w.link("var/lib", &w.out("varlib"))
        }),
        ("var/lib/preflight relative symlink climbing out", |w| {
            w.link("var/lib/preflight", "../../../outside/preflight")
        }),
        ("containerd config.toml symlink out", |w| {
            w.link(
                "var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                &w.out("config.toml"),
            )
        }),
        ("k3s CNI conf dir symlink out", |w| {
            w.link("var/lib/rancher/k3s/agent/etc/cni/net.d", &w.out("net.d"))
        }),
        ("systemd unit dir symlink out", |w| {
            w.link("etc/systemd/system", &w.out("systemd/system"))
        }),
        ("node_config.h symlink out", |w| {
            w.link(
                "var/run/cilium/state/globals/node_config.h",
                &w.out("node_config.h"),
            )
        }),
        ("rp_filter symlink out", |w| {
            w.link("proc/sys/net/ipv4/conf/all/rp_filter", &w.out("rp_filter"))
        }),
        ("kubeconfig symlink out", |w| {
            w.link("etc/rancher/k3s/k3s.yaml", &w.out("k3s.yaml"))
        }),
        ("/etc/fstab and /proc/modules symlinks out", |w| {
            w.link("etc/fstab", &w.out("victim"));
            w.link("proc/modules", &w.out("victim"));
        }),
        ("symlink loops", |w| {
            w.link("etc/rancher/k3s/config.yaml.d", "config.yaml.d");
            w.link("var/run", "/var/run");
        }),
        ("config.yaml is a FIFO", |w| {
            let p = w.at("etc/rancher/k3s/config.yaml");
            fs::remove_file(&p).unwrap();
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }),
        // mknod needs root; unprivileged the file is simply absent (a case of its own).
        (
            "containerd config.toml is a device (absent if not root)",
            |w| {
                let p = w.at("var/lib/rancher/k3s/agent/etc/containerd/config.toml");
                let _ = fs::remove_file(&p);
                if common::is_root() {
                    nix::sys::stat::mknod(
                        &p,
                        nix::sys::stat::SFlag::S_IFCHR,
                        nix::sys::stat::Mode::S_IRUSR,
                        nix::sys::stat::makedev(1, 5),
                    )
                    .unwrap();
                }
            },
        ),
        ("a conflist hardlinked to an outside file", |w| {
            let p = w.at("var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist");
            fs::remove_file(&p).unwrap();
            fs::hard_link(w.outside.join("hardlinked.conflist"), &p).unwrap();
        }),
        ("oversized config.yaml", |w| {
            fs::File::create(w.at("etc/rancher/k3s/config.yaml"))
                .unwrap()
                .set_len(100 << 20)
                .unwrap();
        }),
    ]
}

/// After a command: outside untouched, nothing of it in the output or the tools' argv.
fn assert_contained(w: &World, before: &BTreeMap<String, String>, what: &str, m: &Measured) {
    assert!(
        m.signal.is_none() && matches!(m.code, Some(0..=2)),
        "{what}: did not end cleanly\n{}",
        m.describe()
    );
    assert!(
        !m.stderr.contains("panicked"),
        "{what}: panicked\n{}",
        m.describe()
    );
    let after = snapshot(&w.outside);
    assert_eq!(
        &after,
        before,
        "{what}: the outside tree changed\n{}",
        m.describe()
    );
    let outside = w.outside.display().to_string();
    for (stream, text) in [("stdout", &m.stdout), ("stderr", &m.stderr)] {
        assert!(
            !text.contains(SENTINEL),
            "{what}: outside content in {stream}\n{}",
            m.describe()
        );
    }
    // The outside path taken inside the root (root + outside path) is inside: not a leak.
    let argv = w.argv_log().replace(
        &format!("{}{outside}", w.root.display()),
        "<inside the root>",
    );
    assert!(
        !argv.contains(SENTINEL) && !argv.contains(&format!("{outside}/")),
        "{what}: a tool was handed something outside the root:\n{argv}"
    );
}

fn run_matrix(range: std::ops::Range<usize>) -> usize {
    let all = variants();
    let mut runs = 0;
    for (name, setup) in &all[range.start..range.end.min(all.len())] {
        let w = world();
        setup(&w);
        let before = snapshot(&w.outside);
        let steps: &[&[&str]] = &[
            &["run"],
            &["plan"],
            &["install", "--yes"],
            &["rollback"],
            &["fallback", "flannel", "--yes"],
            &["rollback"],
        ];
        for args in steps {
            let m = w.run(args);
            assert_contained(&w, &before, &format!("{name}: {}", args.join(" ")), &m);
            runs += 1;
        }
    }
    runs
}

#[test]
fn hostile_roots_a() {
    let n = run_matrix(0..7);
    eprintln!("hostile root matrix (part a): {n} command runs, outside untouched");
}

#[test]
fn hostile_roots_b() {
    let n = run_matrix(7..13);
    eprintln!("hostile root matrix (part b): {n} command runs, outside untouched");
}

#[test]
fn hostile_roots_c() {
    let n = run_matrix(13..usize::MAX);
    eprintln!("hostile root matrix (part c): {n} command runs, outside untouched");
}

/// Where install writes through a symlink out of the root, it writes inside the root at the
/// link's target instead; rollback removes exactly that again.
#[test]
fn install_and_rollback_through_a_linked_state_dir_stay_inside() {
    let w = world();
    w.link("var/lib/preflight", &w.out("preflight"));
    let before = snapshot(&w.outside);
    let m = w.run(&["install", "--yes"]);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    let inside = w
        .root
        .join(w.outside.strip_prefix("/").unwrap())
        .join("preflight");
    assert!(
        inside.join("journal/journal.json").is_file(),
        "the journal went inside the root"
    );
    let m = w.run(&["rollback"]);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    assert_eq!(snapshot(&w.outside), before);
}

#[test]
#[cfg_attr(not(prereq = "clang-19"), ignore = "needs clang-19 (scripts/setup.sh)")]
fn compile_as_node_reads_nothing_outside_the_root() {
    let setups: Vec<(&str, Setup)> = vec![
        ("node_config.h symlink out", |w| {
            w.link(
                "var/run/cilium/state/globals/node_config.h",
                &w.out("node_config.h"),
            )
        }),
        ("node_config.h relative symlink climbing out", |w| {
            w.link(
                "var/run/cilium/state/globals/node_config.h",
                "../../../../../../outside/node_config.h",
            )
        }),
        ("state dir symlink out", |w| {
            w.link("var/run/cilium/state/globals", &w.out(""))
        }),
        ("node_config.h a FIFO", |w| {
            let p = w.at("var/run/cilium/state/globals/node_config.h");
            let _ = fs::remove_file(&p);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        }),
        ("rp_filter and udp symlinks out", |w| {
            w.link("proc/sys/net/ipv4/conf/all/rp_filter", &w.out("rp_filter"));
            w.link("proc/net", &w.out(""));
            w.link("var/lib/rancher/k3s/agent/etc/flannel", &w.out(""));
        }),
    ];
    for (name, setup) in setups {
        let w = world();
        // flannel.1 makes the agent's init fail: the leftover header is then used.
        fs::create_dir_all(w.at("sys/class/net/flannel.1")).unwrap();
        setup(&w);
        let before = snapshot(&w.outside);
        let m = w.run(&["compile", "--as-node", "--no-verify", "--jobs", "2"]);
        assert_contained(&w, &before, &format!("compile --as-node, {name}"), &m);
    }
}

// ---- crafted journals -------------------------------------------------------------------

fn journal_json(backups: &[&str], created: &[&str], entries: &[String], version: u32) -> String {
    format!(
        r#"{{"version":{version},"status":"complete","runs":["install"],"created_dirs":{},"backups":{},"entries":[{}]}}"#,
        serde_json::to_string(created).unwrap(),
        serde_json::to_string(backups).unwrap(),
        entries.join(",")
    )
}

fn entry(seq: u32, undo: &str) -> String {
    format!(r#"{{"seq":{seq},"step":"crafted","undo":{undo},"state":"done"}}"#)
}

#[test]
fn crafted_journals_are_refused_and_nothing_is_touched() {
    let probe = world();
    let out = |rel: &str| probe.out(rel);
    let root = probe.root.display().to_string();
    let file_prior = |backup: &str| {
        format!(r#"{{"kind":"file","backup":"{backup}","mode":420,"uid":0,"gid":0}}"#)
    };
    let b = "/var/lib/preflight/journal/backup";
    let cases: Vec<(&str, String)> = vec![
        (
            "delete an outside file (.. in the path)",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"path","path":"/../outside/victim","prior":{"kind":"absent"}}"#,
                )],
                2,
            ),
        ),
        (
            "move an outside file into the root (absolute backup)",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    &format!(
                        r#"{{"undo":"moved","path":"/etc/stolen","backup":"{}"}}"#,
                        out("victim")
                    ),
                )],
                2,
            ),
        ),
        (
            "replace an outside dir with a file",
            journal_json(
                &["0001-x"],
                &[],
                &[entry(
                    1,
                    &format!(
                        r#"{{"undo":"path","path":"/../outside/victim-dir","prior":{}}}"#,
                        file_prior(&format!("{b}/0001-x"))
                    ),
                )],
                2,
            ),
        ),
        (
            "version 1 with host paths outside the root",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    &format!(
                        r#"{{"undo":"moved","path":"/etc/stolen","backup":"{}"}}"#,
                        out("victim")
                    ),
                )],
                1,
            ),
        ),
        (
            "a backup that climbs out of the backup dir",
            journal_json(
                &["0001-x"],
                &[],
                &[entry(
                    1,
                    &format!(
                        r#"{{"undo":"path","path":"/etc/x","prior":{}}}"#,
                        file_prior(&format!("{b}/../../../../../outside/victim"))
                    ),
                )],
                2,
            ),
        ),
        (
            "a reserved backup name that is a path",
            journal_json(&["../../../../../outside/victim"], &[], &[], 2),
        ),
        (
            "created_dirs naming /etc",
            journal_json(&[], &["/etc"], &[], 2),
        ),
        (
            "helm arguments that are not --kubeconfig",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"helm","release":"cilium","namespace":"kube-system","prior_revision":null,"extra_args":["--post-renderer","/bin/sh"]}"#,
                )],
                2,
            ),
        ),
        (
            "a kubeconfig outside the root",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    &format!(
                        r#"{{"undo":"helm","release":"cilium","namespace":"kube-system","prior_revision":null,"extra_args":["--kubeconfig","{}"]}}"#,
                        out("k3s.yaml")
                    ),
                )],
                2,
            ),
        ),
        (
            "firewall-cmd arguments that are not an undo",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"firewall","remove_args":["--direct","--passthrough","ipv4","-F"]}"#,
                )],
                2,
            ),
        ),
        (
            "kubectl arguments that are not a rollout restart",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"rollout_restart","args":["delete","namespace","kube-system"]}"#,
                )],
                2,
            ),
        ),
        (
            "a sysctl key that is an option",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"sysctl","key":"-p/etc/shadow","prior":"0"}"#,
                )],
                2,
            ),
        ),
        (
            "a module name that is an option",
            journal_json(
                &[],
                &[],
                &[entry(1, r#"{"undo":"module","name":"--remove-all"}"#)],
                2,
            ),
        ),
        (
            "a link name that is not an interface",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"link","name":"eth0 type dummy","prior":null}"#,
                )],
                2,
            ),
        ),
        (
            "an iptables snapshot outside the backups",
            journal_json(
                &[],
                &[],
                &[entry(1, r#"{"undo":"iptables","snapshot":"/etc/shadow"}"#)],
                2,
            ),
        ),
        (
            "make-shared of /",
            journal_json(
                &[],
                &[],
                &[entry(1, r#"{"undo":"made_shared","path":"/"}"#)],
                2,
            ),
        ),
        (
            "a path inside the journal's own dir",
            journal_json(
                &[],
                &[],
                &[entry(
                    1,
                    r#"{"undo":"path","path":"/var/lib/preflight/journal/journal.json","prior":{"kind":"absent"}}"#,
                )],
                2,
            ),
        ),
        ("not JSON", "{\"version\": 2, \"entries\": [".to_string()),
    ];
    let _ = root;
    let mut refused = 0;
    for (name, json) in &cases {
        for cmd in [
            &["rollback"][..],
            &["fallback", "flannel", "--yes"],
            &["install", "--yes"],
        ] {
            let w = world();
            let dir = w.at("var/lib/preflight/journal");
            fs::create_dir_all(dir.join("backup")).unwrap();
            fs::write(dir.join("backup/0001-x"), "backup bytes\n").unwrap();
            fs::write(dir.join("journal.json"), json).unwrap();
            let outside = snapshot(&w.outside);
            let inside = snapshot(&w.root);
            let m = w.run(cmd);
            let what = format!("{name}: {}", cmd.join(" "));
            assert_eq!(m.code, Some(2), "{what}\n{}", m.describe());
            assert!(
                m.stderr.contains("journal.json")
                    && (m.stderr.contains("refused") || m.stderr.contains("corrupt")),
                "{what}: the error names the journal and says why\n{}",
                m.describe()
            );
            assert_eq!(snapshot(&w.outside), outside, "{what}: outside changed");
            assert_eq!(snapshot(&w.root), inside, "{what}: the root changed");
            assert!(
                w.argv_log()
                    .lines()
                    .all(|l| !l.contains("upgrade") && !l.contains("uninstall")),
                "{what}"
            );
            refused += 1;
        }
    }
    eprintln!(
        "crafted journals: {} journals x 3 commands = {refused} refusals, nothing touched",
        cases.len()
    );
}

#[test]
fn rollback_removes_only_what_its_journal_created() {
    let w = world();
    let backup = w.at("var/lib/preflight/journal/backup");
    fs::create_dir_all(&backup).unwrap();
    // Someone's files, some with the names preflight's backups would get.
    let mut theirs = vec!["keep-me".to_string()];
    for n in 1..=40 {
        for leaf in [
            "sys-fs-bpf.mount",
            "10-flannel.conflist",
            "config.toml",
            "templates",
        ] {
            theirs.push(format!("{n:04}-{leaf}"));
        }
    }
    for name in &theirs {
        fs::write(backup.join(name), format!("theirs {name}\n")).unwrap();
    }
    let before = snapshot(&w.root);
    let m = w.run(&["install", "--yes"]);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    let m = w.run(&["rollback"]);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    for name in &theirs {
        assert_eq!(
            fs::read_to_string(backup.join(name)).unwrap(),
            format!("theirs {name}\n"),
            "{name} was touched"
        );
    }
    let after = snapshot(&w.root);
    let diff: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(after.keys().filter(|k| !before.contains_key(*k)).cloned())
        .collect();
    assert!(
        diff.is_empty(),
        "the root differs after install + rollback: {diff:?}"
    );
}

// ---- one change at a time -----------------------------------------------------------------

#[test]
fn two_installs_on_one_root_cannot_run_at_once() {
    let w = world();
    fs::write(w.standin.join("gate"), "").unwrap();
    let mut first = w.command(&["install", "--yes"]);
    first
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut first = first.spawn().unwrap();
    // Wait until the first install is inside helm (holding the lock, mid-change).
    let start = Instant::now();
    while !w.argv_log().contains("helm upgrade") {
        assert!(
            start.elapsed() < LIMIT,
            "the first install never reached helm"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for args in [
        &["install", "--yes"][..],
        &["rollback"],
        &["fallback", "flannel", "--yes"],
    ] {
        let m = w.run(args);
        assert_eq!(m.code, Some(2), "{args:?}\n{}", m.describe());
        assert!(
            m.stderr.contains("`preflight install`")
                && m.stderr.contains(&format!("pid {}", first.id()))
                && m.stderr.contains("Nothing was changed"),
            "{args:?}: names the holder\n{}",
            m.describe()
        );
    }
    fs::remove_file(w.standin.join("gate")).unwrap();
    let status = first.wait().unwrap();
    assert!(status.success(), "the first install completes");
    // Released: the next command runs. A stale record (a pid that is gone) does not block.
    fs::write(
        w.at("var/lib/preflight/lock"),
        "2147483646 not-this-boot install 1\n",
    )
    .unwrap();
    let m = w.run(&["rollback"]);
    assert_eq!(m.code, Some(0), "{}", m.describe());
    assert!(
        m.stderr.contains("taking over the stale lock"),
        "{}",
        m.describe()
    );
    assert!(
        !w.at("var/lib/preflight").exists(),
        "the lock and state dir are gone"
    );
}

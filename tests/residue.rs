//! Nothing survives a run: no scratch cgroup, no canary program or link, no veth, no mount, no
//! netns — after a normal run, and after a SIGKILL halfway through (of `preflight run`, or of the
//! canary worker itself), held at its fullest point by PREFLIGHT_TEST_HOLD_MS.
mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use common::bin;
use preflight_ebpf_common::maps;

const CANARY_MAPS: [&str; 5] = [
    maps::COUNTERS,
    maps::CALLS,
    maps::FLOWS,
    maps::PREFIXES,
    maps::AYA_LOGS,
];

/// Everything a canary run creates that could outlive it, as seen from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Residue {
    cgroup_dirs: BTreeSet<String>,
    canary_programs: usize,
    /// Maps named like the canaries' (aya-log's ring buffer included).
    canary_maps: usize,
    host_links: BTreeSet<String>,
    mounts: BTreeSet<String>,
    named_netns: BTreeSet<String>,
}

fn cgroup2_mount() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2")
            .then(|| pre.split_whitespace().nth(4).unwrap().to_string())
    })
}

fn list(dir: &str, filter: impl Fn(&str) -> bool) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| filter(n))
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot() -> Residue {
    let cg = cgroup2_mount().expect("cgroup2 mounted");
    let canary_programs = aya::programs::loaded_programs()
        .flatten()
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("canary_")))
        .count();
    let canary_maps = aya::maps::loaded_maps()
        .flatten()
        .filter(|m| m.name_as_str().is_some_and(|n| CANARY_MAPS.contains(&n)))
        .count();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = pre.split_whitespace().nth(4)?;
            Some(format!("{point} {}", post.split_whitespace().next()?))
        })
        .collect();
    Residue {
        cgroup_dirs: list(&cg, |n| n.starts_with("preflight-canary-")),
        canary_programs,
        canary_maps,
        host_links: list("/sys/class/net", |_| true),
        mounts,
        named_netns: list("/run/netns", |_| true),
    }
}

/// Other processes on a shared machine may churn too: wait for the state to settle back.
fn assert_returns_to(baseline: &Residue, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = snapshot();
        if &now == baseline {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: residue left behind\nbefore: {baseline:#?}\nafter: {now:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests of this file run one at a time: each compares the host before and after its own
/// run, and another test's canary in flight (held for seconds on purpose) would show up as
/// residue.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one must still run, one at a time.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn baseline() -> Residue {
    // Settle first: no canary of anyone else's in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = snapshot();
        let idle = s.canary_programs == 0 && s.canary_maps == 0 && s.cgroup_dirs.is_empty();
        if idle || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `preflight run` (with `extra` arguments) with the worker told to hold, and waits until
/// it holds.
fn start_held_run(extra: &[&str]) -> Child {
    let child = bin()
        .args(["run", "--format", "json"])
        .args(extra)
        .env("PREFLIGHT_TEST_HOLD_MS", "20000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The worker's stderr is captured by `run` itself; watch for the cgroup directory instead,
    // which exists only once the worker is in it with programs attached.
    let cg = cgroup2_mount().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while list(&cg, |n| n.starts_with("preflight-canary-")).is_empty() {
        assert!(
            Instant::now() < deadline,
            "worker never reached its hold point"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = snapshot();
    assert!(
        held.canary_programs >= 5,
        "expected attached canaries while held: {held:?}"
    );
    child
}

/// The canary worker: a child of whichever preflight thread spawned it (the canaries run on
/// their own thread, beside the compile stage's clang children), so every task's children are
/// searched for the worker's command line.
fn worker_pid(parent: u32) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{parent}/task"))
        .ok()?
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("__canary-worker"))
        })
}

#[test]
fn a_normal_run_leaves_nothing_behind() {
    require_root!();
    let _serial = serial();
    let before = baseline();
    let out = bin().args(["run", "--format", "json"]).output().unwrap();
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_returns_to(&before, "normal run");
}

#[test]
fn sigkill_of_preflight_run_halfway_leaves_nothing_behind() {
    require_root!();
    let _serial = serial();
    let before = baseline();
    let mut child = start_held_run(&[]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_returns_to(&before, "SIGKILL of preflight run");
}

#[test]
fn sigkill_of_the_canary_worker_halfway_leaves_nothing_behind() {
    require_root!();
    let _serial = serial();
    let before = baseline();
    let child = start_held_run(&[]);
    kill_worker_and_wait(child);
    assert_returns_to(&before, "SIGKILL of the canary worker");
}

/// At -vv the worker runs the logging build: aya-log's ring buffer and the logger's handle on it
/// go with the worker too.
#[test]
fn sigkill_of_the_canary_worker_at_vv_leaves_nothing_behind() {
    require_root!();
    let _serial = serial();
    let before = baseline();
    let child = start_held_run(&["-vv"]);
    let logs = aya::maps::loaded_maps()
        .flatten()
        .filter(|m| m.name_as_str() == Some(maps::AYA_LOGS))
        .count();
    assert!(logs > 0, "the logging build is not loaded at -vv");
    kill_worker_and_wait(child);
    assert_returns_to(&before, "SIGKILL of the canary worker at -vv");
}

/// SIGKILLs the held run's canary worker; `preflight run` itself carries on and reports the
/// canaries as unknown.
fn kill_worker_and_wait(mut child: Child) {
    let worker = worker_pid(child.id()).expect("worker process");
    // SAFETY: plain kill(2) of our own grandchild.
    assert_eq!(unsafe { libc::kill(worker, libc::SIGKILL) }, 0);
    let stderr = child.stderr.take().unwrap();
    let status = child.wait().unwrap();
    let _ = BufReader::new(stderr).lines().count();
    assert!(
        status.code().is_some(),
        "preflight run itself must survive its worker's death"
    );
}

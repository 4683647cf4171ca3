//! Attach canaries: the programs in `preflight-ebpf`, loaded and attached for real, with traffic
//! sent through them to prove they ran.
//!
//! Leaving nothing behind, even on SIGKILL, is by construction:
//! - the work happens in a child process (`preflight __canary-worker`) that unshares a network
//!   and a mount namespace: the veth pair, qdiscs, tc/tcx/XDP links and the private bpffs with
//!   its pins vanish with that process;
//! - the one thing the kernel keeps, the scratch cgroup v2 directory, is removed by the worker,
//!   and otherwise by a detached janitor (`preflight __canary-janitor`) that waits for the
//!   worker to die; stale directories of dead workers are swept before each run;
//! - the worker gets SIGKILL when its parent dies (PR_SET_PDEATHSIG).
mod cgroup;
mod janitor;
mod packet;
pub mod worker;

use std::{
    collections::BTreeMap,
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub use janitor::janitor_main;
use serde::{Deserialize, Serialize};

use super::Support;

/// The canary object built from preflight-ebpf by build.rs (empty with AYA_BUILD_SKIP=1).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/preflight-ebpf"));

/// Names of the canaries, in report order.
pub const CANARIES: &[&str] = &[
    "tc",
    "tcx",
    "xdp",
    "tail_call",
    "lru_hash",
    "lpm_trie",
    "cgroup_sock_addr",
    "bpffs_pin",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryResult {
    #[serde(flatten)]
    pub support: Support,
    /// What was attached where, and what the counters said.
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub results: BTreeMap<String, CanaryResult>,
    pub elapsed_ms: f64,
}

impl CanaryReport {
    /// Every canary unknown for one reason (no object, worker could not start, ...).
    pub fn all_unknown(reason: &str) -> Self {
        let results = CANARIES
            .iter()
            .map(|name| {
                let r = CanaryResult {
                    support: Support::Unknown {
                        reason: reason.to_string(),
                    },
                    detail: String::new(),
                };
                (name.to_string(), r)
            })
            .collect();
        Self {
            results,
            elapsed_ms: 0.0,
        }
    }
}

const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the canaries in a worker process and returns what it found.
pub fn run() -> CanaryReport {
    let start = Instant::now();
    if OBJECT.is_empty() {
        return CanaryReport::all_unknown(
            "this binary was built without the eBPF object (AYA_BUILD_SKIP)",
        );
    }
    cgroup::sweep_stale();
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return CanaryReport::all_unknown(&format!("cannot find own executable: {e}")),
    };
    let mut child = match Command::new(exe)
        .arg("__canary-worker")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return CanaryReport::all_unknown(&format!("cannot start canary worker: {e}")),
    };
    // The worker prints one JSON document when done; wait with a deadline.
    let deadline = Instant::now() + WORKER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let mut report = match (status, serde_json::from_str::<CanaryReport>(&stdout)) {
        (Some(_), Ok(report)) => report,
        (None, _) => CanaryReport::all_unknown(&format!(
            "canary worker did not finish within {}s",
            WORKER_TIMEOUT.as_secs()
        )),
        (Some(status), Err(_)) => CanaryReport::all_unknown(&format!(
            "canary worker failed ({status}): {}",
            stderr.lines().last().unwrap_or("no output")
        )),
    };
    report.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    report
}

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
//!
//! What the programs saw (aya-log records) is shown at `-vv`: the parent then asks the worker
//! for the logging build of the programs and relays its records as tracing debug events.
#![deny(clippy::undocumented_unsafe_blocks)]

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

use crate::model::Support;

/// The canary object built from preflight-ebpf by build.rs (empty with AYA_BUILD_SKIP=1).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/preflight-ebpf"));

/// The same programs built with `--features log`: they also report what they saw through
/// aya-log, which needs a ring buffer map (kernel 5.8). Loaded only when debug logging is on.
pub static LOG_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/preflight-ebpf-log"));

/// The tracing target of the relayed aya-log records (`RUST_LOG=preflight::probe::canary::ebpf=debug`
/// shows only them).
pub const EBPF_LOG_TARGET: &str = "preflight::probe::canary::ebpf";

/// Set on the worker when the parent wants the programs' aya-log records.
const EBPF_LOG_ENV: &str = "PREFLIGHT_CANARY_EBPF_LOG";

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
    let mut worker = Command::new(exe);
    worker.arg("__canary-worker").env_remove(EBPF_LOG_ENV);
    // At -vv only: the logging build costs a ring buffer and a log call per frame.
    if tracing::enabled!(target: EBPF_LOG_TARGET, tracing::Level::DEBUG) {
        worker.env(EBPF_LOG_ENV, "1");
    }
    let mut child = match worker
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
    let mut report = match (status, serde_json::from_str::<worker::Output>(&stdout)) {
        (Some(_), Ok(output)) => {
            relay(&output.ebpf_log);
            output.report
        }
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

/// The programs' aya-log records as tracing events, each distinct record once with its count, in
/// order of first appearance (eight frames make the same records eight times, interleaved: tcx
/// egress, XDP, tc ingress, tail call).
fn relay(records: &[worker::EbpfRecord]) {
    for (record, count) in fold(records) {
        let message = &record.message;
        let times = if count > 1 {
            format!(" ({count} times)")
        } else {
            String::new()
        };
        match record.level {
            log::Level::Error => tracing::error!(target: EBPF_LOG_TARGET, "{message}{times}"),
            log::Level::Warn => tracing::warn!(target: EBPF_LOG_TARGET, "{message}{times}"),
            log::Level::Info => tracing::info!(target: EBPF_LOG_TARGET, "{message}{times}"),
            log::Level::Debug => tracing::debug!(target: EBPF_LOG_TARGET, "{message}{times}"),
            log::Level::Trace => tracing::trace!(target: EBPF_LOG_TARGET, "{message}{times}"),
        }
    }
}

/// Distinct records with how often each came, in order of first appearance.
fn fold(records: &[worker::EbpfRecord]) -> Vec<(&worker::EbpfRecord, usize)> {
    let mut folded: Vec<(&worker::EbpfRecord, usize)> = Vec::new();
    for record in records {
        match folded.iter_mut().find(|(seen, _)| *seen == record) {
            Some((_, count)) => *count += 1,
            None => folded.push((record, 1)),
        }
    }
    folded
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use object::{Object, ObjectSection, SectionKind};
    use preflight_ebpf_common::{COUNTER_SLOTS, maps, programs};

    use super::{LOG_OBJECT, OBJECT, fold, worker::EbpfRecord};

    /// Both objects, which build.rs always builds for `cargo test` (AYA_BUILD_SKIP is for
    /// quick host-only checks, not for tests).
    fn objects() -> [(&'static str, &'static [u8]); 2] {
        for (name, data) in [("default", OBJECT), ("logging", LOG_OBJECT)] {
            assert!(
                !data.is_empty(),
                "the {name} object is empty: built with AYA_BUILD_SKIP?"
            );
        }
        [("default", OBJECT), ("logging", LOG_OBJECT)]
    }

    /// (code, src_reg, imm) of every instruction in the object's code sections.
    fn instructions(data: &[u8]) -> Vec<(u8, u8, i32)> {
        let elf = object::File::parse(data).expect("the canary object parses");
        elf.sections()
            .filter(|s| s.kind() == SectionKind::Text)
            .flat_map(|s| s.data().expect("section data").to_vec())
            .collect::<Vec<u8>>()
            .chunks_exact(8)
            .map(|i| {
                (
                    i[0],
                    i[1] >> 4,
                    i32::from_le_bytes([i[4], i[5], i[6], i[7]]),
                )
            })
            .collect()
    }

    #[test]
    fn both_objects_hold_every_name_user_space_shares_with_them() {
        for (build, data) in objects() {
            let obj = aya_obj::Object::parse(data).expect("aya parses the canary object");
            for program in programs::ALL {
                assert!(obj.programs.contains_key(program), "{build}: {program}");
            }
            for map in [maps::COUNTERS, maps::CALLS, maps::FLOWS, maps::PREFIXES] {
                assert!(obj.maps.contains_key(map), "{build}: {map}");
            }
            assert_eq!(
                obj.maps[maps::COUNTERS].max_entries(),
                COUNTER_SLOTS,
                "{build}"
            );
        }
    }

    /// aya-log's ring buffer is a map type kernels before 5.8 cannot create, and one map the
    /// kernel refuses fails the whole object: only the logging build may have it.
    #[test]
    fn only_the_logging_object_has_aya_logs_ring_buffer() {
        let has_logs = |data| {
            aya_obj::Object::parse(data)
                .unwrap()
                .maps
                .contains_key(maps::AYA_LOGS)
        };
        assert!(!has_logs(OBJECT));
        assert!(has_logs(LOG_OBJECT));
    }

    /// The helpers docs/probe.md lists as the reason the licence string is a choice, not a need:
    /// none of them is gpl_only in the kernel (tests/probe_live.rs loads the programs under a
    /// non-GPL licence to prove it). A new helper call fails this test until the docs say
    /// whether it is GPL-only.
    #[test]
    fn the_canaries_call_exactly_the_helpers_the_docs_list() {
        const BPF_CALL: u8 = 0x85;
        let helpers = |data| -> BTreeSet<i32> {
            instructions(data)
                .into_iter()
                .filter(|&(code, src, _)| code == BPF_CALL && src == 0)
                .map(|(_, _, imm)| imm)
                .collect()
        };
        // map_lookup_elem, map_update_elem, tail_call, skb_load_bytes.
        let default = BTreeSet::from([1, 2, 12, 26]);
        assert_eq!(helpers(OBJECT), default);
        // + ringbuf_reserve, ringbuf_submit, ringbuf_discard (aya-log).
        let logging: BTreeSet<i32> = default.iter().copied().chain([131, 132, 133]).collect();
        assert_eq!(helpers(LOG_OBJECT), logging);
    }

    /// Counters are incremented with the BPF atomic add (BPF_ATOMIC|BPF_ADD on a u64), never the
    /// fetching form (BPF_FETCH, kernel 5.12), which older nodes would refuse.
    #[test]
    fn counters_use_the_atomic_add_every_kernel_accepts() {
        const BPF_STX_ATOMIC_DW: u8 = 0xdb;
        const BPF_ADD: i32 = 0x00;
        for (build, data) in objects() {
            let atomics: Vec<i32> = instructions(data)
                .into_iter()
                .filter(|&(code, _, _)| code == BPF_STX_ATOMIC_DW)
                .map(|(_, _, imm)| imm)
                .collect();
            // One per program, plus FLOWS' per-source count.
            assert!(atomics.len() >= programs::ALL.len(), "{build}: {atomics:?}");
            assert!(
                atomics.iter().all(|&op| op == BPF_ADD),
                "{build}: {atomics:?}"
            );
        }
    }

    /// One licence story: the object's licence string is the dual licence the eBPF crates
    /// declare, and their sources carry the same SPDX identifier.
    #[test]
    fn the_objects_licence_string_matches_the_crates_licence() {
        let licence_of = |manifest: &str| -> String {
            let manifest: toml::Table = toml::from_str(manifest).unwrap();
            manifest["package"]["license"].as_str().unwrap().to_string()
        };
        let ebpf = licence_of(include_str!("../../../../preflight-ebpf/Cargo.toml"));
        let common = licence_of(include_str!("../../../../preflight-ebpf-common/Cargo.toml"));
        assert_eq!(ebpf, "MIT OR GPL-2.0");
        assert_eq!(common, ebpf);
        let spdx = format!("// SPDX-License-Identifier: {ebpf}\n");
        assert!(include_str!("../../../../preflight-ebpf/src/main.rs").starts_with(&spdx));
        assert!(include_str!("../../../../preflight-ebpf-common/src/lib.rs").starts_with(&spdx));
        for (build, data) in objects() {
            let elf = object::File::parse(data).unwrap();
            let licence = elf.section_by_name("license").unwrap().data().unwrap();
            // The kernel's name for MIT OR GPL-2.0 (include/linux/license.h).
            assert_eq!(licence, b"Dual MIT/GPL\0", "{build}");
        }
    }

    #[test]
    fn relayed_records_are_folded_in_order_of_first_appearance() {
        let record = |message: &str| EbpfRecord {
            level: log::Level::Debug,
            message: message.into(),
        };
        let frame = ["tcx egress", "xdp", "tc ingress", "tail call arrived"].map(record);
        let mut records: Vec<EbpfRecord> = (0..8).flat_map(|_| frame.clone()).collect();
        records.push(record("connect4"));
        let folded: Vec<(&str, usize)> = fold(&records)
            .into_iter()
            .map(|(r, n)| (r.message.as_str(), n))
            .collect();
        assert_eq!(
            folded,
            [
                ("tcx egress", 8),
                ("xdp", 8),
                ("tc ingress", 8),
                ("tail call arrived", 8),
                ("connect4", 1)
            ]
        );
    }
}

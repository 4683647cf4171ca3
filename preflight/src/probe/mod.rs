//! Live kernel feature probes: which program types, map types and helpers this kernel accepts,
//! plus ISA level, instruction limit, bounded loops, BTF and JIT. Answers are three-way and never
//! collapsed: `unknown` (EPERM, unexpected errno) is not `unavailable`.
//!
//! Every kernel access goes through [`Kernel`], so the classification logic is tested with a
//! scripted kernel (see tests below); [`LiveKernel`] is the real one.
pub mod canary;
pub mod catalog;
mod helpers;
pub mod live;
pub mod misc;
mod stated;
pub mod sys;

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use aya::{maps::MapType, programs::ProgramType, sys::BpfHelper};
pub use live::LiveKernel;
use serde::{Deserialize, Serialize};

use crate::{host::kconfig::KernelConfigFact, model::Support};

/// A raw program load for the misc probes: either it loaded, or the kernel said no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    Loaded { jited: bool },
    Rejected { errno: i32, log: String },
}

/// The seam between probe logic and the kernel.
pub trait Kernel: Sync {
    fn program(&self, program_type: ProgramType) -> Result<bool, String>;
    fn map(&self, map_type: MapType) -> Result<bool, String>;
    fn helper(&self, program_type: ProgramType, helper: BpfHelper) -> Result<bool, String>;
    /// Loads raw instructions as `program_type` (UAPI numbers), explaining a rejection.
    fn load(&self, program_type: u32, expected_attach_type: u32, insns: &[sys::Insn]) -> Load;
    /// Whether /sys/kernel/btf/vmlinux exists and parses.
    fn vmlinux_btf(&self) -> Result<bool, String>;
    /// The running kernel's build configuration (for what no load can show: JIT always-on).
    fn kernel_config(&self) -> KernelConfigFact;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// The program types, maps and helpers Cilium's datapath uses: all `run` and `compile` read.
    Cilium,
    /// Every program type (one load each, a few ms for all), and Cilium's map types and helpers:
    /// `preflight probe` without `--all`, so it also answers for tracing, lsm and the rest
    /// without paying for thousands of helper probes.
    Overview,
    /// Every program type, map type and helper (bpftool feature probe's scope).
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub program_types: BTreeMap<String, Support>,
    pub map_types: BTreeMap<String, Support>,
    /// program type → helper → support.
    pub helpers: BTreeMap<String, BTreeMap<String, Support>>,
    /// Program types whose helpers were not probed, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub helpers_not_probed: BTreeMap<String, String>,
    pub misc: BTreeMap<String, Support>,
    pub elapsed_ms: f64,
}

/// The version of the `preflight probe --format json` contract, its own and not the run
/// report's: raised when a key goes away or changes meaning (new keys do not raise it).
pub const SCHEMA_VERSION: u32 = 1;

/// What `preflight probe --format json` prints: the report under a version, so a consumer can
/// refuse a shape it does not know.
#[derive(Debug, Serialize)]
pub struct ProbeJson<'a> {
    pub schema_version: u32,
    pub tool_version: &'static str,
    #[serde(flatten)]
    pub report: &'a ProbeReport,
}

impl<'a> ProbeJson<'a> {
    pub fn new(report: &'a ProbeReport) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION"),
            report,
        }
    }
}

impl ProbeReport {
    pub fn helper(&self, program_type: &str, helper: &str) -> Option<&Support> {
        self.helpers.get(program_type)?.get(helper)
    }
}

pub fn probe(kernel: &dyn Kernel, scope: Scope) -> ProbeReport {
    let start = Instant::now();
    let wanted_programs: Vec<_> = catalog::PROGRAM_TYPES
        .iter()
        .filter(|(name, _)| scope != Scope::Cilium || catalog::CILIUM_PROGRAM_TYPES.contains(name))
        .collect();
    let program_types: BTreeMap<String, Support> = wanted_programs
        .iter()
        .map(|(name, t)| (name.to_string(), Support::from_result(kernel.program(*t))))
        .collect();
    let map_types = catalog::MAP_TYPES
        .iter()
        .filter(|(name, _)| scope == Scope::All || catalog::CILIUM_MAP_TYPES.contains(name))
        .map(|(name, t)| (name.to_string(), Support::from_result(kernel.map(*t))))
        .collect();

    // Helper jobs, only for program types the kernel has; a helper of an absent or unknown
    // program type inherits that answer instead of costing a syscall.
    let mut helpers: BTreeMap<String, BTreeMap<String, Support>> = BTreeMap::new();
    let mut helpers_not_probed = BTreeMap::new();
    let mut jobs = Vec::new();
    for (prog_name, prog_type) in &wanted_programs {
        let names: Vec<&str> = match scope {
            Scope::All => catalog::HELPERS.iter().map(|(n, _)| *n).collect(),
            Scope::Cilium | Scope::Overview => catalog::CILIUM_HELPERS
                .iter()
                .find(|(p, _)| p == prog_name)
                .map(|(_, h)| h.to_vec())
                .unwrap_or_default(),
        };
        if names.is_empty() {
            continue;
        }
        if !catalog::helpers_probeable(*prog_type) {
            helpers_not_probed.insert(
                prog_name.to_string(),
                "needs a BTF attach target; a minimal program cannot probe its helpers".into(),
            );
            continue;
        }
        let inherited = match &program_types[*prog_name] {
            Support::Available => None,
            Support::Unavailable { .. } => Some(Support::Unavailable {
                reason: Some(format!("program type {prog_name} unavailable")),
            }),
            Support::Unknown { reason } => Some(Support::Unknown {
                reason: format!("program type {prog_name} unknown: {reason}"),
            }),
        };
        let entry = helpers.entry(prog_name.to_string()).or_default();
        for name in names {
            match &inherited {
                Some(support) => {
                    entry.insert(name.to_string(), support.clone());
                }
                None => {
                    let helper = catalog::helper(name).expect("catalogue names are valid");
                    jobs.push((*prog_name, *prog_type, name, helper));
                }
            }
        }
    }
    let (noisy, jobs): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|(_, _, name, _)| catalog::NOISY_HELPERS.contains(name));
    for (prog, _, name, _) in noisy {
        helpers.entry(prog.to_string()).or_default().insert(
            name.to_string(),
            Support::Unknown {
                reason: "not probed: verifying a call to it writes a warning to the kernel log \
                         (bpftool skips it too unless asked for `full`)"
                    .into(),
            },
        );
    }
    for (prog, name, support) in run_parallel(kernel, &jobs) {
        helpers
            .entry(prog.to_string())
            .or_default()
            .insert(name.to_string(), support);
    }

    ProbeReport {
        program_types,
        map_types,
        helpers,
        helpers_not_probed,
        misc: misc::probe_misc(kernel),
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
    }
}

/// Helper probes dominate `--all` (thousands of verifier runs); spread them over the cores.
fn run_parallel<'a>(
    kernel: &dyn Kernel,
    jobs: &[(&'a str, ProgramType, &'a str, BpfHelper)],
) -> Vec<(&'a str, &'a str, Support)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len().div_ceil(64).max(1));
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut local = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((prog, prog_type, name, helper)) = jobs.get(i) else {
                        break;
                    };
                    let support = Support::from_result(kernel.helper(*prog_type, *helper));
                    local.push((*prog, *name, support));
                }
                out.lock().expect("no panics while held").extend(local);
            });
        }
    });
    out.into_inner().expect("threads joined")
}

#[cfg(test)]
pub(crate) mod fake {
    //! A scripted kernel for tests: answers from tables, counts syscalls.
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::host::kconfig::NotVisible;

    #[derive(Default)]
    pub struct FakeKernel {
        pub missing_programs: Vec<ProgramType>,
        pub eperm: bool,
        /// (program type, helper) pairs the verifier rejects.
        pub forbidden_helpers: Vec<(ProgramType, BpfHelper)>,
        pub no_v3: bool,
        /// None: not visible.
        pub kernel_config: Option<KernelConfigFact>,
        pub helper_calls: AtomicUsize,
    }

    impl Kernel for FakeKernel {
        fn program(&self, t: ProgramType) -> Result<bool, String> {
            if self.eperm {
                return Err("bpf_prog_load: Operation not permitted (os error 1)".into());
            }
            Ok(!self.missing_programs.contains(&t))
        }
        fn map(&self, _: MapType) -> Result<bool, String> {
            if self.eperm {
                return Err("bpf_map_create: Operation not permitted (os error 1)".into());
            }
            Ok(true)
        }
        fn helper(&self, t: ProgramType, h: BpfHelper) -> Result<bool, String> {
            self.helper_calls.fetch_add(1, Ordering::Relaxed);
            Ok(!self.forbidden_helpers.contains(&(t, h)))
        }
        fn load(&self, _: u32, _: u32, insns: &[sys::Insn]) -> Load {
            if self.eperm {
                return Load::Rejected {
                    errno: libc::EPERM,
                    log: String::new(),
                };
            }
            let jmp32 = insns.iter().any(|i| i.code & 0x07 == sys::BPF_JMP32);
            if self.no_v3 && jmp32 {
                return Load::Rejected {
                    errno: libc::EINVAL,
                    log: "unknown opcode a6\n".into(),
                };
            }
            Load::Loaded { jited: true }
        }
        fn vmlinux_btf(&self) -> Result<bool, String> {
            Ok(true)
        }
        fn kernel_config(&self) -> KernelConfigFact {
            self.kernel_config.clone().unwrap_or_else(|| {
                KernelConfigFact::Unknown(NotVisible {
                    searched: vec!["/proc/config.gz".into()],
                    problems: vec![],
                })
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{fake::FakeKernel, *};

    #[test]
    fn helpers_of_a_missing_program_type_are_unavailable_without_a_syscall() {
        let kernel = FakeKernel {
            missing_programs: vec![ProgramType::Xdp],
            ..Default::default()
        };
        let report = probe(&kernel, Scope::Cilium);
        assert_eq!(report.program_types["xdp"].label(), "unavailable");
        let xdp = &report.helpers["xdp"];
        assert!(xdp.values().all(|s| s.label() == "unavailable"));
        let probed: usize = catalog::CILIUM_HELPERS
            .iter()
            .filter(|(p, _)| *p != "xdp")
            .map(|(_, h)| h.len())
            .sum();
        assert_eq!(kernel.helper_calls.load(Ordering::Relaxed), probed);
    }

    #[test]
    fn eperm_is_unknown_everywhere_never_unavailable() {
        let kernel = FakeKernel {
            eperm: true,
            ..Default::default()
        };
        let report = probe(&kernel, Scope::Cilium);
        for (name, s) in report.program_types.iter().chain(&report.map_types) {
            assert_eq!(s.label(), "unknown", "{name}");
        }
        for helpers in report.helpers.values() {
            for s in helpers.values() {
                assert!(
                    matches!(s, Support::Unknown { reason } if reason.contains("not permitted"))
                );
            }
        }
        assert_eq!(report.misc["isa_v2"].label(), "unknown");
        assert_eq!(kernel.helper_calls.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_forbidden_helper_is_unavailable_for_that_program_type_only() {
        let store = catalog::helper("skb_store_bytes").unwrap();
        let kernel = FakeKernel {
            forbidden_helpers: vec![(ProgramType::SocketFilter, store)],
            ..Default::default()
        };
        let report = probe(&kernel, Scope::Cilium);
        assert_eq!(
            report
                .helper("socket_filter", "skb_store_bytes")
                .unwrap()
                .label(),
            "unavailable"
        );
        assert_eq!(
            report
                .helper("sched_cls", "skb_store_bytes")
                .unwrap()
                .label(),
            "available"
        );
    }

    #[test]
    fn all_scope_covers_every_helper_of_every_probeable_type() {
        let kernel = FakeKernel::default();
        let report = probe(&kernel, Scope::All);
        assert_eq!(report.program_types.len(), catalog::PROGRAM_TYPES.len());
        assert_eq!(report.map_types.len(), catalog::MAP_TYPES.len());
        let probeable = catalog::PROGRAM_TYPES
            .iter()
            .filter(|(_, t)| catalog::helpers_probeable(*t))
            .count();
        assert_eq!(report.helpers.len(), probeable);
        assert!(
            report
                .helpers
                .values()
                .all(|h| h.len() == catalog::HELPERS.len())
        );
        // The helpers whose probe would write to the kernel log are reported, not probed.
        let noisy = catalog::NOISY_HELPERS.len() * report.helpers.len();
        let printk = &report.helpers["socket_filter"]["trace_printk"];
        assert!(matches!(printk, Support::Unknown { reason } if reason.contains("kernel log")));
        assert_eq!(
            report.helpers_not_probed.len(),
            catalog::PROGRAM_TYPES.len() - probeable
        );
        assert_eq!(
            kernel.helper_calls.load(Ordering::Relaxed),
            probeable * catalog::HELPERS.len() - noisy
        );
    }

    #[test]
    fn overview_answers_every_program_type_but_probes_only_ciliums_helpers() {
        let kernel = FakeKernel {
            missing_programs: vec![ProgramType::Tracing],
            ..Default::default()
        };
        let report = probe(&kernel, Scope::Overview);
        assert_eq!(report.program_types.len(), catalog::PROGRAM_TYPES.len());
        assert_eq!(report.program_types["tracing"].label(), "unavailable");
        assert_eq!(report.program_types["lsm"].label(), "available");
        assert_eq!(report.map_types.len(), catalog::CILIUM_MAP_TYPES.len());
        let cilium = probe(&FakeKernel::default(), Scope::Cilium);
        assert_eq!(report.helpers, cilium.helpers);
        // Program types outside Cilium's have no helper list here, so nothing is "not probed".
        assert!(report.helpers_not_probed.is_empty());
        assert_eq!(
            cilium.program_types.len(),
            catalog::CILIUM_PROGRAM_TYPES.len()
        );
    }

    #[test]
    fn the_probe_json_is_versioned() {
        let report = probe(&FakeKernel::default(), Scope::Cilium);
        let v = serde_json::to_value(ProbeJson::new(&report)).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["tool_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["program_types"]["sched_cls"]["status"], "available");
        assert!(v["misc"].is_object() && v["helpers"].is_object());
    }

    /// The backticked names in the part of docs/probe.md that starts with `from` and ends
    /// before `to`: the lists the tests below keep in step with the code.
    fn documented(from: &str, to: &str) -> std::collections::BTreeSet<String> {
        let docs = include_str!("../../../docs/probe.md");
        let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
        let start = docs.find(from).expect("docs/probe.md has the list");
        let part = &docs[start..];
        let part = &part[..part.find(to).expect("the list ends")];
        part.split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| {
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_string)
            .collect()
    }

    /// docs/probe.md names every `misc` item the probe answers, and no other.
    #[test]
    fn docs_list_every_misc_item() {
        let report = probe(&FakeKernel::default(), Scope::Cilium);
        let answered: std::collections::BTreeSet<String> = report.misc.keys().cloned().collect();
        let mut listed = documented("`misc`: ", ". ");
        listed.remove("misc");
        assert_eq!(listed, answered, "docs/probe.md's `misc` list");
    }

    /// docs/probe.md names every top-level key of `preflight probe --format json`.
    #[test]
    fn docs_list_every_key_of_the_probe_json() {
        // --all, so `helpers_not_probed` (left out when empty) is there too.
        let report = probe(&FakeKernel::default(), Scope::All);
        let v = serde_json::to_value(ProbeJson::new(&report)).unwrap();
        let keys: std::collections::BTreeSet<String> =
            v.as_object().unwrap().keys().cloned().collect();
        assert!(keys.contains("helpers_not_probed"), "{keys:?}");
        assert_eq!(
            documented("top-level `schema_version`", "How answers are read"),
            keys,
            "docs/probe.md's Output paragraph"
        );
    }
}

//! Misc probes, as bpftool's "misc" section: instruction-set level, the 1M-instruction limit,
//! bounded loops, plus JIT and BTF. Each is a tiny program the verifier accepts only when the
//! kernel has the feature; JIT always-on alone comes from the kernel config.
use std::collections::BTreeMap;

use crate::{
    host::kconfig::{KernelConfigFact, NotVisible, Setting},
    model::Support,
};

use super::{
    Kernel, Load,
    sys::{
        self, BPF_ALU64, BPF_JLT, BPF_JMP, BPF_JMP32, BPF_JNE, BPF_K, BPF_MOV, BPF_SUB, BPF_X, Insn,
    },
};

/// How a rejected load reads: the verifier (or the size check) saying no is "unavailable";
/// no permission or an errno we do not expect is "could not tell".
pub fn classify(load: &Load) -> Support {
    match load {
        Load::Loaded { .. } => Support::Available,
        // bpf_prog_load() returns E2BIG for insn_cnt above the limit before running the verifier.
        Load::Rejected { errno, .. } if *errno == libc::E2BIG => Support::Unavailable {
            reason: Some("E2BIG: above the kernel's instruction limit".into()),
        },
        Load::Rejected { errno, log }
            if (*errno == libc::EINVAL || *errno == libc::EACCES) && !log.trim().is_empty() =>
        {
            let last = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Support::Unavailable {
                reason: Some(format!("verifier: {}", last.trim())),
            }
        }
        Load::Rejected { errno, .. } => Support::Unknown {
            reason: format!(
                "bpf_prog_load: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
        },
    }
}

fn isa_v2() -> Vec<Insn> {
    vec![
        Insn::mov64_imm(0, 0),
        Insn::new(BPF_JMP | BPF_JLT | BPF_K, 0, 0, 1, 1),
        Insn::mov64_imm(0, 1),
        Insn::exit(),
    ]
}

fn isa_v3() -> Vec<Insn> {
    vec![
        Insn::mov64_imm(0, 0),
        Insn::new(BPF_JMP32 | BPF_JLT | BPF_K, 0, 0, 1, 1),
        Insn::mov64_imm(0, 1),
        Insn::exit(),
    ]
}

/// v4 (6.6): sign-extending move, `r0 = (s8) r0`, encoded as MOV|X with off = 8.
fn isa_v4() -> Vec<Insn> {
    vec![
        Insn::mov64_imm(0, 0),
        Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, 0, 0, 8, 0),
        Insn::exit(),
    ]
}

/// BPF_MAXINSNS + 1 instructions: loads only with the 1M-instruction limit (5.2).
fn large_insn_limit() -> Vec<Insn> {
    let mut insns = vec![Insn::mov64_imm(0, 1); sys::BPF_MAXINSNS];
    insns.push(Insn::exit());
    insns
}

/// A loop with a known bound (5.3); older verifiers reject any back-edge.
fn bounded_loops() -> Vec<Insn> {
    vec![
        Insn::mov64_imm(0, 10),
        Insn::new(BPF_ALU64 | BPF_SUB | BPF_K, 0, 0, 0, 1),
        Insn::new(BPF_JMP | BPF_JNE | BPF_K, 0, 0, -2, 0),
        Insn::exit(),
    ]
}

/// Whether the interpreter is compiled out (CONFIG_BPF_JIT_ALWAYS_ON=y: every program is JITed).
/// No load can show it, and the one probe that could, writing 0 to net.core.bpf_jit_enable and
/// watching it be refused, changes the node when it succeeds; so it comes from the kernel
/// config, and a config that is not visible is unknown, never "off". `run`'s
/// bpf.misc.jit_always_on check reads this same answer.
pub fn jit_always_on(config: &KernelConfigFact) -> Support {
    match config {
        KernelConfigFact::Got(c) => match c.get("BPF_JIT_ALWAYS_ON") {
            Some(Setting::Builtin) => Support::Available,
            None => Support::Unavailable {
                reason: Some(format!(
                    "CONFIG_BPF_JIT_ALWAYS_ON is not set ({}): the interpreter is built in",
                    c.source
                )),
            },
            // A bool option cannot be =m or a value: the file is not what it claims to be.
            Some(other) => Support::Unknown {
                reason: format!(
                    "CONFIG_BPF_JIT_ALWAYS_ON={} in {} is not a bool option's value",
                    match other {
                        Setting::Module => "m",
                        Setting::Value(v) => v,
                        Setting::Builtin => "y",
                    },
                    c.source
                ),
            },
        },
        KernelConfigFact::Unknown(NotVisible { searched, problems }) => Support::Unknown {
            reason: if problems.is_empty() {
                format!(
                    "kernel config not visible (searched {}); it cannot be probed without \
                     changing net.core.bpf_jit_enable",
                    searched.join(", ")
                )
            } else {
                format!("no usable kernel config: {}", problems.join("; "))
            },
        },
        KernelConfigFact::Skipped(why) => Support::Unknown {
            reason: why.clone(),
        },
    }
}

pub fn probe_misc(kernel: &dyn Kernel) -> BTreeMap<String, Support> {
    let filter = sys::BPF_PROG_TYPE_SOCKET_FILTER;
    let mut out = BTreeMap::new();
    let trivial = kernel.load(filter, 0, &[Insn::mov64_imm(0, 0), Insn::exit()]);
    out.insert(
        "jit_enabled".into(),
        match &trivial {
            Load::Loaded { jited: true } => Support::Available,
            Load::Loaded { jited: false } => Support::Unavailable {
                reason: Some("programs run in the interpreter (net.core.bpf_jit_enable=0)".into()),
            },
            rejected => match classify(rejected) {
                Support::Unavailable { reason } => Support::Unknown {
                    reason: reason.unwrap_or_default(),
                },
                other => other,
            },
        },
    );
    out.insert(
        "jit_always_on".into(),
        jit_always_on(&kernel.kernel_config()),
    );
    out.insert(
        "isa_v2".into(),
        classify(&kernel.load(filter, 0, &isa_v2())),
    );
    out.insert(
        "isa_v3".into(),
        classify(&kernel.load(filter, 0, &isa_v3())),
    );
    out.insert(
        "isa_v4".into(),
        classify(&kernel.load(filter, 0, &isa_v4())),
    );
    out.insert(
        "large_insn_limit".into(),
        classify(&kernel.load(sys::BPF_PROG_TYPE_SCHED_CLS, 0, &large_insn_limit())),
    );
    out.insert(
        "bounded_loops".into(),
        classify(&kernel.load(filter, 0, &bounded_loops())),
    );
    out.insert(
        "vmlinux_btf".into(),
        Support::from_result(kernel.vmlinux_btf()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fake::FakeKernel;

    #[test]
    fn a_verifier_rejection_is_unavailable_with_the_last_log_line() {
        let s = classify(&Load::Rejected {
            errno: libc::EINVAL,
            log: "0: (b7) r0 = 0\nunknown opcode a6\n".into(),
        });
        assert_eq!(
            s,
            Support::Unavailable {
                reason: Some("verifier: unknown opcode a6".into())
            }
        );
    }

    #[test]
    fn eperm_and_silent_einval_are_unknown() {
        for errno in [libc::EPERM, libc::EINVAL, libc::ENOMEM] {
            let s = classify(&Load::Rejected {
                errno,
                log: String::new(),
            });
            assert_eq!(s.label(), "unknown", "errno {errno}");
        }
        assert_eq!(
            classify(&Load::Rejected {
                errno: libc::E2BIG,
                log: String::new()
            })
            .label(),
            "unavailable"
        );
    }

    fn config(options: &[(&str, Setting)]) -> KernelConfigFact {
        KernelConfigFact::Got(crate::host::kconfig::KernelConfig {
            source: "/proc/config.gz".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })
    }

    #[test]
    fn jit_always_on_is_three_way_from_the_kernel_config() {
        let on = config(&[("BPF_JIT_ALWAYS_ON", Setting::Builtin)]);
        assert_eq!(jit_always_on(&on), Support::Available);
        let off = jit_always_on(&config(&[("BPF_JIT", Setting::Builtin)]));
        assert!(
            matches!(&off, Support::Unavailable { reason: Some(r) } if r.contains("not set") && r.contains("/proc/config.gz")),
            "{off:?}"
        );
        let odd = jit_always_on(&config(&[("BPF_JIT_ALWAYS_ON", Setting::Module)]));
        assert_eq!(odd.label(), "unknown");
        // Not visible is "could not tell", with where we looked; never "off".
        let hidden = jit_always_on(&KernelConfigFact::Unknown(NotVisible {
            searched: vec!["/proc/config.gz".into(), "/boot/config-6.18".into()],
            problems: vec![],
        }));
        assert!(
            matches!(&hidden, Support::Unknown { reason } if reason.contains("/boot/config-6.18")),
            "{hidden:?}"
        );
        let broken = jit_always_on(&KernelConfigFact::Unknown(NotVisible {
            searched: vec!["/proc/config.gz".into()],
            problems: vec!["/proc/config.gz: not gzip".into()],
        }));
        assert!(matches!(&broken, Support::Unknown { reason } if reason.contains("not gzip")));
    }

    #[test]
    fn probe_misc_reports_jit_always_on_from_the_kernels_config() {
        let kernel = FakeKernel {
            kernel_config: Some(config(&[("BPF_JIT_ALWAYS_ON", Setting::Builtin)])),
            ..Default::default()
        };
        assert_eq!(probe_misc(&kernel)["jit_always_on"], Support::Available);
        assert_eq!(
            probe_misc(&FakeKernel::default())["jit_always_on"].label(),
            "unknown"
        );
    }

    #[test]
    fn the_isa_probes_use_the_opcodes_they_claim() {
        assert!(isa_v3().iter().any(|i| i.code & 0x07 == BPF_JMP32));
        assert!(!isa_v2().iter().any(|i| i.code & 0x07 == BPF_JMP32));
        assert_eq!(large_insn_limit().len(), sys::BPF_MAXINSNS + 1);
        let kernel = FakeKernel {
            no_v3: true,
            ..Default::default()
        };
        let misc = probe_misc(&kernel);
        assert_eq!(misc["isa_v2"].label(), "available");
        assert_eq!(misc["isa_v3"].label(), "unavailable");
    }
}

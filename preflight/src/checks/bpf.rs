//! Checks over the live bpf() probes: program types, helpers and misc features Cilium needs.
use super::Check;
use crate::{
    cilium::releases::Release,
    facts::Facts,
    model::{
        Area,
        Capability::{self, *},
        Outcome, Support,
    },
    probe::ProbeReport,
};

fn with_probes(facts: &Facts, f: impl FnOnce(&ProbeReport) -> Outcome) -> Outcome {
    facts.probes.judge(f)
}

fn from_support(support: Option<&Support>, what: &str, evidence: &str) -> Outcome {
    let Some(support) = support else {
        return Outcome::unknown(format!("{what} was not probed")).evidence(evidence);
    };
    let detail = match support {
        Support::Available => format!("{what} available"),
        Support::Unavailable { reason: Some(r) } => format!("{what} unavailable: {r}"),
        Support::Unavailable { reason: None } => format!("{what} unavailable"),
        Support::Unknown { reason } => format!("could not tell: {reason}"),
    };
    Outcome::new(support.status(), detail).evidence(evidence)
}

/// (program type, title, needed by).
const PROGRAM_TYPES: &[(&str, &str, &[Capability])] = &[
    (
        "sched_cls",
        "tc programs (bpf_lxc, bpf_host, bpf_overlay)",
        &[BaseDatapath],
    ),
    (
        "cgroup_sock_addr",
        "socket LB hooks (bpf_sock connect/sendmsg)",
        &[SocketLb, KubeProxyReplacement],
    ),
    (
        "cgroup_sock",
        "socket LB post-bind / release hooks",
        &[SocketLb, KubeProxyReplacement],
    ),
    ("xdp", "XDP programs (bpf_xdp)", &[XdpAcceleration]),
];

/// (program type, helper, remedy). Which capability needs each is the release table's
/// (`CapabilityFacts::helpers`); a helper no capability lists is informational. The 1.18+ agent
/// also refuses to start without some of them whatever the values: `profile::checks`
/// (bpf.cilium-agent-helpers) judges that per version.
const HELPERS: &[(&str, &str, &str)] = &[
    (
        "sched_cls",
        "skb_change_tail",
        "kernel >= 5.10 (Cilium 1.18 minimum)",
    ),
    (
        "sched_cls",
        "skb_change_head",
        "kernel >= 5.10 (Cilium 1.18 minimum)",
    ),
    (
        "sched_cls",
        "skb_adjust_room",
        "kernel >= 5.10 (Cilium 1.18 minimum)",
    ),
    (
        "sched_cls",
        "csum_level",
        "kernel >= 5.10 (Cilium 1.18 minimum)",
    ),
    (
        "sched_cls",
        "jiffies64",
        "kernel >= 5.10 (Cilium 1.18 minimum)",
    ),
    (
        "sched_cls",
        "tail_call",
        "a kernel with eBPF tail calls (any supported kernel)",
    ),
    ("sched_cls", "fib_lookup", "kernel >= 5.10"),
    (
        "sched_cls",
        "redirect_neigh",
        "kernel >= 5.10, or bpf.hostLegacyRouting=true on older Cilium",
    ),
    (
        "sched_cls",
        "redirect_peer",
        "kernel >= 5.10, or bpf.hostLegacyRouting=true on older Cilium",
    ),
    // Informational: Cilium calls bpf_get_netns_cookie from its cgroup hooks (below), where
    // kernels have it since 5.7; tc programs got it only in much newer kernels.
    (
        "sched_cls",
        "get_netns_cookie",
        "not needed by Cilium, which uses it in cgroup_sock/cgroup_sock_addr; tc programs have it only on recent kernels",
    ),
    (
        "cgroup_sock_addr",
        "get_socket_cookie",
        "kernel >= 5.10, or socketLB.enabled=false",
    ),
    (
        "cgroup_sock_addr",
        "get_netns_cookie",
        "kernel >= 5.10, or socketLB.enabled=false",
    ),
    (
        "cgroup_sock_addr",
        "get_current_cgroup_id",
        "kernel >= 5.10, or socketLB.enabled=false",
    ),
    (
        "xdp",
        "xdp_get_buff_len",
        "kernel >= 5.18, or loadBalancer.acceleration=disabled",
    ),
    (
        "xdp",
        "fib_lookup",
        "kernel >= 5.10, or loadBalancer.acceleration=disabled",
    ),
];

/// (misc probe, id suffix, title, needed by, remedy).
const MISC: &[(&str, &str, &[Capability], &str)] = &[
    (
        "large_insn_limit",
        "1M-instruction programs (kernel 5.2)",
        &[BaseDatapath],
        "kernel >= 5.10",
    ),
    (
        "bounded_loops",
        "bounded loops (kernel 5.3)",
        &[BaseDatapath],
        "kernel >= 5.10",
    ),
    (
        "isa_v2",
        "eBPF ISA v2 (clang -mcpu=v2)",
        &[BaseDatapath],
        "kernel >= 5.10",
    ),
    (
        "isa_v3",
        "eBPF ISA v3 / JMP32 (clang -mcpu=v3)",
        &[],
        "Cilium falls back to -mcpu=v2; a kernel >= 5.10 has v3",
    ),
    (
        "jit_enabled",
        "BPF JIT compiles programs",
        &[],
        "sysctl -w net.core.bpf_jit_enable=1",
    ),
    (
        "vmlinux_btf",
        "kernel BTF at /sys/kernel/btf/vmlinux",
        &[],
        "a kernel built with CONFIG_DEBUG_INFO_BTF=y (newest Cilium docs require it)",
    ),
];

pub fn checks(release: &Release) -> Vec<Check> {
    let mut out = vec![
        Check::new("bpf.syscall", Area::Bpf, "bpf() usable by preflight")
            .needed_by(&[BaseDatapath])
            .remedy(
                "run as root (or with CAP_BPF + CAP_NET_ADMIN); in a Job, grant those capabilities",
            )
            .evaluate(|facts, _| {
                with_probes(facts, |p| match p.program_types.get("socket_filter") {
                    Some(Support::Available) => Outcome::pass("loaded a socket_filter program"),
                    Some(Support::Unknown { reason }) => {
                        Outcome::unknown(format!("bpf() refused us: {reason}"))
                    }
                    other => from_support(other, "socket_filter", "bpf(BPF_PROG_LOAD)"),
                })
            }),
    ];
    for (prog, title, needed_by) in PROGRAM_TYPES {
        out.push(
            Check::new(format!("bpf.prog_type.{prog}"), Area::Bpf, *title)
                .needed_by(needed_by)
                .remedy(format!("a kernel with BPF_PROG_TYPE_{} (CONFIG_BPF_SYSCALL, CONFIG_NET_CLS_BPF, CONFIG_CGROUP_BPF)", prog.to_uppercase()))
                .evaluate(move |facts, _| {
                    with_probes(facts, |p| from_support(p.program_types.get(*prog), &format!("program type {prog}"), "bpf(BPF_PROG_LOAD)"))
                }),
        );
    }
    for (prog, helper, remedy) in HELPERS {
        out.push(
            Check::new(
                format!("bpf.helper.{prog}.{helper}"),
                Area::Bpf,
                format!("bpf_{helper} from {prog}"),
            )
            .needed_by(&release.helper_needs(prog, helper))
            .remedy(*remedy)
            .evaluate(move |facts, _| {
                with_probes(facts, |p| {
                    from_support(
                        p.helper(prog, helper),
                        &format!("bpf_{helper} in {prog}"),
                        "verifier probe",
                    )
                })
            }),
        );
    }
    for (name, title, needed_by, remedy) in MISC {
        out.push(
            Check::new(format!("bpf.misc.{name}"), Area::Bpf, *title)
                .needed_by(needed_by)
                .remedy(*remedy)
                .evaluate(move |facts, _| {
                    with_probes(facts, |p| {
                        let o = from_support(p.misc.get(*name), title, "bpf(BPF_PROG_LOAD)");
                        // Informational probes warn instead of failing.
                        if needed_by.is_empty() && o.status == crate::model::Status::Fail {
                            Outcome {
                                status: crate::model::Status::Warn,
                                ..o
                            }
                        } else {
                            o
                        }
                    })
                }),
        );
    }
    out.push(
        Check::new(
            "bpf.misc.jit_always_on",
            Area::Bpf,
            "BPF JIT always on (no interpreter)",
        )
        .evaluate(|facts, _| jit_always_on(facts)),
    );
    out
}

/// The probe's answer (`probe::misc::jit_always_on`) from the config read through the root, so
/// it is judged with `--root` too, where the live probes do not run.
fn jit_always_on(facts: &Facts) -> Outcome {
    use crate::host::kconfig::{KernelConfigFact, NotVisible};
    let evidence = match &facts.kernel_config {
        KernelConfigFact::Got(c) => vec![c.source.clone()],
        KernelConfigFact::Unknown(NotVisible { problems, .. }) => problems.clone(),
        KernelConfigFact::Skipped(_) => Vec::new(),
    };
    let o = match crate::probe::misc::jit_always_on(&facts.kernel_config) {
        Support::Available => Outcome::pass("CONFIG_BPF_JIT_ALWAYS_ON=y"),
        // Informational: Cilium does not need it; whether programs are JITed is what
        // net.core.bpf_jit_enable says (its own check).
        Support::Unavailable { .. } => Outcome::pass(
            "CONFIG_BPF_JIT_ALWAYS_ON is not set: the interpreter stays available (Cilium does not need this; net.core.bpf_jit_enable decides JIT)",
        ),
        Support::Unknown { reason } => Outcome::unknown(format!("could not tell: {reason}")),
    };
    evidence.into_iter().fold(o, |o, e| o.evidence(e))
}

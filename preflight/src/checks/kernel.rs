//! Kernel build options per Cilium capability (FACTS §3) and the minimum kernel per version.
//! `=m` options are judged with the module's state; a config we cannot see is "unknown".
use super::Check;
use crate::{
    facts::Facts,
    host::{
        kconfig::{KernelConfigFact, Setting},
        modules::ModuleState,
        state::minor_of,
    },
    model::{
        Area,
        Capability::{self, *},
        Outcome,
    },
};

/// How bad a missing option is: the agent refuses to start, or only the docs list it.
#[derive(Clone, Copy, PartialEq)]
enum Missing {
    Fail,
    Warn,
}

struct Opt {
    name: &'static str,
    /// The module that provides it when `=m`.
    module: Option<&'static str>,
    needed_by: &'static [Capability],
    missing: Missing,
    /// First Cilium minor that needs it (1, N).
    since: Option<(u32, u32)>,
    why: &'static str,
}

const fn opt(
    name: &'static str,
    module: Option<&'static str>,
    needed_by: &'static [Capability],
    missing: Missing,
    why: &'static str,
) -> Opt {
    Opt {
        name,
        module,
        needed_by,
        missing,
        since: None,
        why,
    }
}

/// The 1.16+ agent hard-requires BPF, BPF_SYSCALL, NET_SCH_INGRESS, NET_CLS_BPF, NET_CLS_ACT,
/// BPF_JIT, HAVE_EBPF_JIT (pkg/datapath/linux/requirements.go); the rest of the documented
/// base list only warns.
const OPTIONS: &[Opt] = &[
    opt(
        "BPF",
        None,
        &[BaseDatapath],
        Missing::Fail,
        "eBPF itself; the agent refuses to start without it",
    ),
    opt(
        "BPF_SYSCALL",
        None,
        &[BaseDatapath],
        Missing::Fail,
        "the bpf() system call; hard-required by the agent",
    ),
    opt(
        "BPF_JIT",
        None,
        &[BaseDatapath],
        Missing::Fail,
        "the eBPF JIT; hard-required by the agent",
    ),
    opt(
        "HAVE_EBPF_JIT",
        None,
        &[BaseDatapath],
        Missing::Fail,
        "architecture eBPF JIT support; hard-required by the agent",
    ),
    opt(
        "NET_CLS_BPF",
        Some("cls_bpf"),
        &[BaseDatapath],
        Missing::Fail,
        "tc BPF classifier (bpf_lxc, bpf_host); hard-required",
    ),
    opt(
        "NET_CLS_ACT",
        None,
        &[BaseDatapath],
        Missing::Fail,
        "tc actions; hard-required",
    ),
    opt(
        "NET_SCH_INGRESS",
        Some("sch_ingress"),
        &[BaseDatapath],
        Missing::Fail,
        "clsact/ingress qdisc; hard-required",
    ),
    opt(
        "CRYPTO_SHA1",
        Some("sha1_generic"),
        &[BaseDatapath],
        Missing::Warn,
        "documented base requirement (program tags); the agent does not check it",
    ),
    opt(
        "CRYPTO_USER_API_HASH",
        Some("algif_hash"),
        &[BaseDatapath],
        Missing::Warn,
        "documented base requirement (AF_ALG hashes, used by tools computing program tags); the agent does not check it",
    ),
    opt(
        "CGROUPS",
        None,
        &[BaseDatapath],
        Missing::Warn,
        "documented base requirement",
    ),
    opt(
        "PERF_EVENTS",
        None,
        &[BaseDatapath],
        Missing::Warn,
        "perf ring buffer for monitor/Hubble events; documented base requirement",
    ),
    opt(
        "SCHEDSTATS",
        None,
        &[BaseDatapath],
        Missing::Warn,
        "documented base requirement",
    ),
    opt(
        "BPF_EVENTS",
        None,
        &[BaseDatapath],
        Missing::Warn,
        "documented base requirement in newer docs",
    ),
    opt(
        "DEBUG_INFO_BTF",
        None,
        &[BaseDatapath],
        Missing::Warn,
        "BTF for the kernel; documented base requirement in newer docs",
    ),
    opt(
        "CGROUP_BPF",
        None,
        &[SocketLb, KubeProxyReplacement],
        Missing::Fail,
        "cgroup BPF hooks for socket-level load balancing",
    ),
    opt(
        "NETFILTER_XT_SET",
        Some("xt_set"),
        &[BaseDatapath],
        Missing::Warn,
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    opt(
        "IP_SET",
        Some("ip_set"),
        &[BaseDatapath],
        Missing::Warn,
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    opt(
        "IP_SET_HASH_IP",
        Some("ip_set_hash_ip"),
        &[BaseDatapath],
        Missing::Warn,
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    Opt {
        since: Some((1, 18)),
        ..opt(
            "NETFILTER_XT_MATCH_COMMENT",
            Some("xt_comment"),
            &[BaseDatapath],
            Missing::Warn,
            "iptables rule comments (1.18+ docs)",
        )
    },
    opt(
        "VXLAN",
        Some("vxlan"),
        &[TunnelVxlan],
        Missing::Fail,
        "the vxlan tunnel device (cilium_vxlan)",
    ),
    opt(
        "GENEVE",
        Some("geneve"),
        &[TunnelGeneve],
        Missing::Fail,
        "the geneve tunnel device (cilium_geneve)",
    ),
    opt(
        "FIB_RULES",
        None,
        &[TunnelVxlan, TunnelGeneve, NativeRouting],
        Missing::Warn,
        "policy routing rules (1.18+ docs, tunnelling and routing)",
    ),
    opt(
        "NETFILTER_XT_TARGET_TPROXY",
        Some("xt_TPROXY"),
        &[L7Proxy],
        Missing::Fail,
        "transparent proxy redirection to Envoy",
    ),
    opt(
        "NETFILTER_XT_TARGET_CT",
        Some("xt_CT"),
        &[L7Proxy],
        Missing::Fail,
        "conntrack zone/notrack rules for proxy traffic",
    ),
    opt(
        "NETFILTER_XT_MATCH_MARK",
        Some("xt_mark"),
        &[L7Proxy],
        Missing::Fail,
        "mark matching for proxy traffic",
    ),
    opt(
        "NETFILTER_XT_MATCH_SOCKET",
        Some("xt_socket"),
        &[L7Proxy],
        Missing::Fail,
        "socket matching for proxy traffic (without it Cilium disables ip_early_demux)",
    ),
    opt(
        "NET_SCH_FQ",
        Some("sch_fq"),
        &[BandwidthManager],
        Missing::Fail,
        "the fq qdisc the bandwidth manager installs",
    ),
    opt(
        "WIREGUARD",
        Some("wireguard"),
        &[WireGuard],
        Missing::Fail,
        "WireGuard transparent encryption",
    ),
    opt(
        "XFRM",
        None,
        &[Ipsec],
        Missing::Fail,
        "IPsec transformation framework",
    ),
    opt(
        "XFRM_USER",
        Some("xfrm_user"),
        &[Ipsec],
        Missing::Fail,
        "netlink configuration of IPsec states",
    ),
    opt(
        "INET_ESP",
        Some("esp4"),
        &[Ipsec],
        Missing::Fail,
        "ESP for IPv4 IPsec",
    ),
    opt(
        "NETKIT",
        None,
        &[Netkit],
        Missing::Fail,
        "netkit devices (bpf.datapathMode=netkit, kernel 6.8+)",
    ),
];

fn option_check(o: &'static Opt) -> Check {
    let id = format!(
        "kernel.config.{}",
        o.name.to_ascii_lowercase().replace('_', "-")
    );
    let remedy = match o.module {
        Some(m) => format!(
            "a kernel built with CONFIG_{}=y or =m (module {m}); on distribution kernels install the extra modules package (e.g. linux-modules-extra-$(uname -r)) and run `modprobe {m}`",
            o.name
        ),
        None => format!("a kernel built with CONFIG_{}=y", o.name),
    };
    Check::new(id, Area::Kernel, format!("CONFIG_{}: {}", o.name, o.why))
        .needed_by(o.needed_by)
        .remedy(remedy)
        .evaluate(move |facts, target| {
            if let (Some(since), Some(v)) = (o.since, minor_of(&target.cilium_version))
                && v < since
            {
                return Outcome::skip(format!(
                    "not required before Cilium {}.{}",
                    since.0, since.1
                ));
            }
            judge(facts, o)
        })
}

fn not_set(o: &Opt, detail: String) -> Outcome {
    match o.missing {
        Missing::Fail => Outcome::fail(detail),
        Missing::Warn => Outcome::warn(detail),
    }
}

fn judge(facts: &Facts, o: &Opt) -> Outcome {
    let config = match &facts.kernel_config {
        KernelConfigFact::Found(c) => c,
        KernelConfigFact::NotVisible { problems, .. } => {
            let mut out = Outcome::unknown("kernel config not visible; cannot tell");
            for p in problems {
                out = out.evidence(p.clone());
            }
            return out;
        }
    };
    let source = config.source.clone();
    match config.get(o.name) {
        Some(Setting::Builtin) => Outcome::pass(format!("CONFIG_{}=y", o.name)).evidence(source),
        Some(Setting::Value(v)) => Outcome::pass(format!("CONFIG_{}={v}", o.name)).evidence(source),
        Some(Setting::Module) => {
            let Some(module) = o.module else {
                return Outcome::pass(format!("CONFIG_{}=m", o.name)).evidence(source);
            };
            match facts.modules.state(&facts.host, module) {
                ModuleState::Builtin | ModuleState::Loaded => {
                    Outcome::pass(format!("CONFIG_{}=m, module {module} loaded", o.name))
                        .evidence(source)
                }
                ModuleState::Loadable { file } => Outcome::pass(format!(
                    "CONFIG_{}=m, module {module} present but not loaded (loaded on demand, or `modprobe {module}`)",
                    o.name
                ))
                .evidence(source)
                .evidence(file),
                ModuleState::FileMissing { file } => not_set(
                    o,
                    format!("CONFIG_{}=m but the module file {file} is missing", o.name),
                )
                .evidence(source),
                ModuleState::Missing => not_set(
                    o,
                    format!(
                        "CONFIG_{}=m but module {module} is not installed for this kernel",
                        o.name
                    ),
                )
                .evidence(source),
                ModuleState::Unknown => Outcome::unknown(format!(
                    "CONFIG_{}=m and the module directory for this kernel is not visible",
                    o.name
                ))
                .evidence(source),
            }
        }
        None => not_set(o, format!("CONFIG_{} is not set", o.name)).evidence(source),
    }
}

/// `6.1.0-18-amd64` → (6, 1, 0).
pub fn kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let mut nums = release.split(['.', '-', '+', '_']).map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
    });
    let major = nums.next()?.ok()?;
    let minor = nums.next()?.ok()?;
    let patch = nums.next().and_then(Result::ok).unwrap_or(0);
    Some((major, minor, patch))
}

/// The modules that provide the options checked here when they are `=m`.
pub(super) fn option_modules() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().filter_map(|o| o.module)
}

pub fn checks() -> Vec<Check> {
    let mut checks = vec![
        Check::new("kernel.release", Area::Kernel, "Kernel version meets the target's minimum")
            .needed_by(&[BaseDatapath])
            .remedy("upgrade the kernel (Cilium 1.18+ needs 5.10, 1.16–1.17 need 5.4, 1.14–1.15 need 4.19.57); distribution kernels with backports are judged by the bpf probes")
            .evaluate(|facts, target| {
                let evidence = facts.host.display("/proc/sys/kernel/osrelease");
                let Some(release) = &facts.kernel_release else {
                    return Outcome::unknown(format!("kernel release not visible: {evidence} is absent or unreadable")).evidence(evidence);
                };
                let (Some(k), Some(c)) = (kernel_version(release), minor_of(&target.cilium_version)) else {
                    return Outcome::unknown(format!("cannot parse kernel release {release:?}")).evidence(evidence);
                };
                // The version's profile holds its documented minimum (cilium::profiles, FACTS §3).
                let min = target.profile().min_kernel;
                let shown = format!("{}.{}.{}", min.0, min.1, min.2);
                if k >= min {
                    Outcome::pass(format!("{release} ≥ {shown}")).evidence(evidence)
                } else {
                    Outcome::fail(format!("{release} is older than {shown}, the minimum for Cilium {}.{}", c.0, c.1)).evidence(evidence)
                }
            }),
        Check::new("kernel.config", Area::Kernel, "Kernel build configuration is visible")
            .remedy("make one of /proc/config.gz (CONFIG_IKCONFIG_PROC, or `modprobe configs`) or /boot/config-$(uname -r) visible (in a Job: mount the host's /boot and /proc)")
            .evaluate(|facts, _| match &facts.kernel_config {
                KernelConfigFact::Found(c) => Outcome::pass(format!("{} options", c.options.len())).evidence(c.source.clone()),
                KernelConfigFact::NotVisible { searched, problems } => {
                    let mut out = Outcome::unknown(if problems.is_empty() {
                        if facts.live {
                            format!("none of {} locations exists; options are judged by the live probes only", searched.len())
                        } else {
                            // With --root the live probes do not run: nothing else can judge options.
                            format!("none of {} locations exists under the root, and live probes do not run with --root: options cannot be judged (searched {})", searched.len(), searched.join(", "))
                        }
                    } else {
                        format!("no usable kernel config: {}", problems.join("; "))
                    });
                    for p in problems {
                        out = out.evidence(p.clone());
                    }
                    out
                }
            }),
    ];
    checks.extend(OPTIONS.iter().map(option_check));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse_distribution_releases() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1, 0)));
        assert_eq!(kernel_version("5.14.0-503.el9.x86_64"), Some((5, 14, 0)));
        assert_eq!(kernel_version("4.19.57"), Some((4, 19, 57)));
        assert_eq!(kernel_version("6.18"), Some((6, 18, 0)));
        assert_eq!(kernel_version("garbage"), None);
        // Minimum kernels per version are tested with the profiles (cilium::profiles).
    }
}

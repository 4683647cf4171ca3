//! Kernel build options per Cilium capability and the minimum kernel per version. Which option
//! each capability of each version needs, and how badly, is the release table's
//! (cilium::releases); this file describes the options themselves: the module that provides
//! them, what they are for, since when Linux has them. `=m` options are judged with the
//! module's state; a config or module index we cannot see is "could not tell".
use super::Check;
use crate::{
    cilium::{
        Target,
        releases::{KernelVersion, Release, Severity, kernel_version_str},
        values::lookup,
    },
    facts::Facts,
    host::{
        kconfig::{KernelConfigFact, NotVisible, Setting},
        modules::ModuleState,
    },
    model::{
        Area,
        Capability::{self, *},
        Outcome, Support,
    },
};

/// A kernel build option preflight can judge.
struct KernelOption {
    name: &'static str,
    /// The module that provides it when `=m`.
    module: Option<&'static str>,
    why: &'static str,
    /// The Linux release that introduced the option: older kernels cannot have it at all.
    since: Option<KernelVersion>,
    /// An attach canary that exercises the option for real (cls_bpf and sch_ingress: the tc
    /// canary attaches through both), so a module that cannot be seen on disk is still proven.
    canary: Option<&'static str>,
}

const fn opt(name: &'static str, module: Option<&'static str>, why: &'static str) -> KernelOption {
    KernelOption {
        name,
        module,
        why,
        since: None,
        canary: None,
    }
}

/// Every option any known version needs (docs/target-and-values.md; Documentation/operations/
/// system_requirements.rst; pkg/datapath/linux/requirements.go).
const OPTIONS: &[KernelOption] = &[
    opt(
        "BPF",
        None,
        "eBPF itself; the agent refuses to start without it",
    ),
    opt(
        "BPF_SYSCALL",
        None,
        "the bpf() system call; hard-required by the agent",
    ),
    opt("BPF_JIT", None, "the eBPF JIT; hard-required by the agent"),
    opt(
        "HAVE_EBPF_JIT",
        None,
        "architecture eBPF JIT support; hard-required by the agent",
    ),
    KernelOption {
        canary: Some("tc"),
        ..opt(
            "NET_CLS_BPF",
            Some("cls_bpf"),
            "tc BPF classifier (bpf_lxc, bpf_host); hard-required",
        )
    },
    opt("NET_CLS_ACT", None, "tc actions; hard-required"),
    KernelOption {
        canary: Some("tc"),
        ..opt(
            "NET_SCH_INGRESS",
            Some("sch_ingress"),
            "clsact/ingress qdisc; hard-required",
        )
    },
    opt(
        "CRYPTO_SHA1",
        Some("sha1_generic"),
        "documented base requirement (program tags); the agent does not check it",
    ),
    opt(
        "CRYPTO_USER_API_HASH",
        Some("algif_hash"),
        "documented base requirement (AF_ALG hashes, used by tools computing program tags); the agent does not check it",
    ),
    opt("CGROUPS", None, "documented base requirement"),
    opt(
        "PERF_EVENTS",
        None,
        "perf ring buffer for monitor/Hubble events; documented base requirement",
    ),
    opt("SCHEDSTATS", None, "documented base requirement"),
    opt(
        "BPF_EVENTS",
        None,
        "documented base requirement in newer docs",
    ),
    KernelOption {
        since: Some((5, 2, 0)),
        ..opt(
            "DEBUG_INFO_BTF",
            None,
            "kernel BTF (/sys/kernel/btf/vmlinux); required from Cilium 1.19.3 and in 1.20",
        )
    },
    opt(
        "CGROUP_BPF",
        None,
        "cgroup BPF hooks for socket-level load balancing",
    ),
    opt(
        "NETFILTER_XT_SET",
        Some("xt_set"),
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    opt(
        "IP_SET",
        Some("ip_set"),
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    opt(
        "IP_SET_HASH_IP",
        Some("ip_set_hash_ip"),
        "iptables masquerading (the default without bpf.masquerade)",
    ),
    opt(
        "NETFILTER_XT_MATCH_COMMENT",
        Some("xt_comment"),
        "iptables rule comments (1.18+ docs)",
    ),
    opt(
        "VXLAN",
        Some("vxlan"),
        "the vxlan tunnel device (cilium_vxlan)",
    ),
    KernelOption {
        since: Some((3, 18, 0)),
        ..opt(
            "GENEVE",
            Some("geneve"),
            "the geneve tunnel device (cilium_geneve)",
        )
    },
    opt(
        "FIB_RULES",
        None,
        "policy routing rules (1.18+ docs, tunnelling and routing)",
    ),
    opt(
        "NETFILTER_XT_TARGET_TPROXY",
        Some("xt_TPROXY"),
        "transparent proxy redirection to Envoy",
    ),
    opt(
        "NETFILTER_XT_TARGET_CT",
        Some("xt_CT"),
        "conntrack zone/notrack rules for proxy traffic",
    ),
    opt(
        "NETFILTER_XT_TARGET_MARK",
        Some("xt_mark"),
        "MARK target for proxy traffic",
    ),
    opt(
        "NETFILTER_XT_MATCH_MARK",
        Some("xt_mark"),
        "mark matching for proxy traffic",
    ),
    opt(
        "NETFILTER_XT_MATCH_SOCKET",
        Some("xt_socket"),
        "socket matching for proxy traffic routed natively (without it the agent disables ip_early_demux: enableXTSocketFallback)",
    ),
    opt(
        "NET_SCH_FQ",
        Some("sch_fq"),
        "the fq qdisc the bandwidth manager installs",
    ),
    KernelOption {
        since: Some((5, 6, 0)),
        ..opt(
            "WIREGUARD",
            Some("wireguard"),
            "WireGuard transparent encryption",
        )
    },
    opt("XFRM", None, "IPsec transformation framework"),
    opt(
        "XFRM_USER",
        Some("xfrm_user"),
        "netlink configuration of IPsec states",
    ),
    opt("INET_ESP", Some("esp4"), "ESP for IPv4 IPsec"),
    KernelOption {
        since: Some((6, 7, 0)),
        ..opt(
            "NETKIT",
            None,
            "netkit devices (bpf.datapathMode=netkit; Cilium documents kernel 6.8)",
        )
    },
];

fn check_id(name: &str) -> String {
    format!(
        "kernel.config.{}",
        name.to_ascii_lowercase().replace('_', "-")
    )
}

/// What fixes a missing option, by how it is missing.
fn rebuild(o: &KernelOption) -> String {
    format!(
        "a kernel built with CONFIG_{}=y{}: on a distribution, another kernel flavour that has it \
         (e.g. the generic instead of a cloud/virtual/esx flavour); no package adds an option \
         that was not compiled",
        o.name,
        o.module
            .map(|m| format!(" or =m (module {m})"))
            .unwrap_or_default()
    )
}

/// The option's generic remedy (a finding replaces it with the one for how it is missing).
fn remedy(o: &KernelOption) -> String {
    match o.module {
        Some(m) => format!(
            "CONFIG_{}=y, or =m with module {m} installed (`modprobe {m}`); see the finding for \
             what is missing",
            o.name
        ),
        None => format!("a kernel built with CONFIG_{}=y", o.name),
    }
}

/// How badly the target needs `o`, from the release table: the strongest need among the
/// capabilities the target uses (or among all that list it, for a check the target does not
/// need). None when the target's version lists it nowhere.
fn severity(
    release: &Release,
    target: &Target,
    o: &KernelOption,
) -> Option<(Severity, Vec<Capability>)> {
    let needs = release.option_needs(o.name);
    if needs.is_empty() {
        return None;
    }
    let used: Vec<_> = needs.iter().filter(|(c, _)| target.needs(*c)).collect();
    let pool = if used.is_empty() {
        needs.iter().collect()
    } else {
        used
    };
    let rank = |s: &Severity| match resolve(release, target, *s) {
        Missing::Fail(_) => 2,
        Missing::Warn(_) => 1,
    };
    let strongest = pool.iter().map(|(_, s)| *s).max_by_key(rank)?;
    Some((strongest, needs.iter().map(|(c, _)| *c).collect()))
}

/// A missing option's consequence for this target, and a note saying why.
enum Missing {
    Fail(String),
    Warn(String),
}

fn resolve(release: &Release, target: &Target, severity: Severity) -> Missing {
    let v = &target.cilium_version;
    match severity {
        Severity::Required => Missing::Fail(String::new()),
        Severity::Recommended => Missing::Warn(String::new()),
        Severity::RequiredFromPatch(p) => {
            let from = format!("{}.{}.{p}", release.major, release.minor);
            if v.at_least((release.major, release.minor, p), release.latest_patch) {
                Missing::Fail(format!(" (required from Cilium {from})"))
            } else {
                Missing::Warn(format!(" (required from Cilium {from}; {v} does not yet)"))
            }
        }
        Severity::FallsBackUnless(path) => match lookup(&target.effective_values(), path) {
            Some(serde_json::Value::Bool(false)) => Missing::Fail(format!(
                " (`{path}: false`: the agent refuses to start without it)"
            )),
            _ => Missing::Warn(format!(
                " (the agent falls back: `{path}` is on; it disables ip_early_demux instead)"
            )),
        },
    }
}

fn option_check(o: &'static KernelOption, release: &'static Release) -> Check {
    let needed_by = release
        .option_needs(o.name)
        .into_iter()
        .map(|(c, _)| c)
        .collect::<Vec<_>>();
    Check::new(
        check_id(o.name),
        Area::Kernel,
        format!("CONFIG_{}: {}", o.name, o.why),
    )
    .needed_by(&needed_by)
    .remedy(remedy(o))
    .evaluate(move |facts, target| {
        let release = target.release();
        let Some((severity, _)) = severity(release, target, o) else {
            return Outcome::skip(format!("Cilium {} does not need it", target.cilium_version));
        };
        // xt_socket only matters to the L7 proxy's redirection.
        if matches!(severity, Severity::FallsBackUnless(_)) && !target.needs(L7Proxy) {
            return Outcome::skip("l7Proxy is off: nothing uses the socket match");
        }
        judge(facts, o, &resolve(release, target, severity))
    })
}

fn missing(m: &Missing, detail: String) -> Outcome {
    match m {
        Missing::Fail(note) => Outcome::fail(format!("{detail}{note}")),
        Missing::Warn(note) => Outcome::warn(format!("{detail}{note}")),
    }
}

/// The kernel's version from the facts, when the release is visible.
fn running_kernel(facts: &Facts) -> Option<KernelVersion> {
    facts.kernel_release.as_deref().and_then(kernel_version)
}

fn canary_passed(facts: &Facts, canary: &str) -> bool {
    facts.canaries.got().is_some_and(|r| {
        r.results
            .get(canary)
            .is_some_and(|c| c.support == Support::Available)
    })
}

fn judge(facts: &Facts, o: &KernelOption, m: &Missing) -> Outcome {
    let config = match &facts.kernel_config {
        KernelConfigFact::Got(c) => c,
        KernelConfigFact::Unknown(NotVisible { problems, .. }) => {
            let mut out = Outcome::unknown("kernel config not visible; cannot tell");
            for p in problems {
                out = out.evidence(p.clone());
            }
            return out;
        }
        KernelConfigFact::Skipped(why) => return Outcome::skip(why.clone()),
    };
    let source = config.source.clone();
    let name = o.name;
    match config.get(name) {
        Some(Setting::Builtin) => Outcome::pass(format!("CONFIG_{name}=y")).evidence(source),
        Some(Setting::Value(v)) => Outcome::pass(format!("CONFIG_{name}={v}")).evidence(source),
        Some(Setting::Module) => {
            let Some(module) = o.module else {
                return Outcome::pass(format!("CONFIG_{name}=m")).evidence(source);
            };
            match facts.modules.state(&facts.host, module) {
                ModuleState::Builtin | ModuleState::Loaded => {
                    Outcome::pass(format!("CONFIG_{name}=m, module {module} loaded"))
                        .evidence(source)
                }
                ModuleState::Loadable { file } => Outcome::pass(format!(
                    "CONFIG_{name}=m, module {module} present but not loaded (loaded on demand, or `modprobe {module}`)"
                ))
                .evidence(source)
                .evidence(file),
                ModuleState::FileMissing { file } => missing(
                    m,
                    format!("CONFIG_{name}=m and modules.dep lists {module}, but the module file {file} is missing"),
                )
                .remedy(format!(
                    "reinstall this kernel's own modules package (Debian/Ubuntu: `apt install --reinstall linux-image-$(uname -r)` or linux-modules-$(uname -r); RHEL: `dnf reinstall kernel-modules-$(uname -r)`), then `depmod -a` and `modprobe {module}`"
                ))
                .evidence(source)
                .evidence(file),
                ModuleState::Missing => missing(
                    m,
                    format!("CONFIG_{name}=m but module {module} is not installed for this kernel"),
                )
                .remedy(format!(
                    "install the package with this kernel's extra modules (Ubuntu: linux-modules-extra-$(uname -r); RHEL: kernel-modules-extra), then `modprobe {module}`"
                ))
                .evidence(source),
                ModuleState::Unknown { why } if o.canary.is_some_and(|c| canary_passed(facts, c)) => {
                    Outcome::pass(format!(
                        "CONFIG_{name}=m; {why}, but the {} attach canary worked through {module}",
                        o.canary.unwrap_or_default()
                    ))
                    .evidence(source)
                }
                ModuleState::Unknown { why } => {
                    let out = Outcome::unknown(format!(
                        "CONFIG_{name}=m and {why}: whether {module} can be loaded cannot be told"
                    ))
                    .remedy(format!(
                        "make the node's /lib/modules/$(uname -r) visible (in a Job: mount the host's /lib/modules), or check `modinfo {module}` on the node"
                    ))
                    .evidence(source);
                    // A hard requirement that could not be told leaves the capability undecided.
                    if matches!(m, Missing::Fail(_)) {
                        out.decisive()
                    } else {
                        out
                    }
                }
            }
        }
        None => {
            let running = running_kernel(facts);
            match (o.since, running) {
                (Some(since), Some(k)) if k < since => missing(
                    m,
                    format!(
                        "Linux {} has no CONFIG_{name}: the option exists from Linux {}",
                        kernel_version_str(k),
                        kernel_version_str(since)
                    ),
                )
                .remedy(format!(
                    "a kernel {} or newer built with CONFIG_{name}",
                    kernel_version_str(since)
                ))
                .evidence(source),
                _ => missing(m, format!("CONFIG_{name} is not set"))
                    .remedy(rebuild(o))
                    .evidence(source),
            }
        }
    }
}

/// The distribution kernel the version's docs accept below its minimum (RHEL 8.x's 4.18): from
/// os-release, else from an `el8_10`-style kernel release.
fn distro_exception(
    facts: &Facts,
    release: &Release,
    kernel: KernelVersion,
    text: &str,
) -> Option<Result<String, String>> {
    let ex = release.kernel.exception?;
    if (kernel.0, kernel.1) != (ex.kernel.0, ex.kernel.1) {
        return None;
    }
    let from_os = facts.distro.os.as_ref().ok().and_then(|os| {
        let ids = std::iter::once(os.id.clone().unwrap_or_default())
            .chain(
                os.id_like
                    .iter()
                    .flat_map(|l| l.split_whitespace().map(str::to_string))
                    .collect::<Vec<_>>(),
            )
            .collect::<Vec<_>>();
        ids.iter().any(|i| ex.ids.contains(&i.as_str())).then(|| {
            let v = os.version_id.clone().unwrap_or_default();
            let mut p = v.split('.').map(|x| x.parse::<u32>().ok());
            (
                v.clone(),
                p.next()
                    .flatten()
                    .zip(Some(p.next().flatten().unwrap_or(0))),
            )
        })
    });
    // `4.18.0-553.el8_10.x86_64`: the release a RHEL kernel belongs to.
    let from_kernel = || {
        let tag = text.split('.').find(|p| p.starts_with("el"))?;
        let rest = tag.strip_prefix("el")?;
        let (maj, min) = rest.split_once('_').unwrap_or((rest, "0"));
        let v = (maj.parse().ok()?, min.parse().ok()?);
        Some((format!("{}.{}", v.0, v.1), Some(v)))
    };
    let (shown, version) = from_os.or_else(from_kernel)?;
    let ok = version.is_some_and(|v| v >= ex.min_release);
    Some(if ok { Ok(shown) } else { Err(shown) })
}

fn kernel_release_check(facts: &Facts, target: &Target) -> Outcome {
    let evidence = facts.host.display("/proc/sys/kernel/osrelease");
    let Some(text) = &facts.kernel_release else {
        return Outcome::unknown(format!(
            "kernel release not visible: {evidence} is absent or unreadable"
        ))
        .evidence(evidence);
    };
    let Some(k) = kernel_version(text) else {
        return Outcome::unknown(format!("cannot parse kernel release {text:?}"))
            .evidence(evidence);
    };
    let release = target.release();
    let min = release.kernel.min;
    let shown = kernel_version_str(min);
    if k >= min {
        return Outcome::pass(format!("{text} ≥ {shown}")).evidence(evidence);
    }
    let label = release.label();
    match distro_exception(facts, release, k, text) {
        Some(Ok(distro)) => Outcome::pass(format!(
            "{text} on RHEL-family {distro}: Cilium {label} accepts {} below its {shown} minimum (backported eBPF); the bpf probes and canaries judge the features",
            release.kernel.exception.map(|e| e.label).unwrap_or_default()
        ))
        .evidence(evidence),
        Some(Err(distro)) => Outcome::fail(format!(
            "{text} is older than {shown}, the minimum for Cilium {label}; on RHEL-family {distro} only {} is accepted",
            release.kernel.exception.map(|e| e.label).unwrap_or_default()
        ))
        .remedy(format!(
            "update to {} or a kernel {shown} or newer",
            release.kernel.exception.map(|e| e.label).unwrap_or_default()
        ))
        .evidence(evidence),
        None => Outcome::fail(format!("{text} is older than {shown}, the minimum for Cilium {label}"))
            .remedy(format!("a kernel {shown} or newer{}", release.kernel.exception.map(|e| format!(" (or {})", e.label)).unwrap_or_default()))
            .evidence(evidence),
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

/// The kernel checks for a release: needed_by comes from its capability table.
pub fn checks(release: &'static Release) -> Vec<Check> {
    let mut checks = vec![
        Check::new("kernel.release", Area::Kernel, "Kernel version meets the target's minimum")
            .needed_by(&[BaseDatapath])
            .remedy("a kernel at the target's documented minimum (see the finding)")
            .evaluate(kernel_release_check),
        Check::new("kernel.config", Area::Kernel, "Kernel build configuration is visible")
            .remedy("make one of /proc/config.gz (CONFIG_IKCONFIG_PROC, or `modprobe configs`) or /boot/config-$(uname -r) visible (in a Job: mount the host's /boot and /proc)")
            .evaluate(|facts, _| match &facts.kernel_config {
                KernelConfigFact::Got(c) => Outcome::pass(format!("{} options", c.options.len())).evidence(c.source.clone()),
                KernelConfigFact::Unknown(NotVisible { searched, problems }) => {
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
                KernelConfigFact::Skipped(why) => Outcome::skip(why.clone()),
            }),
    ];
    checks.extend(OPTIONS.iter().map(|o| option_check(o, release)));
    checks
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::{
        checks::run_all,
        cilium::derive,
        model::{CheckResult, Status},
    };

    #[test]
    fn kernel_versions_parse_distribution_releases() {
        assert_eq!(kernel_version("6.1.0-18-amd64"), Some((6, 1, 0)));
        assert_eq!(kernel_version("5.14.0-503.el9.x86_64"), Some((5, 14, 0)));
        assert_eq!(kernel_version("4.19.57"), Some((4, 19, 57)));
        assert_eq!(kernel_version("6.18"), Some((6, 18, 0)));
        assert_eq!(kernel_version("garbage"), None);
    }

    /// Everything the base datapath wants, as `=y`; the tests take options out or make them `=m`.
    const FULL: &[&str] = &[
        "BPF",
        "BPF_SYSCALL",
        "BPF_JIT",
        "HAVE_EBPF_JIT",
        "NET_CLS_BPF",
        "NET_CLS_ACT",
        "NET_SCH_INGRESS",
        "CRYPTO_SHA1",
        "CRYPTO_USER_API_HASH",
        "CGROUPS",
        "PERF_EVENTS",
        "SCHEDSTATS",
        "BPF_EVENTS",
        "DEBUG_INFO_BTF",
        "CGROUP_BPF",
        "NETFILTER_XT_SET",
        "IP_SET",
        "IP_SET_HASH_IP",
        "NETFILTER_XT_MATCH_COMMENT",
        "VXLAN",
        "GENEVE",
        "FIB_RULES",
        "NETFILTER_XT_TARGET_TPROXY",
        "NETFILTER_XT_TARGET_CT",
        "NETFILTER_XT_TARGET_MARK",
        "NETFILTER_XT_MATCH_MARK",
        "NETFILTER_XT_MATCH_SOCKET",
        "NET_SCH_FQ",
        "WIREGUARD",
        "XFRM",
        "XFRM_USER",
        "INET_ESP",
        "NETKIT",
    ];

    struct Node {
        dir: tempfile::TempDir,
        release: String,
    }

    impl Node {
        /// A node root with this kernel release and config: FULL minus `without`, with `modular`
        /// as `=m`.
        fn new(release: &str, without: &[&str], modular: &[&str]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let write = |path: &str, text: &str| {
                let p = dir.path().join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            };
            write("proc/sys/kernel/osrelease", &format!("{release}\n"));
            let config: String = FULL
                .iter()
                .filter(|o| !without.contains(o))
                .map(|o| {
                    let v = if modular.contains(o) { "m" } else { "y" };
                    format!("CONFIG_{o}={v}\n")
                })
                .collect();
            write(&format!("boot/config-{release}"), &config);
            Self {
                dir,
                release: release.into(),
            }
        }
        fn file(&self, path: &str, text: &str) -> &Self {
            let p = self.dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }
        fn modules_dir(&self) -> String {
            format!("lib/modules/{}", self.release)
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
    }

    fn target(version: &str, values: serde_json::Value) -> Target {
        let mut t = Target::chart_defaults(version);
        t.values = values;
        t.capabilities = derive::capabilities(&t.effective_values());
        t
    }

    fn results(node: &Node, t: &Target) -> Vec<CheckResult> {
        run_all(&Facts::from_root(node.root()), t, &[])
    }

    fn result(node: &Node, t: &Target, id: &str) -> CheckResult {
        results(node, t).into_iter().find(|c| c.id == id).unwrap()
    }

    /// Class 9: CONFIG_NETKIT on a kernel that predates the option; the L7 list's TARGET_MARK.
    #[test]
    fn options_a_kernel_cannot_have_and_the_l7_mark_target() {
        let node = Node::new(
            "6.1.0-18-amd64",
            &["NETKIT", "NETFILTER_XT_TARGET_MARK"],
            &[],
        );
        let t = target("1.20", json!({"bpf": {"datapathMode": "netkit"}}));
        let r = result(&node, &t, "kernel.config.netkit");
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.detail
                .contains("Linux 6.1 has no CONFIG_NETKIT: the option exists from Linux 6.7"),
            "{}",
            r.detail
        );
        assert!(r.remedy.unwrap().contains("6.7 or newer"));
        let r = result(&node, &t, "kernel.config.netfilter-xt-target-mark");
        assert_eq!(r.status, Status::Fail);
        assert!(r.needed_by.contains(&L7Proxy) && r.relevant);
    }

    /// Class 10: kernel BTF is required from 1.19.3 and in 1.20; a warning before.
    #[test]
    fn btf_is_a_failure_from_the_patch_that_requires_it() {
        let node = Node::new("6.1.0-18-amd64", &["DEBUG_INFO_BTF"], &[]);
        for (version, status) in [
            ("1.18", Status::Warn),
            ("1.19.2", Status::Warn),
            ("1.19.3", Status::Fail),
            ("1.19", Status::Fail),
            ("1.20.0", Status::Fail),
        ] {
            let r = result(
                &node,
                &target(version, json!({})),
                "kernel.config.debug-info-btf",
            );
            assert_eq!(r.status, status, "{version}: {}", r.detail);
        }
        let r = result(
            &node,
            &target("1.19.2", json!({})),
            "kernel.config.debug-info-btf",
        );
        assert!(
            r.detail.contains("required from Cilium 1.19.3"),
            "{}",
            r.detail
        );
    }

    /// Class 11: RHEL 8.10's 4.18 is accepted by 1.18+, RHEL 8.6's by 1.16–1.17, no other 4.18.
    #[test]
    fn rhel_kernels_are_judged_by_the_documented_exception() {
        let rhel = |version_id: &str, release: &str| {
            let node = Node::new(release, &[], &[]);
            node.file(
                "etc/os-release",
                &format!("ID=\"rhel\"\nVERSION_ID=\"{version_id}\"\n"),
            );
            node
        };
        let n810 = rhel("8.10", "4.18.0-553.el8_10.x86_64");
        let n86 = rhel("8.6", "4.18.0-372.9.1.el8.x86_64");
        for (node, version, status) in [
            (&n810, "1.20", Status::Pass),
            (&n810, "1.18", Status::Pass),
            (&n810, "1.16", Status::Pass),
            (&n86, "1.18", Status::Fail),
            (&n86, "1.16", Status::Pass),
        ] {
            let r = result(node, &target(version, json!({})), "kernel.release");
            assert_eq!(r.status, status, "{version}: {}", r.detail);
        }
        let r = result(&n86, &target("1.18", json!({})), "kernel.release");
        assert!(
            r.detail.contains("only 4.18 on RHEL 8.10 is accepted"),
            "{}",
            r.detail
        );
        // Without os-release, the kernel's el8_10 tag says the same.
        let bare = Node::new("4.18.0-553.el8_10.x86_64", &[], &[]);
        assert_eq!(
            result(&bare, &target("1.20", json!({})), "kernel.release").status,
            Status::Pass
        );
        // Any other 4.18 is too old, and the remedy says what would do.
        let other = Node::new("4.18.20", &[], &[]);
        let r = result(&other, &target("1.20", json!({})), "kernel.release");
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.remedy
                .unwrap()
                .contains("5.10 or newer (or 4.18 on RHEL 8.10)")
        );
    }

    /// Class 12: without xt_socket the agent falls back; only native routing with the L7 proxy
    /// is concerned, and only `enableXTSocketFallback: false` makes it a failure.
    #[test]
    fn a_missing_xt_socket_is_a_fallback_not_an_l7_failure() {
        let node = Node::new("6.1.0-18-amd64", &["NETFILTER_XT_MATCH_SOCKET"], &[]);
        let id = "kernel.config.netfilter-xt-match-socket";
        let native = json!({"routingMode": "native", "ipv4NativeRoutingCIDR": "10.42.0.0/16"});
        let r = result(&node, &target("1.20", native.clone()), id);
        assert_eq!(r.status, Status::Warn, "{}", r.detail);
        assert!(!r.needed_by.contains(&L7Proxy), "{:?}", r.needed_by);
        assert!(r.detail.contains("enableXTSocketFallback"), "{}", r.detail);
        let mut strict = native.clone();
        crate::cilium::values::merge(&mut strict, json!({"enableXTSocketFallback": false}));
        assert_eq!(
            result(&node, &target("1.20", strict), id).status,
            Status::Fail
        );
        let mut no_l7 = native;
        crate::cilium::values::merge(&mut no_l7, json!({"l7Proxy": false}));
        assert_eq!(
            result(&node, &target("1.20", no_l7), id).status,
            Status::Skip
        );
        // In a tunnel it blocks nothing the target needs.
        let r = result(&node, &target("1.20", json!({})), id);
        assert!(!r.relevant, "{r:?}");
    }

    /// Class 13: a hard requirement built as a module that cannot be checked leaves the verdict
    /// undecided; a visible module dir without modules.dep is named as such.
    #[test]
    fn modular_hard_requirements_that_cannot_be_checked_are_undecided() {
        let node = Node::new("6.1.0-18-amd64", &[], &["NET_CLS_BPF", "NET_SCH_INGRESS"]);
        let t = target("1.20", json!({}));
        let checks = results(&node, &t);
        let r = checks
            .iter()
            .find(|c| c.id == "kernel.config.net-cls-bpf")
            .unwrap();
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.decisive && r.detail.contains("no module directory"),
            "{r:?}"
        );
        // (The verdict turns a decisive unknown into an undecided capability: verdict's tests,
        // and tests/verdict_table.rs on this node.)

        node.file(&format!("{}/modules.builtin", node.modules_dir()), "");
        let r = result(&node, &t, "kernel.config.net-cls-bpf");
        assert_eq!(r.status, Status::Unknown);
        assert!(
            r.detail
                .contains("is visible but has no readable modules.dep"),
            "{}",
            r.detail
        );
        // A recommended option that cannot be checked is not decisive.
        let soft = Node::new("6.1.0-18-amd64", &[], &["CRYPTO_USER_API_HASH"]);
        let r = result(&soft, &t, "kernel.config.crypto-user-api-hash");
        assert!(r.status == Status::Unknown && !r.decisive, "{r:?}");
    }

    /// Class 14: the fix follows how an option is missing.
    #[test]
    fn remedies_follow_how_an_option_is_missing() {
        // Not built at all (Photon's linux-esx has no NET_CLS_BPF): another kernel flavour.
        let esx = Node::new("6.1.83-1.ph5-esx", &["NET_CLS_BPF"], &[]);
        let t = target("1.20", json!({}));
        let r = result(&esx, &t, "kernel.config.net-cls-bpf");
        assert_eq!(r.status, Status::Fail);
        let remedy = r.remedy.unwrap();
        assert!(remedy.contains("another kernel flavour"), "{remedy}");
        assert!(
            !remedy.contains("modules-extra") && !remedy.contains("modprobe"),
            "{remedy}"
        );

        let node = Node::new("6.1.0-18-amd64", &[], &["NET_CLS_BPF", "VXLAN"]);
        let dir = node.modules_dir();
        node.file(
            &format!("{dir}/modules.dep"),
            "kernel/net/sched/cls_bpf.ko:\nkernel/net/foo.ko:\n",
        )
        .file(&format!("{dir}/modules.builtin"), "");
        // Listed in modules.dep, file gone: the kernel's own modules package.
        let r = result(&node, &t, "kernel.config.net-cls-bpf");
        assert_eq!(r.status, Status::Fail, "{}", r.detail);
        let remedy = r.remedy.unwrap();
        assert!(
            remedy.contains("reinstall this kernel's own modules package"),
            "{remedy}"
        );
        assert!(!remedy.contains("extra"), "{remedy}");
        // =m but not installed at all: the extra modules package.
        let r = result(&node, &t, "kernel.config.vxlan");
        assert_eq!(r.status, Status::Fail, "{}", r.detail);
        assert!(r.remedy.unwrap().contains("extra modules"), "{}", r.detail);
    }
}

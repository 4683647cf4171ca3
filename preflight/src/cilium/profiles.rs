//! What each Cilium minor needs and what its chart rejects, as data. Sources are cited per row
//! (../shared/FACTS.md §1, §3, §4): Documentation/operations/system_requirements.rst,
//! pkg/datapath/linux/requirements.go, install/kubernetes/cilium/templates/validate.yaml.
//! Adding a version is adding a row here, not an `if` elsewhere. How each version compiles its
//! datapath (flags, bundled LLVM, -mcpu) is the compile stage's profile, compile/profile.rs.
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Capability;

/// A Cilium version as the user wrote it: `1.16`, `1.16.4` or `v1.16.4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CiliumVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: Option<u32>,
}

impl CiliumVersion {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a Cilium version (expected e.g. 1.16 or 1.16.4)");
        let t = text.trim().trim_start_matches('v');
        // Pre-release suffixes (1.17.0-rc.1) judge like the release they lead to.
        let t = t.split(['-', '+']).next().unwrap_or(t);
        let mut parts = t.split('.');
        let num = |p: Option<&str>| p.and_then(|s| s.parse::<u32>().ok());
        let major = num(parts.next()).ok_or_else(bad)?;
        let minor = num(parts.next()).ok_or_else(bad)?;
        let patch = match parts.next() {
            None => None,
            Some(p) => Some(p.parse().map_err(|_| bad())?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            major,
            minor,
            patch,
        })
    }
    pub fn minor_key(self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for CiliumVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "{}.{}.{p}", self.major, self.minor),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

/// A kernel version `major.minor.patch`, compared numerically.
pub type KernelVersion = (u32, u32, u32);

pub fn kernel_version_str(v: KernelVersion) -> String {
    if v.2 == 0 {
        format!("{}.{}", v.0, v.1)
    } else {
        format!("{}.{}.{}", v.0, v.1, v.2)
    }
}

/// Parses the leading `X.Y[.Z]` of a kernel release such as `6.18.0-1-cloud-amd64`.
pub fn parse_kernel_release(release: &str) -> Option<KernelVersion> {
    let head: String = release
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut it = head.split('.').filter(|s| !s.is_empty());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    let patch = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// What one capability needs from the kernel in one version beyond its config options and
/// helpers (those are per-option/per-helper checks with their own version gates:
/// checks::kernel's option table, checks::bpf's helper table).
#[derive(Debug, Clone, Copy)]
pub struct FeatureNeeds {
    pub capability: Capability,
    /// Documented minimum kernel for the feature.
    pub min_kernel: Option<KernelVersion>,
}

/// Facts about one Cilium minor.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub major: u32,
    pub minor: u32,
    pub min_kernel: KernelVersion,
    /// Helpers the agent checks at start-up (1.18+), each in the program types it probes.
    pub agent_helpers: &'static [AgentHelper],
    /// Per-capability kernel needs beyond the base.
    pub features: &'static [FeatureNeeds],
    /// The chart's defaults for the keys that decide capabilities (YAML).
    pub chart_defaults: &'static str,
}

impl Profile {
    pub fn version(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
    pub fn needs(&self, capability: Capability) -> Option<&FeatureNeeds> {
        self.features.iter().find(|f| f.capability == capability)
    }
}

/// A helper the agent probes at start-up, and the program types it probes it in: the agent
/// refuses to start unless the helper is available in every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHelper {
    pub helper: &'static str,
    pub program_types: &'static [&'static str],
}

const fn agent_helper(helper: &'static str, program_types: &'static [&'static str]) -> AgentHelper {
    AgentHelper {
        helper,
        program_types,
    }
}

/// `CheckRequirements` in cilium/cilium pkg/datapath/linux/requirements.go (1.18+): each
/// `probes.HaveProgramHelper(<type>, asm.Fn<helper>)` that returns an error refuses the start.
/// The program type matters: bpf_get_netns_cookie, for one, is probed in cgroup_sock and
/// cgroup_sock_addr (kernel 5.7, f318903c0bf4 "bpf: Add netns cookie and enable it for bpf
/// cgroup hooks"); tc programs got it only years later (Debian's 6.12 still refuses it in
/// sched_cls), so judging it there would fail every 5.7–6.12 node for nothing.
/// skb_adjust_room stands for `HaveSKBAdjustRoomL2RoomMACSupport`, a sched_cls load.
const HELPERS_118: &[AgentHelper] = &HELPERS_118_LIST;
const HELPERS_118_LIST: [AgentHelper; 10] = [
    agent_helper("skb_change_tail", &["sched_cls"]),
    agent_helper("get_socket_cookie", &["cgroup_sock_addr"]),
    agent_helper("get_current_cgroup_id", &["cgroup_sock_addr"]),
    agent_helper("skb_adjust_room", &["sched_cls"]),
    agent_helper(
        "jiffies64",
        &["cgroup_sock", "cgroup_sock_addr", "sched_cls", "xdp"],
    ),
    agent_helper("get_netns_cookie", &["cgroup_sock", "cgroup_sock_addr"]),
    agent_helper("csum_level", &["sched_cls"]),
    agent_helper("skb_change_head", &["sched_cls"]),
    agent_helper("redirect_neigh", &["sched_cls"]),
    agent_helper("redirect_peer", &["sched_cls"]),
];
/// 1.19 adds these (FACTS §3). Their program type is not in our sources; sched_cls is where
/// the datapath calls all four, and each has been available there since 5.7 at the latest.
const HELPERS_119: &[AgentHelper] = &concat::<10, 4, 14>(
    HELPERS_118_LIST,
    [
        agent_helper("fib_lookup", &["sched_cls"]),
        agent_helper("sk_assign", &["sched_cls"]),
        agent_helper("get_cgroup_classid", &["sched_cls"]),
        agent_helper("perf_event_output", &["sched_cls"]),
    ],
);

/// `a` then `b`, at compile time: a version's list is the previous one plus what it adds.
const fn concat<const A: usize, const B: usize, const N: usize>(
    a: [AgentHelper; A],
    b: [AgentHelper; B],
) -> [AgentHelper; N] {
    assert!(A + B == N);
    let mut out = [agent_helper("", &[]); N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// FACTS §3: documented minimum kernels per feature; the same in every version we ship.
const FEATURES: &[FeatureNeeds] = &[
    FeatureNeeds {
        capability: Capability::BandwidthManager,
        min_kernel: Some((5, 1, 0)),
    },
    FeatureNeeds {
        capability: Capability::WireGuard,
        min_kernel: Some((5, 6, 0)),
    },
    FeatureNeeds {
        capability: Capability::BpfHostRouting,
        min_kernel: Some((5, 10, 0)),
    },
    FeatureNeeds {
        capability: Capability::Netkit,
        min_kernel: Some((6, 8, 0)),
    },
];

/// Chart defaults common to 1.15+ (values.yaml): tunnel routing over VXLAN, kube-proxy kept,
/// L7 proxy and Hubble on, legacy masquerading, veth datapath.
const DEFAULTS_115: &str = "
routingMode: tunnel
tunnelProtocol: vxlan
kubeProxyReplacement: false
l7Proxy: true
bpf:
  masquerade: false
  datapathMode: veth
bandwidthManager:
  enabled: false
encryption:
  enabled: false
  type: ipsec
hubble:
  enabled: true
  relay:
    enabled: false
  ui:
    enabled: false
cni:
  binPath: /opt/cni/bin
  confPath: /etc/cni/net.d
cgroup:
  autoMount:
    enabled: true
  hostRoot: /run/cilium/cgroupv2
loadBalancer:
  acceleration: disabled
";

/// 1.14 still spells the tunnel as `tunnel: vxlan` and kube-proxy replacement as a mode.
const DEFAULTS_114: &str = "
tunnel: vxlan
kubeProxyReplacement: disabled
l7Proxy: true
bpf:
  masquerade: false
bandwidthManager:
  enabled: false
encryption:
  enabled: false
  type: ipsec
hubble:
  enabled: true
  relay:
    enabled: false
  ui:
    enabled: false
cni:
  binPath: /opt/cni/bin
  confPath: /etc/cni/net.d
cgroup:
  autoMount:
    enabled: true
  hostRoot: /run/cilium/cgroupv2
loadBalancer:
  acceleration: disabled
";

/// Every minor we ship facts for, oldest first. The last one is the default target.
pub const PROFILES: &[Profile] = &[
    Profile {
        major: 1,
        minor: 14,
        min_kernel: (4, 19, 57),
        agent_helpers: &[],
        features: FEATURES,
        chart_defaults: DEFAULTS_114,
    },
    Profile {
        major: 1,
        minor: 15,
        min_kernel: (4, 19, 57),
        agent_helpers: &[],
        features: FEATURES,
        chart_defaults: DEFAULTS_115,
    },
    Profile {
        major: 1,
        minor: 16,
        min_kernel: (5, 4, 0),
        agent_helpers: &[],
        features: FEATURES,
        chart_defaults: DEFAULTS_115,
    },
    Profile {
        major: 1,
        minor: 17,
        min_kernel: (5, 4, 0),
        agent_helpers: &[],
        features: FEATURES,
        chart_defaults: DEFAULTS_115,
    },
    Profile {
        major: 1,
        minor: 18,
        min_kernel: (5, 10, 0),
        agent_helpers: HELPERS_118,
        features: FEATURES,
        chart_defaults: DEFAULTS_115,
    },
    Profile {
        major: 1,
        minor: 19,
        min_kernel: (5, 10, 0),
        agent_helpers: HELPERS_119,
        features: FEATURES,
        chart_defaults: DEFAULTS_115,
    },
];

pub fn newest() -> &'static Profile {
    PROFILES.last().expect("at least one profile")
}

/// The profile for a version's minor, or an error naming the ones we have.
pub fn for_version(version: CiliumVersion) -> Result<&'static Profile, String> {
    PROFILES
        .iter()
        .find(|p| (p.major, p.minor) == version.minor_key())
        .ok_or_else(|| {
            let known: Vec<_> = PROFILES.iter().map(|p| p.version()).collect();
            format!(
                "no profile for Cilium {version}; preflight knows {}",
                known.join(", ")
            )
        })
}

/// How serious a chart rule is: `Reject` makes `helm install` fail, `Ignored` is silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleEffect {
    /// The chart's validate.yaml fails the render with `chart_error`.
    Reject,
    /// The chart no longer reads the key: the setting silently does nothing.
    Ignored,
}

/// A value the chart removed, from `removed_in` on.
#[derive(Debug, Clone, Copy)]
pub struct RemovedValue {
    /// Stable check-id suffix.
    pub id: &'static str,
    /// Dotted values path.
    pub path: &'static str,
    pub removed_in: (u32, u32),
    pub effect: RuleEffect,
    /// The chart's own error text, verbatim, when it rejects the value.
    pub chart_error: Option<&'static str>,
    /// What to write instead.
    pub replacement: &'static str,
}

/// FACTS §4 (install/kubernetes/cilium/templates/validate.yaml and the upgrade notes).
pub const REMOVED_VALUES: &[RemovedValue] = &[
    RemovedValue {
        id: "tunnel",
        path: "tunnel",
        removed_in: (1, 15),
        effect: RuleEffect::Reject,
        chart_error: Some("tunnel was deprecated in v1.14 and has been removed in v1.15"),
        replacement: "remove `tunnel`; use `routingMode: tunnel` with `tunnelProtocol: vxlan|geneve`, \
                      or for `tunnel: disabled` use `routingMode: native` with \
                      `autoDirectNodeRoutes: true` and `ipv4NativeRoutingCIDR: <pod CIDR>`",
    },
    RemovedValue {
        id: "clustermesh-apiserver-tls-ca",
        path: "clustermesh.apiserver.tls.ca",
        removed_in: (1, 15),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `clustermesh.apiserver.tls.ca`; the CA is `tls.ca.cert`/`tls.ca.key`",
    },
    RemovedValue {
        id: "enable-k8s-event-handover",
        path: "enableK8sEventHandover",
        removed_in: (1, 15),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `enableK8sEventHandover` (the option no longer exists)",
    },
    RemovedValue {
        id: "enable-cnp-status-updates",
        path: "enableCnpStatusUpdates",
        removed_in: (1, 15),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `enableCnpStatusUpdates` (the option no longer exists)",
    },
    RemovedValue {
        id: "encryption-key-file",
        path: "encryption.keyFile",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "use `encryption.ipsec.keyFile`",
    },
    RemovedValue {
        id: "encryption-mount-path",
        path: "encryption.mountPath",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "use `encryption.ipsec.mountPath`",
    },
    RemovedValue {
        id: "encryption-secret-name",
        path: "encryption.secretName",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "use `encryption.ipsec.secretName`",
    },
    RemovedValue {
        id: "encryption-interface",
        path: "encryption.interface",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "use `encryption.ipsec.interface`",
    },
    RemovedValue {
        id: "proxy-prometheus",
        path: "proxy.prometheus",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "use `envoy.prometheus`",
    },
    RemovedValue {
        id: "endpoint-status",
        path: "endpointStatus",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `endpointStatus` (CiliumEndpoint status fields were removed)",
    },
    RemovedValue {
        id: "remote-node-identity",
        path: "remoteNodeIdentity",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `remoteNodeIdentity` (always on since 1.16)",
    },
    RemovedValue {
        id: "container-runtime-integration",
        path: "containerRuntime.integration",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `containerRuntime.integration`",
    },
    RemovedValue {
        id: "etcd-managed",
        path: "etcd.managed",
        removed_in: (1, 16),
        effect: RuleEffect::Ignored,
        chart_error: None,
        replacement: "remove `etcd.managed`; run etcd yourself or use the Kubernetes CRD backend",
    },
];

/// FACTS §4: from 1.15 the chart accepts only true/false here.
pub const KPR_BOOLEAN_SINCE: (u32, u32) = (1, 15);
pub const KPR_CHART_ERROR: &str =
    "kubeProxyReplacement must be explicitly set to a valid value (true or false) to continue";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_unknown_ones_name_the_known() {
        let v = CiliumVersion::parse("v1.16.4").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 16, Some(4)));
        assert_eq!(CiliumVersion::parse("1.19").unwrap().patch, None);
        assert_eq!(
            CiliumVersion::parse("1.17.0-rc.1").unwrap().minor_key(),
            (1, 17)
        );
        for bad in ["", "1", "x.y", "1.16.4.5", "1.16.x"] {
            assert!(CiliumVersion::parse(bad).is_err(), "{bad}");
        }
        let err = for_version(CiliumVersion::parse("1.9").unwrap()).unwrap_err();
        assert!(err.contains("1.14") && err.contains("1.19"), "{err}");
    }

    #[test]
    fn profiles_are_ordered_and_carry_the_documented_minimums() {
        for w in PROFILES.windows(2) {
            assert!((w[0].major, w[0].minor) < (w[1].major, w[1].minor));
            assert!(w[0].min_kernel <= w[1].min_kernel);
        }
        let p116 = for_version(CiliumVersion::parse("1.16.4").unwrap()).unwrap();
        assert_eq!(p116.min_kernel, (5, 4, 0));
        assert_eq!(newest().min_kernel, (5, 10, 0));
        assert!(
            newest()
                .agent_helpers
                .iter()
                .any(|h| h.helper == "fib_lookup")
        );
        for p in PROFILES {
            serde_norway::from_str::<serde_json::Value>(p.chart_defaults).unwrap();
        }
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(
            parse_kernel_release("6.18.0-1-cloud-amd64"),
            Some((6, 18, 0))
        );
        assert_eq!(parse_kernel_release("5.4.0"), Some((5, 4, 0)));
        assert_eq!(parse_kernel_release("4.19.57-foo"), Some((4, 19, 57)));
        assert_eq!(parse_kernel_release("6.8"), Some((6, 8, 0)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }
}

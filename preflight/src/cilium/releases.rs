//! What each Cilium minor is, as data: one [`Release`] row per minor, holding everything
//! preflight knows about that version — how its agent compiles the datapath (bundled LLVM, clang
//! flags, include layout), which headers and load-time configuration it writes, the ELF
//! conventions of its objects, the kernel it needs (minimum, distribution exceptions, BTF), what
//! its agent refuses at start, its chart's defaults and rules, and per capability the values
//! keys, accepted values, fallback patch, kernel options and helpers.
//!
//! Adding a version is adding a row to [`RELEASES`] (and, for its chart, regenerating the chart
//! data with `cargo xtask chart-data`): no other file knows version numbers. The test
//! `a_version_added_in_a_test_is_judged_end_to_end` proves it by adding one in the test only.
//!
//! Sources (docs/target-and-values.md has the full list; docs/upstream.md states the facts with
//! their upstream sources): the real 1.16.15, 1.18.3 and 1.20.0-dev trees, charts and agent sources
//! (pkg/datapath/loader/compile.go, bpf/include/bpf/config/*.h, bpf/lib/static_data.h),
//! Documentation/operations/system_requirements.rst, pkg/datapath/linux/requirements.go,
//! daemon/cmd/kube_proxy_replacement.go.
use serde_json::Value;

use super::{
    Capability::{self, *},
    chartdata::ChartData,
    derive,
    values::{as_text, lookup, truthy},
    version::CiliumVersion,
};
use crate::host::state::Generation;

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

// ---------------------------------------------------------------------------------------------
// The row.

/// Everything preflight knows about one Cilium minor.
#[derive(Debug, Clone)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    /// The newest patch release of this minor preflight knows; `--cilium-version 1.20` and the
    /// default target mean this one, a newer patch is judged with these facts and a warning.
    pub latest_patch: u32,
    pub compile: &'static CompileFacts,
    pub headers: HeaderFacts,
    pub elf: ElfFacts,
    pub kernel: KernelFacts,
    pub agent: AgentFacts,
    pub chart: ChartFacts,
    /// Settings the agent refuses at start although the chart renders them.
    pub start_rules: &'static [StartRule],
    /// Per capability: the values that decide it and what it needs from the kernel.
    pub capabilities: &'static [CapabilityFacts],
}

/// How the agent invokes clang (pkg/datapath/loader/compile.go; docs/upstream.md#datapath-compile).
#[derive(Debug, PartialEq, Eq)]
pub struct CompileFacts {
    /// The oldest minor with exactly these facts: versions sharing them share a compile
    /// profile (and the label `1.18+` when they are the newest).
    pub generation: u32,
    pub std: &'static str,
    pub warnings: &'static [&'static str],
    /// `-D__NR_CPUS__=<possible cpus>` (dropped in 1.18).
    pub nr_cpus: bool,
    /// `-ftrap-function=__undefined_trap` (1.18+).
    pub trap_function: bool,
    /// `clang -emit-llvm | llc -march=bpf` (1.14) instead of one clang call.
    pub llc_pipeline: bool,
    /// The LLVM in that version's image (cilium/image-tools; images/runtime/Dockerfile).
    pub bundled_llvm: (u32, u32, u32),
    pub mcpu_rule: McpuRule,
    /// `-DCALLS_MAP=cilium_calls_overlay_2` for bpf_overlay.c (up to 1.17).
    pub overlay_calls_map: bool,
    /// The first clang major whose warnings break these sources (`-Wshorten-64-to-32` moved
    /// under `-Wimplicit-int-conversion` in clang 19; Cilium fixed its sources in 1.17).
    pub clang_breaks_from: Option<u32>,
    /// `-I` order: `{state}` the state dir, `{ep}` the endpoint's or template's dir, `{bpf}`
    /// the bpf dir. The same in every version so far.
    pub include_order: &'static [&'static str],
}

/// How the agent picks `-mcpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpuRule {
    /// Up to 1.17: v3 when the kernel has JMP32 *and* bpf_redirect_neigh for sched_cls, else v2
    /// when it has the v2 ISA, else v1.
    Jmp32AndRedirectNeigh,
    /// 1.18+: v3 when the kernel has the v3 ISA, else v2/v1 as above.
    Isa,
}

/// Which headers the agent writes and what moved to load-time configuration.
#[derive(Debug, Clone, Copy)]
pub struct HeaderFacts {
    /// The programs the agent compiles from the bpf dir.
    pub programs: &'static [&'static str],
    /// Values read at load time from `.rodata.config` (`DECLARE_CONFIG`, 1.18+) instead of
    /// being `#define`d in the generated headers.
    pub load_time_config: bool,
    /// Macros older versions wrote into ep_config.h that this version reads at load time
    /// instead (1.20: `ENABLE_ARP_RESPONDER` → `CONFIG(enable_arp_responder)`, cilium#43525).
    pub moved_to_load_time: &'static [&'static str],
    /// The dummy node_config.h in the bpf dir defines `CALLS_MAP` without a guard (1.16–1.17), so a
    /// missing generated header gives `'CALLS_MAP' macro redefined`
    /// (docs/upstream.md#the-calls_map-incident).
    pub dummy_calls_map_unguarded: bool,
    /// Which node_config.h macro set this version writes (how a header left on a node is
    /// told apart: host::state::classify).
    pub node_config: Generation,
}

/// Conventions of the objects the agent builds (what a loader must understand).
#[derive(Debug, Clone, Copy)]
pub struct ElfFacts {
    /// Tail-call program arrays still in the legacy `maps` section (`struct bpf_elf_map`) up to
    /// 1.17; every map is a BTF map in `.maps` from 1.18 (cilium#39510).
    pub legacy_maps_section: bool,
    /// Entry points and tail calls in `{tc,xdp}/entry` and `{tc,xdp}/tail` sections (1.18+),
    /// instead of the numeric `<map id>/<slot>` sections.
    pub entry_tail_sections: bool,
    /// The load-time configuration section, when the version has one.
    pub config_section: Option<&'static str>,
}

/// What the version needs from the kernel before any feature.
#[derive(Debug, Clone, Copy)]
pub struct KernelFacts {
    /// Documented minimum (system_requirements.rst).
    pub min: KernelVersion,
    /// The distribution kernel the docs accept below `min`: (distribution, release, kernel).
    pub exception: Option<DistroException>,
    /// Kernel BTF (`CONFIG_DEBUG_INFO_BTF`, /sys/kernel/btf/vmlinux) is required from this
    /// patch of the minor on (1.19.3; 1.20.0): docs cilium#46063, #46511.
    pub btf_required_from_patch: Option<u32>,
}

/// "Linux kernel >= 5.10 or equivalent (e.g., 4.18 on RHEL 8.10)".
#[derive(Debug, Clone, Copy)]
pub struct DistroException {
    /// os-release IDs (or ID_LIKE entries) the exception covers.
    pub ids: &'static [&'static str],
    /// The oldest distribution release (os-release VERSION_ID) it covers.
    pub min_release: (u32, u32),
    pub kernel: KernelVersion,
    pub label: &'static str,
}

/// What the agent does at start that preflight must predict.
#[derive(Debug, Clone, Copy)]
pub struct AgentFacts {
    /// Helpers the agent probes at start-up and refuses to start without (1.18+).
    pub helpers: &'static [AgentHelper],
    /// A failed datapath init stops the agent (up to 1.16, again from 1.19: b22b49d6); 1.17 and
    /// 1.18 carry on and compile endpoints against the dummy headers
    /// (docs/upstream.md#the-calls_map-incident).
    pub init_failure_fatal: bool,
    /// Without bpf_redirect_neigh/peer the agent falls back to legacy host routing (up to
    /// 1.17); 1.18+ refuses to start instead.
    pub host_routing_kernel_fallback: bool,
    /// BPF host routing is turned off with IPsec (up to 1.17).
    pub host_routing_off_with_ipsec: bool,
    /// state/templates is wiped when the config hash changes (1.16+).
    pub wipes_stale_templates: bool,
    /// The in-pod CLI: `cilium-dbg` from 1.15, `cilium` before.
    pub status_binary: &'static str,
}

/// A helper the agent probes at start-up, and the program types it probes it in: the agent
/// refuses to start unless the helper is available in every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentHelper {
    pub helper: &'static str,
    pub program_types: &'static [&'static str],
}

/// The chart of the version.
#[derive(Debug, Clone, Copy)]
pub struct ChartFacts {
    /// Generated from the real chart (`cargo xtask chart-data`): key set, validate.yaml rules,
    /// the defaults preflight reads. None for versions whose chart preflight has not read.
    pub data: Option<&'static ChartData>,
    /// The chart's defaults for the keys that decide capabilities (YAML), for versions without
    /// generated data.
    pub defaults: &'static str,
    /// `kubeProxyReplacement` must be `true`/`false` (1.15+; cilium-configmap.yaml).
    pub kpr_boolean: bool,
    /// Values the chart removed, for versions without generated rules
    /// (docs/upstream.md#rejected-values).
    pub removed: &'static [RemovedValue],
}

/// A value the chart removed.
#[derive(Debug, Clone, Copy)]
pub struct RemovedValue {
    /// Stable check-id suffix.
    pub id: &'static str,
    /// Dotted values path.
    pub path: &'static str,
    pub removed_in: (u32, u32),
    /// The chart's own error text, verbatim, when its validate.yaml rejects the value; None when
    /// the chart only stopped reading it.
    pub chart_error: Option<&'static str>,
    /// What to write instead (keys the chart reads).
    pub replacement: &'static str,
}

/// A setting the agent refuses at start (the chart renders it; the agent exits).
#[derive(Debug, Clone, Copy)]
pub struct StartRule {
    /// Stable check-id suffix: `values.agent.<id>`.
    pub id: &'static str,
    /// The first minor whose agent refuses it.
    pub since: (u32, u32),
    /// Where the agent says so.
    pub source: &'static str,
    /// Whether the effective values break the rule, and the agent's message for them.
    pub broken: fn(&Value) -> Option<String>,
    /// The values that fix it, given the effective values (keys the chart reads).
    pub fix: fn(&Value) -> Value,
    pub remedy: &'static str,
}

/// What a setting that decides a capability accepts.
#[derive(Debug, Clone, Copy)]
pub enum Accepts {
    Bool,
    OneOf(&'static [&'static str]),
}

/// How bad a missing kernel option is for a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The agent refuses to start, or the feature cannot work.
    Required,
    /// Documented, but the agent does not check it.
    Recommended,
    /// Required from this patch of the minor on, recommended before (kernel BTF in 1.19.3).
    RequiredFromPatch(u32),
    /// The agent falls back unless the boolean value at this path is false (xt_socket and
    /// `enableXTSocketFallback`): a warning by default, a failure with the fallback off.
    FallsBackUnless(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct OptionNeed {
    /// `CONFIG_` name without the prefix.
    pub option: &'static str,
    pub severity: Severity,
}

const fn req(option: &'static str) -> OptionNeed {
    OptionNeed {
        option,
        severity: Severity::Required,
    }
}

const fn rec(option: &'static str) -> OptionNeed {
    OptionNeed {
        option,
        severity: Severity::Recommended,
    }
}

/// A cheaper setting when a capability is blocked.
#[derive(Debug, Clone, Copy)]
pub struct Fallback {
    /// The capability the patch switches to, which must not be blocked itself.
    pub instead: Option<Capability>,
    /// Values patch (JSON; keys the chart reads).
    pub patch: &'static str,
    pub why: &'static str,
}

/// One capability in one version.
#[derive(Debug, Clone, Copy)]
pub struct CapabilityFacts {
    pub capability: Capability,
    /// Values keys (dotted) that decide it; a misspelling of one fails `values.unknown-keys`.
    pub keys: &'static [&'static str],
    /// Values the chart accepts for the settings that decide it.
    pub accepts: &'static [(&'static str, Accepts)],
    pub fallback: Option<Fallback>,
    pub options: &'static [OptionNeed],
    /// Helpers the datapath calls for it: (program type, helper).
    pub helpers: &'static [(&'static str, &'static str)],
    /// Documented minimum kernel for the feature.
    pub min_kernel: Option<KernelVersion>,
}

/// Two rows are the same release when they describe the same minor.
impl PartialEq for Release {
    fn eq(&self, other: &Self) -> bool {
        self.minor_key() == other.minor_key()
    }
}

impl Release {
    pub fn minor_key(&self) -> (u32, u32) {
        (self.major, self.minor)
    }
    /// `1.20`.
    pub fn label(&self) -> String {
        format!("{}.{}", self.major, self.minor)
    }
    /// The newest known release of this minor, e.g. `1.20.2`.
    pub fn latest(&self) -> CiliumVersion {
        CiliumVersion::new(self.major, self.minor, Some(self.latest_patch))
    }
    pub fn capability(&self, capability: Capability) -> Option<&'static CapabilityFacts> {
        self.capabilities
            .iter()
            .find(|c| c.capability == capability)
    }
    /// The capabilities whose needs list this kernel option, with how badly each needs it.
    pub fn option_needs(&self, option: &str) -> Vec<(Capability, Severity)> {
        self.capabilities
            .iter()
            .flat_map(|c| {
                c.options
                    .iter()
                    .filter(move |o| o.option == option)
                    .map(move |o| (c.capability, o.severity))
            })
            .collect()
    }
    /// The capabilities whose datapath calls this helper in this program type.
    pub fn helper_needs(&self, program_type: &str, helper: &str) -> Vec<Capability> {
        self.capabilities
            .iter()
            .filter(|c| c.helpers.contains(&(program_type, helper)))
            .map(|c| c.capability)
            .collect()
    }
    /// Every values key that decides a capability in this version.
    pub fn capability_keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<_> = self
            .capabilities
            .iter()
            .flat_map(|c| c.keys.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
    /// Whether `version` of this minor needs kernel BTF.
    pub fn btf_required(&self, version: &CiliumVersion) -> bool {
        self.kernel
            .btf_required_from_patch
            .is_some_and(|p| version.at_least((self.major, self.minor, p), self.latest_patch))
    }
}

// ---------------------------------------------------------------------------------------------
// Compile facts.

const WARNINGS_114: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wno-address-of-packed-member",
    "-Wno-unknown-warning-option",
    "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wdeclaration-after-statement",
    "-Wimplicit-int-conversion",
    "-Wenum-conversion",
];

const WARNINGS_118: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wno-address-of-packed-member",
    "-Wno-unknown-warning-option",
    "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wimplicit-int-conversion",
    "-Wenum-conversion",
    "-Wimplicit-fallthrough",
];

/// `-I` order of every version (compile.go: globals, the endpoint's dir, the bpf dir, its
/// include/): a generated header missing from the first two falls through to the bpf dir's
/// dummy of the same name (docs/upstream.md#datapath-compile).
const INCLUDE_ORDER: &[&str] = &["{state}/globals", "{ep}", "{bpf}", "{bpf}/include"];

const fn compile_114_117(
    generation: u32,
    llvm: (u32, u32, u32),
    llc_pipeline: bool,
    clang_breaks_from: Option<u32>,
) -> CompileFacts {
    CompileFacts {
        generation,
        std: "gnu89",
        warnings: WARNINGS_114,
        nr_cpus: true,
        trap_function: false,
        llc_pipeline,
        bundled_llvm: llvm,
        mcpu_rule: McpuRule::Jmp32AndRedirectNeigh,
        overlay_calls_map: true,
        clang_breaks_from,
        include_order: INCLUDE_ORDER,
    }
}

static COMPILE_114: CompileFacts = compile_114_117(14, (10, 0, 0), true, Some(19));
static COMPILE_115: CompileFacts = compile_114_117(15, (10, 0, 0), false, Some(19));
static COMPILE_116: CompileFacts = compile_114_117(16, (17, 0, 6), false, Some(19));
static COMPILE_117: CompileFacts = compile_114_117(17, (18, 1, 8), false, None);
/// 1.18 onwards (1.20.0-dev's compile.go has the same StandardCFlags; its image still bundles
/// LLVM 19.1.7: libbpf/ci#226, July 2026).
static COMPILE_118: CompileFacts = CompileFacts {
    generation: 18,
    std: "gnu99",
    warnings: WARNINGS_118,
    nr_cpus: false,
    trap_function: true,
    llc_pipeline: false,
    bundled_llvm: (19, 1, 7),
    mcpu_rule: McpuRule::Isa,
    overlay_calls_map: false,
    clang_breaks_from: None,
    include_order: INCLUDE_ORDER,
};

// ---------------------------------------------------------------------------------------------
// Headers and ELF.

const PROGRAMS_114: &[&str] = &[
    "bpf_lxc",
    "bpf_host",
    "bpf_overlay",
    "bpf_sock",
    "bpf_xdp",
    "bpf_network",
];
/// 1.16.15 and 1.18.3 compile.go/base.go (bpf_wireguard.c from 1.16).
const PROGRAMS_116: &[&str] = &[
    "bpf_lxc",
    "bpf_host",
    "bpf_overlay",
    "bpf_sock",
    "bpf_xdp",
    "bpf_wireguard",
    "bpf_network",
];
/// 1.20.0-dev compile.go: bpf_network.c is gone (no networkPrefix).
const PROGRAMS_120: &[&str] = &[
    "bpf_lxc",
    "bpf_host",
    "bpf_overlay",
    "bpf_sock",
    "bpf_xdp",
    "bpf_wireguard",
];

const HEADERS_114: HeaderFacts = HeaderFacts {
    programs: PROGRAMS_114,
    load_time_config: false,
    moved_to_load_time: &[],
    dummy_calls_map_unguarded: false,
    node_config: Generation::From114To117,
};
const HEADERS_116: HeaderFacts = HeaderFacts {
    programs: PROGRAMS_116,
    load_time_config: false,
    moved_to_load_time: &[],
    dummy_calls_map_unguarded: true,
    node_config: Generation::From114To117,
};
const HEADERS_118: HeaderFacts = HeaderFacts {
    programs: PROGRAMS_116,
    load_time_config: true,
    moved_to_load_time: &[],
    dummy_calls_map_unguarded: false,
    node_config: Generation::From118,
};
const HEADERS_120: HeaderFacts = HeaderFacts {
    programs: PROGRAMS_120,
    load_time_config: true,
    moved_to_load_time: &["ENABLE_ARP_RESPONDER"],
    dummy_calls_map_unguarded: false,
    node_config: Generation::From118,
};

const ELF_114: ElfFacts = ElfFacts {
    legacy_maps_section: true,
    entry_tail_sections: false,
    config_section: None,
};
const ELF_118: ElfFacts = ElfFacts {
    legacy_maps_section: false,
    entry_tail_sections: true,
    config_section: Some(".rodata.config"),
};

// ---------------------------------------------------------------------------------------------
// Kernel.

const RHEL_LIKE: &[&str] = &["rhel", "centos", "rocky", "almalinux", "ol"];

const fn rhel(min_release: (u32, u32), label: &'static str) -> Option<DistroException> {
    Some(DistroException {
        ids: RHEL_LIKE,
        min_release,
        kernel: (4, 18, 0),
        label,
    })
}

// ---------------------------------------------------------------------------------------------
// Agent.

const fn agent_helper(helper: &'static str, program_types: &'static [&'static str]) -> AgentHelper {
    AgentHelper {
        helper,
        program_types,
    }
}

/// `CheckRequirements` in pkg/datapath/linux/requirements.go (1.18+): each
/// `probes.HaveProgramHelper(<type>, asm.Fn<helper>)` that returns an error refuses the start.
/// The program type matters: bpf_get_netns_cookie, for one, is probed in cgroup_sock and
/// cgroup_sock_addr (kernel 5.7, f318903c0bf4); tc programs got it only years later.
/// skb_adjust_room stands for `HaveSKBAdjustRoomL2RoomMACSupport`, a sched_cls load.
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
const HELPERS_118: &[AgentHelper] = &HELPERS_118_LIST;
/// 1.19 adds these (docs/upstream.md#node-requirements). Their program type is not in our sources;
/// sched_cls is where the datapath calls all four, and each has been available there since 5.7 at
/// the latest.
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

const fn agent(
    helpers: &'static [AgentHelper],
    init_failure_fatal: bool,
    before_118: bool,
    wipes_stale_templates: bool,
    status_binary: &'static str,
) -> AgentFacts {
    AgentFacts {
        helpers,
        init_failure_fatal,
        host_routing_kernel_fallback: before_118,
        host_routing_off_with_ipsec: before_118,
        wipes_stale_templates,
        status_binary,
    }
}

// ---------------------------------------------------------------------------------------------
// Agent start rules (daemon/cmd/kube_proxy_replacement.go, daemon_main.go;
// docs/upstream.md#agent-start-rules).

/// BPF NodePort is on: kube-proxy replacement, or `nodePort.enabled`.
fn nodeport(v: &Value) -> bool {
    derive::kube_proxy_replacement(v) || truthy(lookup(v, "nodePort.enabled"))
}

fn lb_mode(v: &Value) -> String {
    as_text(lookup(v, "loadBalancer.mode")).unwrap_or_else(|| "snat".into())
}

/// `LoadBalancerUsesDSR`: `dsr` and `hybrid` both send replies directly.
fn uses_dsr(v: &Value) -> bool {
    nodeport(v) && matches!(lb_mode(v).as_str(), "dsr" | "hybrid")
}

fn dispatch(v: &Value) -> String {
    as_text(lookup(v, "loadBalancer.dsrDispatch")).unwrap_or_else(|| "opt".into())
}

fn dsr_with_vxlan(v: &Value) -> Option<String> {
    (uses_dsr(v) && derive::routing(v) == derive::Routing::Vxlan).then(|| {
        format!(
            "Node Port \"{}\" mode cannot be used with vxlan tunneling.",
            lb_mode(v)
        )
    })
}

fn dsr_with_geneve_without_geneve_dispatch_old(v: &Value) -> Option<String> {
    (uses_dsr(v) && derive::routing(v) == derive::Routing::Geneve && dispatch(v) != "geneve").then(
        || {
            format!(
                "Node Port \"{}\" mode with {} dispatch cannot be used with geneve tunneling.",
                lb_mode(v),
                dispatch(v)
            )
        },
    )
}

fn dsr_with_geneve_without_geneve_dispatch(v: &Value) -> Option<String> {
    (uses_dsr(v) && derive::routing(v) == derive::Routing::Geneve && dispatch(v) != "geneve").then(
        || {
            format!(
                "Tunnel routing with Node Port \"{}\" mode requires geneve dispatch.",
                lb_mode(v)
            )
        },
    )
}

fn dsr_fix(v: &Value) -> Value {
    match derive::routing(v) {
        // Geneve can carry DSR: dispatch it in the tunnel header.
        derive::Routing::Geneve => serde_json::json!({"loadBalancer": {"dsrDispatch": "geneve"}}),
        // VXLAN cannot: SNAT keeps the tunnel.
        _ => serde_json::json!({"loadBalancer": {"mode": "snat"}}),
    }
}

fn auto_direct_routes_in_tunnel(v: &Value) -> Option<String> {
    (truthy(lookup(v, "autoDirectNodeRoutes")) && derive::routing(v) != derive::Routing::Native)
        .then(|| {
            "auto-direct-node-routes cannot be used with tunneling. Packets must be routed \
             through the tunnel device."
                .to_string()
        })
}

fn auto_direct_routes_fix(_: &Value) -> Value {
    serde_json::json!({"autoDirectNodeRoutes": false})
}

fn netkit_with_legacy_routing(v: &Value) -> Option<String> {
    let netkit = as_text(lookup(v, "bpf.datapathMode")).is_some_and(|m| m.starts_with("netkit"));
    // BPF host routing needs kube-proxy replacement and BPF masquerading (when masquerading);
    // without either, or with hostLegacyRouting=true, the agent routes through the host stack.
    let legacy = matches!(lookup(v, "bpf.hostLegacyRouting"), Some(Value::Bool(true)))
        || !derive::kube_proxy_replacement(v)
        || (lookup(v, "enableIPv4Masquerade").is_none_or(|m| truthy(Some(m)))
            && !truthy(lookup(v, "bpf.masquerade")));
    (netkit && legacy).then(|| {
        "netkit datapath mode requires BPF host routing, but this configuration uses legacy \
         host routing (the agent refuses to start; cilium/cilium#44713)"
            .to_string()
    })
}

fn netkit_fix(_: &Value) -> Value {
    serde_json::json!({"bpf": {"datapathMode": "veth"}})
}

const RULE_DSR_VXLAN: StartRule = StartRule {
    id: "dsr-vxlan",
    since: (1, 14),
    source: "cilium-agent, daemon/cmd/kube_proxy_replacement.go (initKubeProxyReplacementOptions)",
    broken: dsr_with_vxlan,
    fix: dsr_fix,
    remedy: "use `loadBalancer.mode: snat` with the VXLAN tunnel, or `routingMode: native` for DSR",
};
const RULE_DSR_GENEVE_117: StartRule = StartRule {
    id: "dsr-geneve-dispatch",
    since: (1, 14),
    source: "cilium-agent, daemon/cmd/kube_proxy_replacement.go (initKubeProxyReplacementOptions)",
    broken: dsr_with_geneve_without_geneve_dispatch_old,
    fix: dsr_fix,
    remedy: "set `loadBalancer.dsrDispatch: geneve` with the GENEVE tunnel",
};
const RULE_DSR_GENEVE: StartRule = StartRule {
    id: "dsr-geneve-dispatch",
    since: (1, 14),
    source: "cilium-agent, daemon/cmd/kube_proxy_replacement.go (initKubeProxyReplacementOptions)",
    broken: dsr_with_geneve_without_geneve_dispatch,
    fix: dsr_fix,
    remedy: "set `loadBalancer.dsrDispatch: geneve` with the GENEVE tunnel",
};
const RULE_AUTO_DIRECT: StartRule = StartRule {
    id: "auto-direct-node-routes",
    since: (1, 14),
    source: "cilium-agent, daemon/cmd/daemon_main.go (initEnv)",
    broken: auto_direct_routes_in_tunnel,
    fix: auto_direct_routes_fix,
    remedy: "set `autoDirectNodeRoutes: false` (a tunnel routes between nodes itself), or use \
             `routingMode: native` with `ipv4NativeRoutingCIDR: <pod CIDR>`",
};
const RULE_NETKIT_LEGACY: StartRule = StartRule {
    id: "netkit-host-routing",
    since: (1, 20),
    source: "cilium-agent, pkg/datapath (cilium/cilium#44713, merged 2026-03 for 1.20)",
    broken: netkit_with_legacy_routing,
    fix: netkit_fix,
    remedy: "use `bpf.datapathMode: veth`, or BPF host routing: `kubeProxyReplacement: true`, \
             `bpf.masquerade: true` and no `bpf.hostLegacyRouting: true`",
};

const START_RULES_114: &[StartRule] = &[RULE_AUTO_DIRECT, RULE_DSR_VXLAN, RULE_DSR_GENEVE_117];
const START_RULES_118: &[StartRule] = &[RULE_AUTO_DIRECT, RULE_DSR_VXLAN, RULE_DSR_GENEVE];
const START_RULES_120: &[StartRule] = &[
    RULE_AUTO_DIRECT,
    RULE_DSR_VXLAN,
    RULE_DSR_GENEVE,
    RULE_NETKIT_LEGACY,
];

// ---------------------------------------------------------------------------------------------
// Capabilities.

/// The 1.16+ agent hard-requires BPF, BPF_SYSCALL, NET_SCH_INGRESS, NET_CLS_BPF, NET_CLS_ACT,
/// BPF_JIT, HAVE_EBPF_JIT (pkg/datapath/linux/requirements.go); the rest of the documented base
/// list only warns. iptables masquerading (the default without bpf.masquerade) needs the ipset
/// options.
macro_rules! base_options {
    ($btf:expr $(, $extra:expr)*) => {
        &[
            req("BPF"),
            req("BPF_SYSCALL"),
            req("BPF_JIT"),
            req("HAVE_EBPF_JIT"),
            req("NET_CLS_BPF"),
            req("NET_CLS_ACT"),
            req("NET_SCH_INGRESS"),
            rec("CRYPTO_SHA1"),
            rec("CRYPTO_USER_API_HASH"),
            rec("CGROUPS"),
            rec("PERF_EVENTS"),
            rec("SCHEDSTATS"),
            rec("BPF_EVENTS"),
            OptionNeed { option: "DEBUG_INFO_BTF", severity: $btf },
            rec("NETFILTER_XT_SET"),
            rec("IP_SET"),
            rec("IP_SET_HASH_IP"),
            $($extra,)*
        ]
    };
}

const L7_OPTIONS: &[OptionNeed] = &[
    req("NETFILTER_XT_TARGET_TPROXY"),
    req("NETFILTER_XT_TARGET_CT"),
    req("NETFILTER_XT_TARGET_MARK"),
    req("NETFILTER_XT_MATCH_MARK"),
];

/// Without xt_socket the agent disables ip_early_demux instead (`enableXTSocketFallback`,
/// default on), which only matters where packets are routed natively to a local proxy socket.
const NATIVE_OPTIONS: &[OptionNeed] = &[
    rec("FIB_RULES"),
    OptionNeed {
        option: "NETFILTER_XT_MATCH_SOCKET",
        severity: Severity::FallsBackUnless("enableXTSocketFallback"),
    },
];

const fn fallback(
    instead: Option<Capability>,
    patch: &'static str,
    why: &'static str,
) -> Option<Fallback> {
    Some(Fallback {
        instead,
        patch,
        why,
    })
}

const CHART_VALUES_115: CapabilityFacts = CapabilityFacts {
    capability: ChartValues,
    keys: &[
        "k8sServiceHost",
        "ipv4NativeRoutingCIDR",
        "enableIPv4Masquerade",
        "autoDirectNodeRoutes",
        "cni.binPath",
        "cni.confPath",
        "cgroup.hostRoot",
        "cgroup.autoMount.enabled",
        "loadBalancer.mode",
        "loadBalancer.dsrDispatch",
    ],
    accepts: &[
        ("autoDirectNodeRoutes", Accepts::Bool),
        ("enableIPv4Masquerade", Accepts::Bool),
        (
            "loadBalancer.mode",
            Accepts::OneOf(&["snat", "dsr", "hybrid"]),
        ),
        (
            "loadBalancer.dsrDispatch",
            Accepts::OneOf(&["opt", "ipip", "geneve"]),
        ),
    ],
    fallback: None,
    options: &[],
    helpers: &[],
    min_kernel: None,
};

const fn base(options: &'static [OptionNeed]) -> CapabilityFacts {
    CapabilityFacts {
        capability: BaseDatapath,
        keys: &[],
        accepts: &[],
        fallback: None,
        options,
        helpers: &[("sched_cls", "tail_call")],
        min_kernel: None,
    }
}

const VXLAN_OPTIONS: &[OptionNeed] = &[req("VXLAN"), rec("FIB_RULES")];
const GENEVE_OPTIONS: &[OptionNeed] = &[req("GENEVE"), rec("FIB_RULES")];
const CGROUP_BPF_OPTIONS: &[OptionNeed] = &[req("CGROUP_BPF")];
const HUBBLE_OPTIONS: &[OptionNeed] = &[rec("PERF_EVENTS")];

const fn tunnel(capability: Capability, keys: &'static [&'static str]) -> CapabilityFacts {
    let vxlan = matches!(capability, TunnelVxlan);
    CapabilityFacts {
        capability,
        keys,
        accepts: &[],
        fallback: if vxlan {
            fallback(
                Some(TunnelGeneve),
                r#"{"tunnelProtocol": "geneve"}"#,
                "VXLAN is unavailable; GENEVE tunnels work on this node",
            )
        } else {
            fallback(
                Some(TunnelVxlan),
                r#"{"tunnelProtocol": "vxlan"}"#,
                "GENEVE is unavailable; VXLAN tunnels work on this node",
            )
        },
        options: if vxlan { VXLAN_OPTIONS } else { GENEVE_OPTIONS },
        helpers: &[],
        min_kernel: None,
    }
}

const fn native(keys: &'static [&'static str]) -> CapabilityFacts {
    CapabilityFacts {
        capability: NativeRouting,
        keys,
        accepts: &[],
        fallback: None,
        options: NATIVE_OPTIONS,
        helpers: &[("sched_cls", "fib_lookup")],
        min_kernel: None,
    }
}

const SOCKET_LB_HELPERS: &[(&str, &str)] = &[
    ("cgroup_sock_addr", "get_socket_cookie"),
    ("cgroup_sock_addr", "get_netns_cookie"),
    ("cgroup_sock_addr", "get_current_cgroup_id"),
];

const fn kpr(accepts: &'static [(&'static str, Accepts)]) -> CapabilityFacts {
    CapabilityFacts {
        capability: KubeProxyReplacement,
        keys: &["kubeProxyReplacement", "k8sServiceHost"],
        accepts,
        fallback: fallback(
            None,
            r#"{"kubeProxyReplacement": false}"#,
            "kube-proxy replacement cannot run here; keeping kube-proxy avoids it",
        ),
        options: CGROUP_BPF_OPTIONS,
        helpers: SOCKET_LB_HELPERS,
        min_kernel: None,
    }
}

const SOCKET_LB: CapabilityFacts = CapabilityFacts {
    capability: SocketLb,
    keys: &["socketLB.enabled"],
    accepts: &[("socketLB.enabled", Accepts::Bool)],
    fallback: fallback(
        None,
        r#"{"kubeProxyReplacement": false, "socketLB": {"enabled": false}}"#,
        "socket LB (cgroup v2 sock_addr hooks) cannot run here; keeping kube-proxy avoids it",
    ),
    options: CGROUP_BPF_OPTIONS,
    helpers: SOCKET_LB_HELPERS,
    min_kernel: None,
};

const BPF_MASQUERADE: CapabilityFacts = CapabilityFacts {
    capability: BpfMasquerade,
    keys: &["bpf.masquerade"],
    accepts: &[("bpf.masquerade", Accepts::Bool)],
    fallback: fallback(
        None,
        r#"{"bpf": {"masquerade": false}}"#,
        "BPF masquerading is unavailable; iptables masquerading works",
    ),
    options: &[],
    helpers: &[],
    min_kernel: None,
};

const BPF_HOST_ROUTING: CapabilityFacts = CapabilityFacts {
    capability: BpfHostRouting,
    keys: &["bpf.hostLegacyRouting"],
    accepts: &[("bpf.hostLegacyRouting", Accepts::Bool)],
    fallback: fallback(
        None,
        r#"{"bpf": {"hostLegacyRouting": true}}"#,
        "BPF host routing needs redirect_neigh/redirect_peer; legacy host routing goes through the stack",
    ),
    options: &[],
    helpers: &[
        ("sched_cls", "redirect_neigh"),
        ("sched_cls", "redirect_peer"),
    ],
    min_kernel: Some((5, 10, 0)),
};

const BANDWIDTH_MANAGER: CapabilityFacts = CapabilityFacts {
    capability: BandwidthManager,
    keys: &["bandwidthManager.enabled"],
    accepts: &[("bandwidthManager.enabled", Accepts::Bool)],
    fallback: fallback(
        None,
        r#"{"bandwidthManager": {"enabled": false}}"#,
        "the bandwidth manager needs the fq qdisc (NET_SCH_FQ) and kernel 5.1",
    ),
    options: &[req("NET_SCH_FQ")],
    helpers: &[],
    min_kernel: Some((5, 1, 0)),
};

const ENCRYPTION_ACCEPTS: &[(&str, Accepts)] = &[
    ("encryption.enabled", Accepts::Bool),
    ("encryption.type", Accepts::OneOf(&["wireguard", "ipsec"])),
];

const WIREGUARD: CapabilityFacts = CapabilityFacts {
    capability: WireGuard,
    keys: &["encryption.enabled", "encryption.type"],
    accepts: ENCRYPTION_ACCEPTS,
    fallback: fallback(
        Some(Ipsec),
        r#"{"encryption": {"type": "ipsec"}}"#,
        "WireGuard is unavailable; IPsec works on this node",
    ),
    options: &[req("WIREGUARD")],
    helpers: &[],
    min_kernel: Some((5, 6, 0)),
};

const IPSEC: CapabilityFacts = CapabilityFacts {
    capability: Ipsec,
    keys: &["encryption.enabled", "encryption.type"],
    accepts: ENCRYPTION_ACCEPTS,
    fallback: None,
    options: &[req("XFRM"), req("XFRM_USER"), req("INET_ESP")],
    helpers: &[],
    min_kernel: None,
};

const L7_PROXY: CapabilityFacts = CapabilityFacts {
    capability: L7Proxy,
    keys: &["l7Proxy"],
    accepts: &[("l7Proxy", Accepts::Bool)],
    fallback: fallback(
        None,
        r#"{"l7Proxy": false}"#,
        "the L7 proxy needs TPROXY, CT and MARK; without it L7 policies and FQDN rules do not work",
    ),
    options: L7_OPTIONS,
    helpers: &[],
    min_kernel: None,
};

const NETKIT: CapabilityFacts = CapabilityFacts {
    capability: Netkit,
    keys: &["bpf.datapathMode"],
    accepts: &[(
        "bpf.datapathMode",
        Accepts::OneOf(&["veth", "netkit", "netkit-l2"]),
    )],
    fallback: fallback(
        None,
        r#"{"bpf": {"datapathMode": "veth"}}"#,
        "netkit needs CONFIG_NETKIT and kernel 6.8; veth pairs work everywhere",
    ),
    options: &[req("NETKIT")],
    helpers: &[],
    min_kernel: Some((6, 8, 0)),
};

const XDP: CapabilityFacts = CapabilityFacts {
    capability: XdpAcceleration,
    keys: &["loadBalancer.acceleration"],
    accepts: &[(
        "loadBalancer.acceleration",
        Accepts::OneOf(&["disabled", "native", "best-effort"]),
    )],
    fallback: fallback(
        None,
        r#"{"loadBalancer": {"acceleration": "disabled"}}"#,
        "XDP acceleration is unavailable on this node's driver/kernel",
    ),
    options: &[],
    helpers: &[("xdp", "xdp_get_buff_len"), ("xdp", "fib_lookup")],
    min_kernel: None,
};

const HUBBLE: CapabilityFacts = CapabilityFacts {
    capability: Hubble,
    keys: &[
        "hubble.enabled",
        "hubble.relay.enabled",
        "hubble.ui.enabled",
    ],
    accepts: &[
        ("hubble.enabled", Accepts::Bool),
        ("hubble.relay.enabled", Accepts::Bool),
        ("hubble.ui.enabled", Accepts::Bool),
    ],
    fallback: None,
    // Hubble's flows come through the perf ring buffer the datapath writes events to.
    options: HUBBLE_OPTIONS,
    helpers: &[],
    min_kernel: None,
};

const ROUTING_KEYS: &[&str] = &["routingMode", "tunnelProtocol"];
const NATIVE_KEYS: &[&str] = &[
    "routingMode",
    "ipv4NativeRoutingCIDR",
    "autoDirectNodeRoutes",
];

/// 1.14 spells the tunnel as `tunnel: vxlan|geneve|disabled` and kube-proxy replacement as a
/// mode; it has no netkit.
const CAPS_114: &[CapabilityFacts] = &[
    CHART_VALUES_115,
    base(base_options!(Severity::Recommended)),
    tunnel(TunnelVxlan, &["tunnel"]),
    tunnel(TunnelGeneve, &["tunnel"]),
    native(&["tunnel", "ipv4NativeRoutingCIDR", "autoDirectNodeRoutes"]),
    SOCKET_LB,
    kpr(&[]),
    BPF_MASQUERADE,
    BPF_HOST_ROUTING,
    BANDWIDTH_MANAGER,
    WIREGUARD,
    IPSEC,
    L7_PROXY,
    XDP,
    HUBBLE,
];

const KPR_BOOL: &[(&str, Accepts)] = &[];

const CAPS_115: &[CapabilityFacts] = &[
    CHART_VALUES_115,
    base(base_options!(Severity::Recommended)),
    tunnel(TunnelVxlan, ROUTING_KEYS),
    tunnel(TunnelGeneve, ROUTING_KEYS),
    native(NATIVE_KEYS),
    SOCKET_LB,
    kpr(KPR_BOOL),
    BPF_MASQUERADE,
    BPF_HOST_ROUTING,
    BANDWIDTH_MANAGER,
    WIREGUARD,
    IPSEC,
    L7_PROXY,
    NETKIT,
    XDP,
    HUBBLE,
];

/// 1.18's docs add NETFILTER_XT_MATCH_COMMENT to the iptables-masquerading list.
const CAPS_118: &[CapabilityFacts] = &[
    CHART_VALUES_115,
    base(base_options!(
        Severity::Recommended,
        rec("NETFILTER_XT_MATCH_COMMENT")
    )),
    tunnel(TunnelVxlan, ROUTING_KEYS),
    tunnel(TunnelGeneve, ROUTING_KEYS),
    native(NATIVE_KEYS),
    SOCKET_LB,
    kpr(KPR_BOOL),
    BPF_MASQUERADE,
    BPF_HOST_ROUTING,
    BANDWIDTH_MANAGER,
    WIREGUARD,
    IPSEC,
    L7_PROXY,
    NETKIT,
    XDP,
    HUBBLE,
];

/// Kernel BTF is required from 1.19.3 (docs cilium#46063, #46511).
const CAPS_119: &[CapabilityFacts] = &[
    CHART_VALUES_115,
    base(base_options!(
        Severity::RequiredFromPatch(3),
        rec("NETFILTER_XT_MATCH_COMMENT")
    )),
    tunnel(TunnelVxlan, ROUTING_KEYS),
    tunnel(TunnelGeneve, ROUTING_KEYS),
    native(NATIVE_KEYS),
    SOCKET_LB,
    kpr(KPR_BOOL),
    BPF_MASQUERADE,
    BPF_HOST_ROUTING,
    BANDWIDTH_MANAGER,
    WIREGUARD,
    IPSEC,
    L7_PROXY,
    NETKIT,
    XDP,
    HUBBLE,
];

/// 1.20 requires kernel BTF from its first release.
const CAPS_120: &[CapabilityFacts] = &[
    CHART_VALUES_115,
    base(base_options!(
        Severity::Required,
        rec("NETFILTER_XT_MATCH_COMMENT")
    )),
    tunnel(TunnelVxlan, ROUTING_KEYS),
    tunnel(TunnelGeneve, ROUTING_KEYS),
    native(NATIVE_KEYS),
    SOCKET_LB,
    kpr(KPR_BOOL),
    BPF_MASQUERADE,
    BPF_HOST_ROUTING,
    BANDWIDTH_MANAGER,
    WIREGUARD,
    IPSEC,
    L7_PROXY,
    NETKIT,
    XDP,
    HUBBLE,
];

// ---------------------------------------------------------------------------------------------
// Charts: defaults for versions without generated data, and the values the chart removed
// (docs/upstream.md#rejected-values).

/// Chart defaults common to 1.15+ (values.yaml): tunnel routing over VXLAN, kube-proxy kept,
/// L7 proxy and Hubble on, legacy masquerading, veth datapath.
const DEFAULTS_115: &str = "
routingMode: tunnel
tunnelProtocol: vxlan
kubeProxyReplacement: false
l7Proxy: true
enableXTSocketFallback: true
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
enableXTSocketFallback: true
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

const fn removed(
    id: &'static str,
    path: &'static str,
    removed_in: (u32, u32),
    chart_error: Option<&'static str>,
    replacement: &'static str,
) -> RemovedValue {
    RemovedValue {
        id,
        path,
        removed_in,
        chart_error,
        replacement,
    }
}

/// Values the chart removed (docs/upstream.md#rejected-values), for versions without generated
/// chart rules; the texts are the 1.16.15 chart's templates/validate.yaml, which rejects every
/// one of them with `fail`.
const REMOVED_115: &[RemovedValue] = &[
    removed(
        "tunnel",
        "tunnel",
        (1, 15),
        Some(
            "tunnel was deprecated in v1.14 and has been removed in v1.15. For details please \
             refer to https://docs.cilium.io/en/v1.15/operations/upgrade/#helm-options",
        ),
        "remove `tunnel`; use `routingMode: tunnel` with `tunnelProtocol: vxlan|geneve`, or for \
         `tunnel: disabled` use `routingMode: native` with `autoDirectNodeRoutes: true` and \
         `ipv4NativeRoutingCIDR: <pod CIDR>`",
    ),
    removed(
        "clustermesh-apiserver-tls-ca",
        "clustermesh.apiserver.tls.ca",
        (1, 15),
        Some(
            "clustermesh.apiserver.tls.ca.cert and clustermesh.apiserver.tls.ca.key were \
             deprecated in v1.14 and has been removed in v1.15. For details please refer to \
             https://docs.cilium.io/en/v1.15/operations/upgrade/#helm-options",
        ),
        "remove `clustermesh.apiserver.tls.ca`; the CA is `tls.ca.cert`/`tls.ca.key`",
    ),
    removed(
        "enable-k8s-event-handover",
        "enableK8sEventHandover",
        (1, 15),
        Some(
            "enableK8sEventHandover was deprecated in v1.14 and has been removed in v1.15. For \
             details please refer to https://docs.cilium.io/en/v1.15/operations/upgrade/#helm-options",
        ),
        "remove `enableK8sEventHandover` (the option no longer exists)",
    ),
    removed(
        "enable-cnp-status-updates",
        "enableCnpStatusUpdates",
        (1, 15),
        Some(
            "enableCnpStatusUpdates was deprecated in v1.14 and has been removed in v1.15. For \
             details please refer to https://docs.cilium.io/en/v1.15/operations/upgrade/#helm-options",
        ),
        "remove `enableCnpStatusUpdates` (the option no longer exists)",
    ),
];

const REMOVED_117: &[RemovedValue] = &[
    REMOVED_115[0],
    REMOVED_115[1],
    REMOVED_115[2],
    REMOVED_115[3],
    removed(
        "encryption-key-file",
        "encryption.keyFile",
        (1, 16),
        Some(ENCRYPTION_REMOVED),
        "use `encryption.ipsec.keyFile`",
    ),
    removed(
        "encryption-mount-path",
        "encryption.mountPath",
        (1, 16),
        Some(ENCRYPTION_REMOVED),
        "use `encryption.ipsec.mountPath`",
    ),
    removed(
        "encryption-secret-name",
        "encryption.secretName",
        (1, 16),
        Some(ENCRYPTION_REMOVED),
        "use `encryption.ipsec.secretName`",
    ),
    removed(
        "encryption-interface",
        "encryption.interface",
        (1, 16),
        Some(ENCRYPTION_REMOVED),
        "use `encryption.ipsec.interface`",
    ),
    removed(
        "proxy-prometheus",
        "proxy.prometheus",
        (1, 16),
        Some(
            "proxy.prometheus.enabled and proxy.prometheus.port were deprecated in v1.14 and has \
             been removed in v1.16. For details please refer to \
             https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options",
        ),
        "use `envoy.prometheus`",
    ),
    removed(
        "endpoint-status",
        "endpointStatus",
        (1, 16),
        Some(
            "endpointStatus has been removed in v1.16. For details please refer to \
             https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options",
        ),
        "remove `endpointStatus` (CiliumEndpoint status fields were removed)",
    ),
    removed(
        "remote-node-identity",
        "remoteNodeIdentity",
        (1, 16),
        Some(
            "remoteNodeIdentity was deprecated in v1.15 and has been removed in v1.16. For \
             details please refer to https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options",
        ),
        "remove `remoteNodeIdentity` (always on since 1.16)",
    ),
    removed(
        "container-runtime-integration",
        "containerRuntime.integration",
        (1, 16),
        Some(
            "containerRuntime.integration was deprecated in v1.14 and has been removed in v1.16. \
             For details please refer to https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options",
        ),
        "remove `containerRuntime.integration`",
    ),
    removed(
        "etcd-managed",
        "etcd.managed",
        (1, 16),
        Some(
            "etcd.managed was deprecated in v1.10 has been removed in v1.16. For details please \
             refer to https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options",
        ),
        "remove `etcd.managed`; run etcd yourself or use the Kubernetes CRD backend",
    ),
];

const ENCRYPTION_REMOVED: &str = "encryption.{keyFile,mountPath,secretName,interface} were \
    deprecated in v1.14 and has been removed in v1.16. For details please refer to \
    https://docs.cilium.io/en/v1.16/operations/upgrade/#helm-options";

const fn chart(
    data: Option<&'static ChartData>,
    defaults: &'static str,
    removed: &'static [RemovedValue],
) -> ChartFacts {
    ChartFacts {
        data,
        defaults,
        kpr_boolean: true,
        removed,
    }
}

// ---------------------------------------------------------------------------------------------
// The table.

/// Every minor preflight knows, oldest first. The last one's `latest_patch` is the default
/// target of every command.
pub static RELEASES: &[Release] = &[
    Release {
        major: 1,
        minor: 14,
        latest_patch: 19,
        compile: &COMPILE_114,
        headers: HEADERS_114,
        elf: ELF_114,
        kernel: KernelFacts {
            min: (4, 19, 57),
            exception: rhel((8, 0), "4.18 on RHEL 8"),
            btf_required_from_patch: None,
        },
        agent: agent(&[], true, true, false, "cilium"),
        chart: ChartFacts {
            data: None,
            defaults: DEFAULTS_114,
            kpr_boolean: false,
            removed: &[],
        },
        start_rules: START_RULES_114,
        capabilities: CAPS_114,
    },
    Release {
        major: 1,
        minor: 15,
        latest_patch: 19,
        compile: &COMPILE_115,
        headers: HEADERS_114,
        elf: ELF_114,
        kernel: KernelFacts {
            min: (4, 19, 57),
            exception: rhel((8, 0), "4.18 on RHEL 8"),
            btf_required_from_patch: None,
        },
        agent: agent(&[], true, true, false, "cilium-dbg"),
        chart: chart(None, DEFAULTS_115, REMOVED_115),
        start_rules: START_RULES_114,
        capabilities: CAPS_115,
    },
    Release {
        major: 1,
        minor: 16,
        latest_patch: 15,
        compile: &COMPILE_116,
        headers: HEADERS_116,
        elf: ELF_114,
        kernel: KernelFacts {
            min: (5, 4, 0),
            exception: rhel((8, 6), "4.18 on RHEL 8.6"),
            btf_required_from_patch: None,
        },
        agent: agent(&[], true, true, true, "cilium-dbg"),
        chart: chart(
            Some(&super::chartdata::CHART_1_16),
            DEFAULTS_115,
            REMOVED_117,
        ),
        start_rules: START_RULES_114,
        capabilities: CAPS_115,
    },
    Release {
        major: 1,
        minor: 17,
        latest_patch: 9,
        compile: &COMPILE_117,
        headers: HEADERS_116,
        elf: ELF_114,
        kernel: KernelFacts {
            min: (5, 4, 0),
            exception: rhel((8, 6), "4.18 on RHEL 8.6"),
            btf_required_from_patch: None,
        },
        agent: agent(&[], false, true, true, "cilium-dbg"),
        chart: chart(None, DEFAULTS_115, REMOVED_117),
        start_rules: START_RULES_114,
        capabilities: CAPS_115,
    },
    Release {
        major: 1,
        minor: 18,
        latest_patch: 6,
        compile: &COMPILE_118,
        headers: HEADERS_118,
        elf: ELF_118,
        kernel: KernelFacts {
            min: (5, 10, 0),
            exception: rhel((8, 10), "4.18 on RHEL 8.10"),
            btf_required_from_patch: None,
        },
        agent: agent(HELPERS_118, false, false, true, "cilium-dbg"),
        chart: chart(
            Some(&super::chartdata::CHART_1_18),
            DEFAULTS_115,
            REMOVED_117,
        ),
        start_rules: START_RULES_118,
        capabilities: CAPS_118,
    },
    Release {
        major: 1,
        minor: 19,
        latest_patch: 7,
        compile: &COMPILE_118,
        headers: HEADERS_118,
        elf: ELF_118,
        kernel: KernelFacts {
            min: (5, 10, 0),
            exception: rhel((8, 10), "4.18 on RHEL 8.10"),
            btf_required_from_patch: Some(3),
        },
        agent: agent(HELPERS_119, true, false, true, "cilium-dbg"),
        chart: chart(None, DEFAULTS_115, REMOVED_117),
        start_rules: START_RULES_118,
        capabilities: CAPS_119,
    },
    Release {
        major: 1,
        minor: 20,
        latest_patch: 2,
        compile: &COMPILE_118,
        headers: HEADERS_120,
        elf: ELF_118,
        kernel: KernelFacts {
            min: (5, 10, 0),
            exception: rhel((8, 10), "4.18 on RHEL 8.10"),
            btf_required_from_patch: Some(0),
        },
        agent: agent(HELPERS_119, true, false, true, "cilium-dbg"),
        chart: chart(
            Some(&super::chartdata::CHART_1_20),
            DEFAULTS_115,
            REMOVED_117,
        ),
        start_rules: START_RULES_120,
        capabilities: CAPS_120,
    },
];

// ---------------------------------------------------------------------------------------------
// Lookup.

/// A set of releases: the built-in table, or (in tests) the table plus versions added there.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    pub releases: &'static [Release],
}

/// The releases this build knows.
pub static BUILTIN: Catalog = Catalog { releases: RELEASES };

/// A version resolved against a catalog.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub release: &'static Release,
    /// Said when the version is a patch newer than the newest known, or a pre-release.
    pub note: Option<String>,
}

impl Catalog {
    pub fn newest(&self) -> &'static Release {
        self.releases
            .iter()
            .max_by_key(|r| r.minor_key())
            .expect("the catalog has at least one release")
    }

    /// The default target of every command: the newest known release.
    pub fn default_version(&self) -> CiliumVersion {
        self.newest().latest()
    }

    pub fn known(&self) -> String {
        let mut minors: Vec<_> = self.releases.iter().collect();
        minors.sort_by_key(|r| r.minor_key());
        minors
            .iter()
            .map(|r| format!("{} (up to {})", r.label(), r.latest()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn find(&self, minor: (u32, u32)) -> Option<&'static Release> {
        self.releases.iter().find(|r| r.minor_key() == minor)
    }

    /// The release for a version: its minor must be known (else an error naming the known
    /// ones); a patch newer than the newest known is accepted with a note, as is a
    /// pre-release.
    pub fn resolve(&self, version: &CiliumVersion) -> Result<Resolved, String> {
        let release = self.find(version.minor_key()).ok_or_else(|| {
            format!(
                "Cilium {version} is not a version preflight knows; it knows {}",
                self.known()
            )
        })?;
        let note = match (version.patch, &version.pre) {
            (Some(p), _) if p > release.latest_patch => Some(format!(
                "Cilium {version} is newer than the newest {} release preflight knows ({}): \
                 judged with {}'s facts; a newer preflight may know more",
                release.label(),
                release.latest(),
                release.latest()
            )),
            (_, Some(pre)) => Some(format!(
                "Cilium {version} is a pre-release ({pre}): judged as {}.{}.{}",
                version.major,
                version.minor,
                version.patch.unwrap_or(0)
            )),
            _ => None,
        };
        Ok(Resolved { release, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> CiliumVersion {
        CiliumVersion::parse(text).unwrap()
    }

    #[test]
    fn releases_are_ordered_and_carry_the_documented_minimums() {
        for w in RELEASES.windows(2) {
            assert!(w[0].minor_key() < w[1].minor_key());
            assert!(w[0].kernel.min <= w[1].kernel.min);
            assert!(w[0].compile.generation <= w[1].compile.generation);
        }
        let r = BUILTIN.resolve(&v("1.16.4")).unwrap().release;
        assert_eq!(r.kernel.min, (5, 4, 0));
        assert_eq!(BUILTIN.newest().kernel.min, (5, 10, 0));
        assert_eq!(BUILTIN.default_version().to_string(), "1.20.2");
        for r in RELEASES {
            serde_norway::from_str::<serde_json::Value>(r.chart.defaults).unwrap();
            // A compile generation is a minor with exactly these compile facts.
            let first = BUILTIN.find((1, r.compile.generation)).unwrap();
            assert_eq!(first.compile, r.compile, "1.{}", r.minor);
        }
    }

    #[test]
    fn unknown_minors_are_refused_newer_patches_noted() {
        let err = BUILTIN.resolve(&v("1.9")).unwrap_err();
        assert!(
            err.contains("1.14") && err.contains("1.20 (up to 1.20.2)"),
            "{err}"
        );
        assert!(BUILTIN.resolve(&v("2.0.1")).is_err());
        let r = BUILTIN.resolve(&v("1.16.99")).unwrap();
        let note = r.note.unwrap();
        assert!(
            note.contains("newer than the newest 1.16 release") && note.contains("1.16.15"),
            "{note}"
        );
        assert!(BUILTIN.resolve(&v("1.16.15")).unwrap().note.is_none());
        assert!(BUILTIN.resolve(&v("1.16")).unwrap().note.is_none());
        let dev = BUILTIN.resolve(&v("1.20.0-dev")).unwrap().note.unwrap();
        assert!(dev.contains("pre-release"), "{dev}");
    }

    #[test]
    fn btf_is_required_from_a_patch_and_in_1_20() {
        let r119 = BUILTIN.find((1, 19)).unwrap();
        assert!(!r119.btf_required(&v("1.19.2")));
        assert!(r119.btf_required(&v("1.19.3")));
        assert!(r119.btf_required(&v("1.19")), "1.19 means the newest 1.19");
        assert!(BUILTIN.find((1, 20)).unwrap().btf_required(&v("1.20.0")));
        assert!(!BUILTIN.find((1, 18)).unwrap().btf_required(&v("1.18")));
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(
            parse_kernel_release("6.18.0-1-cloud-amd64"),
            Some((6, 18, 0))
        );
        assert_eq!(parse_kernel_release("4.19.57-foo"), Some((4, 19, 57)));
        assert_eq!(parse_kernel_release("6.8"), Some((6, 8, 0)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }
}

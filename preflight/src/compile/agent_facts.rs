//! What cilium-agent writes and passes that the bpf tree cannot tell: the per-version agent
//! facts of the compile stage. The coarse ones come from the release table
//! (`cilium::releases::HeaderFacts`, through [`AgentOptions`]): whether values are read at load
//! time (and the per-program `-D` flags and map renames that go with it) and which macros moved
//! to load time. The macro-level rows below are still keyed by minor here; they are to move
//! into the release table as a unit (one row per read version). Read from the agent sources of 1.16.15, 1.18.3 and 1.20.0-dev
//! (`pkg/datapath/loader`: compile.go, base.go, xdp.go, loader.go, template.go;
//! `pkg/datapath/linux/config/config.go`: the header writer; `pkg/datapath/config`: load-time
//! configuration; `pkg/datapath/linux/probes/probes.go`). Minors not read take the rule of the
//! nearest read one below (1.14–1.15 as 1.16, 1.17 as 1.16, 1.19 as 1.18): marked *inferred*
//! in docs/compile.md.
//!
//! Everything here is filtered through the tree (compile/tree_scan.rs): a macro is written
//! only when the tree's sources use it and neither its load-time configuration nor its own
//! sources define it, so these rows may over-approximate a version without breaking another.
use super::agent_options::{
    AgentOptions, TEMPLATE_EP_ID, Tunnel, WORLD_ID, devices, mac_initializer,
};

/// The agent versions whose sources were read for these facts.
pub const READ_MINORS: &[u32] = &[16, 18, 20];

/// One line the agent writes into a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The identifier the line defines (a macro, or a load-time variable for `DECLARE_CONFIG`).
    pub name: String,
    pub text: String,
    /// Written for these values (false: the agent owns the name but leaves it out here).
    pub on: bool,
    /// Written even when the tree does not reference the name (the agent's option list).
    pub always: bool,
    /// A helper macro the line needs from the tree (e.g. `DEFINE_U32` for static data).
    pub needs: Option<&'static str>,
}

fn def(name: &str, value: impl std::fmt::Display, on: bool) -> Line {
    Line {
        name: name.to_string(),
        text: format!("#define {name} {value}"),
        on,
        always: false,
        needs: None,
    }
}

fn flag(name: &str, on: bool) -> Line {
    def(name, 1, on)
}

/// `#define NAME` + the agent's static-data form (`DEFINE_U32(NAME, v); #define NAME
/// fetch_u32(NAME)`), 1.14–1.17's way to patch endpoint values into a template object.
fn static_u(bits: u32, name: &str, value: u64) -> Line {
    let (helper, fetch, width) = match bits {
        16 => ("DEFINE_U16", "fetch_u16", 4),
        64 => ("DEFINE_U64", "fetch_u64", 16),
        _ => ("DEFINE_U32", "fetch_u32", 8),
    };
    Line {
        name: name.to_string(),
        text: format!(
            "{helper}({name}, {value:#0width$x});\t/* {value} */\n#define {name} {fetch}({name})",
            width = width
        ),
        on: true,
        always: false,
        needs: Some(helper),
    }
}

fn c_array(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:#x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// IPv4 as the agent's headers carry it: network byte order read as a host (little-endian) u32
/// (`byteorder.NetIPv4ToHost32`).
pub fn ipv4_host32(ip: [u8; 4]) -> u32 {
    u32::from_le_bytes(ip)
}

/// The template endpoint's addresses (`templateIPv4` 192.0.2.3, `templateIPv6` 2001:db8:bad:cafe:600d:bee2:bad:cafe).
const TEMPLATE_IPV4: [u8; 4] = [192, 0, 2, 3];
const TEMPLATE_IPV6: [u8; 16] = [
    0x20, 0x01, 0xdb, 0x08, 0x0b, 0xad, 0xca, 0xfe, 0x60, 0x0d, 0xbe, 0xe2, 0x0b, 0xad, 0xca, 0xfe,
];
/// The node's address on its direct-routing device (stands in for the live one).
pub const NODE_IPV4: [u8; 4] = [192, 168, 122, 10];
/// The host endpoint's id (`HOST_EP_ID`): a real endpoint id, not templated.
pub const HOST_EP_ID: u32 = 1092;

/// The endpoint options the agent writes with `GetFmtList` (pkg/option endpoint library),
/// sorted by option name as the agent sorts them: `#define X 1` when on, `#undef X` when off.
fn option_lines(o: &AgentOptions) -> Vec<Line> {
    let mut lines = vec![
        ("DEBUG", None),
        ("DROP_NOTIFY", Some(1)),
        ("MONITOR_AGGREGATION", Some(o.monitor_aggregation)),
        ("POLICY_AUDIT_MODE", None),
        ("POLICY_VERDICT_NOTIFY", Some(1)),
        ("TRACE_NOTIFY", Some(1)),
    ]
    .into_iter()
    .map(|(name, value)| Line {
        name: name.to_string(),
        text: match value {
            Some(v) => format!("#define {name} {v}"),
            None => format!("#undef {name}"),
        },
        on: true,
        always: true,
        needs: None,
    })
    .collect::<Vec<_>>();
    // The debug option's LB define went away after 1.16 (it became `debug_lb` load-time).
    if o.minor <= 17 {
        lines.insert(
            1,
            Line {
                name: "LB_DEBUG".into(),
                text: "#undef LB_DEBUG".into(),
                on: true,
                always: true,
                needs: None,
            },
        );
    }
    lines
}

/// `netdev_config.h` (state dir): the daemon's options, plus the ingress-policy program switch
/// with endpoint routes (up to 1.18).
pub fn netdev_lines(o: &AgentOptions) -> Vec<Line> {
    let mut lines = option_lines(o);
    lines.push(flag(
        "USE_BPF_PROG_FOR_INGRESS_POLICY",
        o.endpoint_routes && o.minor <= 18,
    ));
    lines
}

/// The CT map macros `ctmap.WriteBPFMacros` writes for the global maps (≤1.17).
fn ct_map_lines(on: bool) -> Vec<Line> {
    vec![
        def("CT_MAP_TCP6", "cilium_ct6_global", on),
        def("CT_MAP_ANY6", "cilium_ct_any6_global", on),
        def("CT_MAP_TCP4", "cilium_ct4_global", on),
        def("CT_MAP_ANY4", "cilium_ct_any4_global", on),
        def("CT_MAP_SIZE_TCP", CT_MAP_SIZE_TCP, on),
        def("CT_MAP_SIZE_ANY", CT_MAP_SIZE_ANY, on),
    ]
}

/// pkg/defaults: `CTMapEntriesGlobalTCPDefault` (2^19) and `…AnyDefault` (2^18).
const CT_MAP_SIZE_TCP: u32 = 524_288;
const CT_MAP_SIZE_ANY: u32 = 262_144;

/// `templates/<hash>/ep_config.h` for the endpoint template (`bpf_lxc`) or the host endpoint
/// (`bpf_host`): `writeStaticData` (1.14–1.17: the template's placeholder values, patched per
/// endpoint) then `writeTemplateConfig`.
pub fn ep_lines(o: &AgentOptions, host: bool) -> Vec<Line> {
    let m = o.minor;
    let mut l = Vec::new();
    let id = TEMPLATE_EP_ID;
    // writeStaticData.
    if host {
        l.push(static_u(32, "NATIVE_DEV_IFINDEX", 1));
        if o.bpf_masquerade && o.ipv4_masquerade && o.ipv4 {
            l.push(static_u(
                32,
                "IPV4_MASQUERADE",
                u64::from(ipv4_host32([1, 1, 1, 1])),
            ));
        }
        l.push(static_u(32, "SECCTX_FROM_IPCACHE", 1));
    } else {
        l.push(Line {
            name: "LXC_IP".into(),
            text: format!(
                "DEFINE_IPV6(LXC_IP, {});\n#define LXC_IP_V",
                c_array(&TEMPLATE_IPV6)
            ),
            on: true,
            always: false,
            needs: Some("DEFINE_IPV6"),
        });
        l.push(static_u(
            32,
            "LXC_IPV4",
            u64::from(ipv4_host32(TEMPLATE_IPV4)),
        ));
        l.push(static_u(16, "LXC_ID", u64::from(id)));
    }
    l.push(Line {
        name: "THIS_INTERFACE_MAC".into(),
        text: format!(
            "DEFINE_MAC(THIS_INTERFACE_MAC, {});\n#define THIS_INTERFACE_MAC fetch_mac(THIS_INTERFACE_MAC)",
            c_array(&devices::TEMPLATE_MAC)
        ),
        on: true,
        always: false,
        needs: Some("DEFINE_MAC"),
    });
    l.push(static_u(32, "THIS_INTERFACE_IFINDEX", u64::from(u32::MAX)));
    l.push(static_u(64, "ENDPOINT_NETNS_COOKIE", u64::MAX));
    for name in ["SECLABEL", "SECLABEL_IPV4", "SECLABEL_IPV6"] {
        l.push(static_u(32, name, u64::from(WORLD_ID)));
    }
    l.push(static_u(32, "POLICY_VERDICT_LOG_FILTER", 0xffff));
    l.push(def("POLICY_MAP", format!("cilium_policy_{id}"), true));
    let calls = if host {
        "cilium_calls_hostns_"
    } else {
        "cilium_calls_"
    };
    l.push(def("CALLS_MAP", format!("{calls}{id}"), true));
    // writeTemplateConfig.
    l.push(flag(
        "USE_BPF_PROG_FOR_INGRESS_POLICY",
        o.endpoint_routes && !host && m <= 18,
    ));
    l.push(flag("ENABLE_ROUTING", !o.endpoint_routes && !host));
    // BPF host routing with a direct-routing device; one device: FIB lookups skipped.
    l.push(def(
        "DIRECT_ROUTING_DEV_IFINDEX",
        devices::NATIVE_IFINDEX,
        o.host_routing && m <= 19,
    ));
    l.push(flag(
        "ENABLE_SKIP_FIB",
        o.host_routing && m <= 19 && (host || !o.ipsec),
    ));
    // Unused by the sources: it only makes the host template's hash differ (always written).
    l.push(Line {
        always: true,
        ..flag("HOST_ENDPOINT", host)
    });
    l.push(flag("DISABLE_LOOPBACK_LB", host && o.nodeport && m <= 17));
    l.push(def("HOST_EP_ID", HOST_EP_ID, m <= 19));
    // Every endpoint answers ARP for its gateway unless netkit (lxc only); load-time in 1.20.
    l.push(flag(
        "ENABLE_ARP_RESPONDER",
        (host || !o.netkit) && !o.reads_at_load_time("ENABLE_ARP_RESPONDER"),
    ));
    if m <= 17 {
        l.extend(ct_map_lines(true));
    }
    l.push(flag("LOCAL_DELIVERY_METRICS", true));
    l.extend(option_lines(o));
    l
}

/// The part of `node_config.h` preflight writes from the values (the rest comes from the
/// tree's dummy, see compile/dummy.rs). `on: false` rows are names the agent owns but leaves
/// out for these values: the dummy's definitions of them are dropped too.
pub fn node_lines(o: &AgentOptions) -> Vec<Line> {
    let m = o.minor;
    let tunnel = o.tunnel;
    let nodeport = o.nodeport;
    let mut l = vec![
        flag("ENABLE_IPV4", o.ipv4),
        flag("ENABLE_IPV6", o.ipv6),
        flag(
            "ENABLE_IPV4_FRAGMENTS",
            o.ipv4 && o.ipv4_fragments && m <= 19,
        ),
        def("CILIUM_IPV4_FRAG_MAP_MAX_ENTRIES", 8192, o.ipv4),
        flag(
            "ENABLE_IPV6_FRAGMENTS",
            o.ipv6 && o.ipv4_fragments && (18..=19).contains(&m),
        ),
        flag("TUNNEL_MODE", tunnel.is_some()),
        // The tunnel cell's extra defines (pkg/datapath/tunnel `datapathConfigProvider`): the
        // tunnel device's ifindex, and up to 1.19 protocol and port (load-time in 1.20).
        def("ENCAP_IFINDEX", devices::TUNNEL_IFINDEX, tunnel.is_some()),
        def(
            "TUNNEL_PROTOCOL_VXLAN",
            Tunnel::Vxlan.code(),
            tunnel.is_some(),
        ),
        def(
            "TUNNEL_PROTOCOL_GENEVE",
            Tunnel::Geneve.code(),
            tunnel.is_some(),
        ),
        def(
            "TUNNEL_PROTOCOL",
            tunnel.map(|(t, _)| t.code()).unwrap_or(0),
            tunnel.is_some(),
        ),
        def(
            "TUNNEL_PORT",
            tunnel.map(|(_, p)| p).unwrap_or(0),
            tunnel.is_some(),
        ),
        flag("ENABLE_NODEPORT", nodeport),
        def(
            "NODEPORT_NEIGH4_SIZE",
            524_288,
            o.ipv4 && (nodeport || m >= 20),
        ),
        def("NODEPORT_PORT_MIN", 30000, nodeport),
        def("NODEPORT_PORT_MAX", 32767, nodeport),
        def("NODEPORT_PORT_MIN_NAT", 32768, nodeport),
        def("NODEPORT_PORT_MAX_NAT", 65535, nodeport),
        def("DSR_ENCAP_NONE", 1, nodeport),
        def("DSR_ENCAP_IPIP", 2, nodeport),
        def("DSR_ENCAP_GENEVE", 3, nodeport),
        def("DSR_ENCAP_MODE", 0, nodeport),
        def("DSR_XLATE_FRONTEND", 1, nodeport && m <= 17),
        def("DSR_XLATE_BACKEND", 2, nodeport && m <= 17),
        def("DSR_XLATE_MODE", 0, nodeport && m <= 17),
        def("IPV4_RSS_PREFIX", "IPV4_DIRECT_ROUTING", nodeport && o.ipv4),
        def("IPV4_RSS_PREFIX_BITS", 32, nodeport && o.ipv4),
        flag(
            "ENABLE_NODEPORT_ACCELERATION",
            nodeport && o.xdp_acceleration,
        ),
        flag("ENABLE_HOST_ROUTING", nodeport && o.host_routing),
        flag(
            "ENABLE_MASQUERADE_IPV4",
            nodeport && o.bpf_masquerade && o.ipv4_masquerade && o.ipv4,
        ),
        flag("ENABLE_SESSION_AFFINITY", o.session_affinity && m <= 19),
        flag(
            "ENABLE_SOCKET_LB_FULL",
            o.socket_lb && !o.socket_lb_hostns_only,
        ),
        flag(
            "ENABLE_SOCKET_LB_HOST_ONLY",
            o.socket_lb && o.socket_lb_hostns_only,
        ),
        flag("ENABLE_IPSEC", o.ipsec && m <= 19),
        flag("ENABLE_WIREGUARD", o.wireguard && m <= 19),
        def(
            "WG_IFINDEX",
            devices::WIREGUARD_IFINDEX,
            o.wireguard && m <= 19,
        ),
        flag("ENABLE_BANDWIDTH_MANAGER", o.bandwidth_manager),
        flag("ENABLE_HOST_FIREWALL", o.host_firewall),
        flag("ENABLE_ENDPOINT_ROUTES", o.endpoint_routes && m <= 19),
        flag("ENABLE_IDENTITY_MARK", o.identity_mark && m <= 19),
        flag("ENABLE_L2_ANNOUNCEMENTS", o.l2_announcements && m <= 19),
        flag(
            "ENABLE_LOCAL_REDIRECT_POLICY",
            o.local_redirect_policy && m <= 19,
        ),
        flag("ENABLE_PREFILTER", o.xdp_prefilter && m <= 19),
        // The direct-routing device (pkg/option `DirectRoutingDeviceRequired`): NodePort, BPF
        // host routing (only with NodePort) or WireGuard need it; else 0.
        def(
            "DIRECT_ROUTING_DEV_IFINDEX",
            if nodeport || o.wireguard {
                devices::NATIVE_IFINDEX
            } else {
                0
            },
            m <= 19,
        ),
        def(
            "IPV4_DIRECT_ROUTING",
            if nodeport || o.wireguard {
                ipv4_host32(NODE_IPV4)
            } else {
                0
            },
            o.ipv4,
        ),
        def("CLUSTER_ID_MAX", 255, m <= 19),
        // The identity length in bits, a load-time variable the agent declares and assigns
        // in node_config.h (cluster id bits 8: 16).
        Line {
            name: "identity_length".into(),
            text: "DECLARE_CONFIG(__u32, identity_length, \"Identity length in bits\");\n\
                   ASSIGN_CONFIG(__u32, identity_length, 16);"
                .into(),
            on: m <= 19,
            always: false,
            needs: Some("DECLARE_CONFIG"),
        },
    ];
    // Up to 1.17 the global CT maps come with NodePort; from 1.18 only their sizes, always.
    if m <= 17 {
        l.extend(ct_map_lines(nodeport));
    } else {
        l.push(def("CT_MAP_SIZE_TCP", CT_MAP_SIZE_TCP, true));
        l.push(def("CT_MAP_SIZE_ANY", CT_MAP_SIZE_ANY, true));
    }
    l
}

/// Names the dummy `node_config.h` defines that the agent never writes there: test-only
/// overrides of library defaults (`__CLUSTERMESH_*`: the library then reads the load-time
/// identity length), debug switches (the agent's are endpoint options), and the names of
/// other headers and per-program flags (collected from `ep_lines` and `program_plans`).
pub const DUMMY_ONLY: &[&str] = &[
    "__CLUSTERMESH_HELPERS__",
    "__CLUSTERMESH_IDENTITY__",
    "LB_DEBUG",
    "CUSTOM_CALLS_MAP",
];

/// How a program is built and loaded by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramKind {
    /// Compiled per endpoint template (`templates/<hash>/` in the include path).
    Endpoint,
    /// The host endpoint (`bpf_host`), also a template.
    Host,
    /// Compiled by datapath init (`Reinitialize`) after node_config.h is written.
    Base,
    /// Compiled by datapath init to check struct layouts against the agent's; never loaded.
    AlignChecker,
}

/// A program the agent builds for this target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramPlan {
    pub name: String,
    pub kind: ProgramKind,
    /// The agent's per-program `-D` flags, in its order.
    pub defines: Vec<String>,
    /// Why the agent builds it.
    pub why: String,
}

fn plan(name: &str, kind: ProgramKind, defines: Vec<String>, why: &str) -> ProgramPlan {
    ProgramPlan {
        name: name.into(),
        kind,
        defines,
        why: why.into(),
    }
}

/// `-DSECLABEL_IPV4=… -DSECLABEL_IPV6=…` as the 1.16 loader appends them.
fn seclabels(o: &AgentOptions) -> Vec<String> {
    let (v4, v6) = o.world_ids();
    vec![
        format!("-DSECLABEL_IPV4={v4}"),
        format!("-DSECLABEL_IPV6={v6}"),
    ]
}

/// The programs the agent compiles for these values, with its per-program flags
/// (pkg/datapath/loader: base.go `Reinitialize`, xdp.go `xdpCompileArgs`, the template cache
/// for bpf_lxc/bpf_host), and the ones it does not build, with why.
pub fn program_plans(o: &AgentOptions) -> (Vec<ProgramPlan>, Vec<(String, String)>) {
    // Per-program -D flags went with the move to load-time configuration (1.18).
    let legacy_flags = !o.load_time_config;
    let mut built = vec![
        plan(
            "bpf_lxc",
            ProgramKind::Endpoint,
            vec![],
            "endpoint template (every pod)",
        ),
        plan(
            "bpf_host",
            ProgramKind::Host,
            vec![],
            "host endpoint (cilium_host, native devices)",
        ),
    ];
    let mut skipped = Vec::new();
    let mut base = |name: &str, on: bool, defines: Vec<String>, why: &str, off: &str| {
        if on {
            built.push(plan(name, ProgramKind::Base, defines, why));
        } else {
            skipped.push((name.to_string(), off.to_string()));
        }
    };
    base(
        "bpf_sock",
        o.socket_lb,
        if legacy_flags {
            vec!["-DCALLS_MAP=cilium_calls_lb".into()]
        } else {
            vec![]
        },
        "socket LB (kube-proxy replacement or socketLB.enabled)",
        "socket LB is off (kubeProxyReplacement=false, socketLB.enabled unset)",
    );
    let xdp_flags = if legacy_flags {
        let mut f = vec![
            format!("-DSECLABEL={WORLD_ID}"),
            format!(
                "-DTHIS_INTERFACE_MAC={}",
                mac_initializer(devices::NATIVE_MAC)
            ),
            format!("-DCALLS_MAP=cilium_calls_xdp_{}", devices::NATIVE_IFINDEX),
            "-Dcapture_enabled=0".into(),
        ];
        if o.nodeport {
            f.push(format!("-DTHIS_MTU={}", devices::MTU));
            f.push(format!("-DNATIVE_DEV_IFINDEX={}", devices::NATIVE_IFINDEX));
            f.push("-DDISABLE_LOOPBACK_LB".into());
        }
        f.extend(seclabels(o));
        f
    } else {
        // 1.18's xdpCompileArgs copies its extra arguments into an empty slice: none are passed.
        vec![]
    };
    base(
        "bpf_xdp",
        o.xdp(),
        xdp_flags,
        "XDP (loadBalancer.acceleration or the prefilter)",
        "XDP is not used (loadBalancer.acceleration=disabled, no prefilter)",
    );
    let overlay_flags = if legacy_flags {
        let mut f = vec![
            format!("-DSECLABEL={WORLD_ID}"),
            format!(
                "-DTHIS_INTERFACE_MAC={}",
                mac_initializer(devices::TUNNEL_MAC)
            ),
            format!("-DCALLS_MAP=cilium_calls_overlay_{WORLD_ID}"),
        ];
        if o.nodeport {
            f.push("-DDISABLE_LOOPBACK_LB".into());
            f.push(format!("-DNATIVE_DEV_IFINDEX={}", devices::TUNNEL_IFINDEX));
        }
        f.extend(seclabels(o));
        f
    } else {
        vec![]
    };
    base(
        "bpf_overlay",
        o.tunnel.is_some(),
        overlay_flags,
        "tunnel routing (cilium_vxlan / cilium_geneve)",
        "native routing: no tunnel device",
    );
    // Up to 1.17 the WireGuard program is only needed for NodePort's reverse NAT with native
    // routing and the L7 proxy; from 1.18 with WireGuard at all.
    let wg = if legacy_flags {
        o.wireguard && o.nodeport && o.l7_proxy && o.native_routing
    } else {
        o.wireguard
    };
    base(
        "bpf_wireguard",
        wg,
        if legacy_flags {
            vec![
                format!("-DSECLABEL={WORLD_ID}"),
                format!(
                    "-DTHIS_INTERFACE_MAC={}",
                    mac_initializer(devices::NATIVE_MAC)
                ),
                format!("-DNATIVE_DEV_IFINDEX={}", devices::WIREGUARD_IFINDEX),
                format!("-DCALLS_MAP=cilium_calls_wireguard_{WORLD_ID}"),
            ]
        } else {
            vec![]
        },
        "WireGuard encryption",
        if legacy_flags && o.wireguard {
            "WireGuard without NodePort + native routing + L7 proxy: the agent does not need it"
        } else {
            "WireGuard is off"
        },
    );
    // IPsec: ENABLE_IPSEC comes through node_config.h, not the command line (compileNetwork).
    base(
        "bpf_network",
        o.ipsec,
        vec![],
        "IPsec (encryption.type=ipsec)",
        "IPsec is off",
    );
    base(
        "bpf_alignchecker",
        true,
        vec![],
        "struct layout check against the agent's Go types (never loaded)",
        "",
    );
    if let Some(p) = built.iter_mut().find(|p| p.name == "bpf_alignchecker") {
        p.kind = ProgramKind::AlignChecker;
    }
    (built, skipped)
}

/// (macro, header, probes: (program type, helper), all of which must be available).
pub type FeatureMacro = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// A `HAVE_*` macro the agent writes into its bpf dir's feature headers at startup
/// (probes.go `writeCommonHeader` / `writeSkbHeader` / `writeXdpHeader`), from helper probes:
/// (macro, header, [(program type, helper)] all of which must be available). The tree decides
/// which are written: the ones its sources test.
pub const FEATURE_MACROS: &[FeatureMacro] = &[
    (
        "HAVE_NETNS_COOKIE",
        "features.h",
        &[
            ("cgroup_sock", "get_netns_cookie"),
            ("cgroup_sock_addr", "get_netns_cookie"),
        ],
    ),
    (
        "HAVE_SOCKET_COOKIE",
        "features.h",
        &[("cgroup_sock_addr", "get_socket_cookie")],
    ),
    (
        "HAVE_JIFFIES",
        "features.h",
        &[
            ("cgroup_sock", "jiffies64"),
            ("cgroup_sock_addr", "jiffies64"),
            ("sched_cls", "jiffies64"),
            ("xdp", "jiffies64"),
        ],
    ),
    (
        "HAVE_CGROUP_ID",
        "features.h",
        &[("cgroup_sock_addr", "get_current_cgroup_id")],
    ),
    (
        "HAVE_SET_RETVAL",
        "features.h",
        &[("cgroup_sock", "set_retval")],
    ),
    (
        "HAVE_FIB_NEIGH",
        "features.h",
        &[("sched_cls", "redirect_neigh")],
    ),
    // The agent's HaveFibIfindex probe stands for the 5.10 FIB change; redirect_peer is the
    // helper of the same release.
    (
        "HAVE_FIB_IFINDEX",
        "features.h",
        &[("sched_cls", "redirect_peer")],
    ),
    (
        "HAVE_CSUM_LEVEL",
        "features_skb.h",
        &[("sched_cls", "csum_level")],
    ),
    (
        "HAVE_XDP_GET_BUFF_LEN",
        "features_xdp.h",
        &[("xdp", "xdp_get_buff_len")],
    ),
    (
        "HAVE_XDP_LOAD_BYTES",
        "features_xdp.h",
        &[("xdp", "xdp_load_bytes")],
    ),
    (
        "HAVE_XDP_STORE_BYTES",
        "features_xdp.h",
        &[("xdp", "xdp_store_bytes")],
    ),
];

/// A load-time value (1.18+): set in the object's `.rodata.config` before loading, as the
/// agent's `config.New<Object>` structs are filled (pkg/datapath/config, loader.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    Bool(bool),
    Uint(u64),
    Bytes(Vec<u8>),
}

/// The load-time variables the agent sets for a program, by variable name (without the
/// `__config_` prefix). Variables the object declares but the agent leaves alone keep the
/// object's own default, as `config.New<Object>` does.
pub fn load_time_values(o: &AgentOptions, program: &str) -> Vec<(&'static str, ConfigValue)> {
    use ConfigValue::*;
    let mut v: Vec<(&'static str, ConfigValue)> = vec![
        // NodeConfig: the node's devices and settings.
        (
            "cilium_host_ifindex",
            Uint(devices::CILIUM_HOST_IFINDEX.into()),
        ),
        ("cilium_host_mac", Bytes(devices::CILIUM_HOST_MAC.to_vec())),
        (
            "cilium_net_ifindex",
            Uint(devices::CILIUM_NET_IFINDEX.into()),
        ),
        ("cilium_net_mac", Bytes(devices::CILIUM_NET_MAC.to_vec())),
        // The agent's default service loopback address, 169.254.42.1.
        ("service_loopback_ipv4", Bytes(vec![169, 254, 42, 1])),
        ("trace_payload_len", Uint(128)),
        ("trace_payload_len_overlay", Uint(192)),
        ("nodeport_port_min", Uint(30000)),
        ("nodeport_port_max", Uint(32767)),
        ("enable_identity_mark", Bool(o.identity_mark)),
        ("enable_endpoint_routes", Bool(o.endpoint_routes)),
        (
            "direct_routing_dev_ifindex",
            Uint(if o.nodeport || o.wireguard {
                devices::NATIVE_IFINDEX.into()
            } else {
                0
            }),
        ),
        // Kernels Cilium 1.18+ supports (5.10+) have both FIB lookup flags from 6.7 / 6.8 on;
        // the live probes refine this in `load_config`.
        ("supports_fib_lookup_skip_neigh", Bool(true)),
        ("supports_fib_lookup_src", Bool(true)),
    ];
    let ifindex = match program {
        "bpf_overlay" => devices::TUNNEL_IFINDEX,
        "bpf_wireguard" => devices::WIREGUARD_IFINDEX,
        "bpf_host" => devices::CILIUM_HOST_IFINDEX,
        "bpf_lxc" => 10,
        _ => devices::NATIVE_IFINDEX,
    };
    let endpoint = matches!(program, "bpf_lxc" | "bpf_host");
    if !matches!(program, "bpf_sock" | "bpf_alignchecker") {
        v.push(("interface_ifindex", Uint(ifindex.into())));
    }
    if endpoint || program == "bpf_xdp" {
        v.push(("device_mtu", Uint(devices::MTU.into())));
    }
    if endpoint {
        let mac = if program == "bpf_host" {
            devices::CILIUM_HOST_MAC
        } else {
            devices::TEMPLATE_MAC
        };
        v.push(("interface_mac", Bytes(mac.to_vec())));
        v.push(("host_ep_id", Uint(HOST_EP_ID.into())));
        if let Some((t, port)) = o.tunnel {
            v.push(("tunnel_protocol", Uint(t.code().into())));
            v.push(("tunnel_port", Uint(port.into())));
        }
        v.push(("enable_ipv4_fragments", Bool(o.ipv4 && o.ipv4_fragments)));
        v.push(("allow_icmp_frag_needed", Bool(true)));
        v.push(("enable_icmp_rule", Bool(true)));
        v.push(("ephemeral_min", Uint(32768)));
        v.push(("enable_netkit", Bool(o.netkit)));
        v.push(("enable_lrp", Bool(o.local_redirect_policy)));
    }
    match program {
        "bpf_lxc" => {
            // A workload endpoint with the template's placeholders (the agent loads each
            // endpoint with its own; the code verified does not depend on them).
            v.push(("endpoint_id", Uint(3663)));
            v.push(("endpoint_ipv4", Bytes(vec![10, 0, 0, 10])));
            v.push(("endpoint_netns_cookie", Uint(4096)));
            v.push(("security_label", Uint(0x3039)));
            v.push(("policy_verdict_log_filter", Uint(0)));
            // 1.20: veth endpoints are layer 2, so they answer ARP for their gateway.
            v.push(("enable_arp_responder", Bool(!o.netkit)));
        }
        "bpf_host" => {
            // The host identity.
            v.push(("security_label", Uint(1)));
            v.push(("secctx_from_ipcache", Bool(true)));
        }
        "bpf_wireguard" => {
            v.push(("secctx_from_ipcache", Bool(o.host_routing)));
        }
        "bpf_xdp" => v.push(("enable_xdp_prefilter", Bool(o.xdp_prefilter))),
        _ => {}
    }
    v
}

/// Map renames the 1.18+ loader applies (the object names its tail-call map `cilium_calls`).
pub fn map_renames(o: &AgentOptions, program: &str) -> Vec<(&'static str, String)> {
    if !o.load_time_config {
        return Vec::new();
    }
    let id = TEMPLATE_EP_ID;
    let calls = match program {
        "bpf_lxc" => format!("cilium_calls_{id}"),
        "bpf_host" => format!("cilium_calls_hostns_{id}"),
        "bpf_overlay" => format!("cilium_calls_overlay_{WORLD_ID}"),
        "bpf_wireguard" => format!("cilium_calls_wireguard_{}", devices::WIREGUARD_IFINDEX),
        "bpf_xdp" => format!("cilium_calls_xdp_{}", devices::NATIVE_IFINDEX),
        "bpf_network" => format!("cilium_calls_netdev_{}", devices::NATIVE_IFINDEX),
        _ => return Vec::new(),
    };
    let mut out = vec![("cilium_calls", calls)];
    if program == "bpf_lxc" {
        out.push(("cilium_policy_v2", format!("cilium_policy_v2_{id}")));
    }
    out
}

/// Macros that tell which agent wrote a `node_config.h`: always written (chart defaults) by the
/// read versions marked true, never by the others (config.go of 1.16.15, 1.18.3, 1.20.0-dev).
/// Columns follow [`READ_MINORS`].
pub const NODE_CONFIG_MARKERS: &[(&str, [bool; 3])] = &[
    ("HOST_IFINDEX", [true, false, false]),
    ("CILIUM_IFINDEX", [true, false, false]),
    ("ENDPOINTS_MAP", [true, false, false]),
    ("L2_RESPONSER_MAP4_SIZE", [true, false, false]),
    ("CILIUM_HOST_IFINDEX", [false, true, false]),
    ("CILIUM_NET_IFINDEX", [false, true, false]),
    ("EVENTS_MAP_RATE_LIMIT", [false, true, false]),
    ("L2_RESPONDER_MAP4_SIZE", [false, true, true]),
    ("MTU", [true, true, false]),
    ("KERNEL_HZ", [true, true, false]),
    ("EPHEMERAL_MIN", [true, true, false]),
    ("INGRESS_ID", [false, false, true]),
    ("L2_RESPONDER_MAP6_SIZE", [false, false, true]),
];

/// The read version whose facts stand for `minor`: the nearest read one at or below it (the
/// oldest read one for older minors).
pub fn facts_minor(minor: u32) -> u32 {
    READ_MINORS
        .iter()
        .rev()
        .copied()
        .find(|m| *m <= minor)
        .unwrap_or(READ_MINORS[0])
}

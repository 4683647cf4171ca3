//! What there is to probe: program types, map types (bpftool's names, so reports line up with
//! `bpftool feature probe`), and the helpers Cilium's datapath calls per program type.
use aya::{maps::MapType, programs::ProgramType};

pub use super::helpers::HELPERS;

/// Program types in UAPI order, named as bpftool names them.
pub const PROGRAM_TYPES: &[(&str, ProgramType)] = &[
    ("socket_filter", ProgramType::SocketFilter),
    ("kprobe", ProgramType::KProbe),
    ("sched_cls", ProgramType::SchedClassifier),
    ("sched_act", ProgramType::SchedAction),
    ("tracepoint", ProgramType::TracePoint),
    ("xdp", ProgramType::Xdp),
    ("perf_event", ProgramType::PerfEvent),
    ("cgroup_skb", ProgramType::CgroupSkb),
    ("cgroup_sock", ProgramType::CgroupSock),
    ("lwt_in", ProgramType::LwtInput),
    ("lwt_out", ProgramType::LwtOutput),
    ("lwt_xmit", ProgramType::LwtXmit),
    ("sock_ops", ProgramType::SockOps),
    ("sk_skb", ProgramType::SkSkb),
    ("cgroup_device", ProgramType::CgroupDevice),
    ("sk_msg", ProgramType::SkMsg),
    ("raw_tracepoint", ProgramType::RawTracePoint),
    ("cgroup_sock_addr", ProgramType::CgroupSockAddr),
    ("lwt_seg6local", ProgramType::LwtSeg6local),
    ("lirc_mode2", ProgramType::LircMode2),
    ("sk_reuseport", ProgramType::SkReuseport),
    ("flow_dissector", ProgramType::FlowDissector),
    ("cgroup_sysctl", ProgramType::CgroupSysctl),
    (
        "raw_tracepoint_writable",
        ProgramType::RawTracePointWritable,
    ),
    ("cgroup_sockopt", ProgramType::CgroupSockopt),
    ("tracing", ProgramType::Tracing),
    ("struct_ops", ProgramType::StructOps),
    ("ext", ProgramType::Extension),
    ("lsm", ProgramType::Lsm(aya::programs::LsmAttachType::Mac)),
    ("sk_lookup", ProgramType::SkLookup),
    ("syscall", ProgramType::Syscall),
    ("netfilter", ProgramType::Netfilter),
];

/// Map types in UAPI order, named as bpftool names them.
pub const MAP_TYPES: &[(&str, MapType)] = &[
    ("hash", MapType::Hash),
    ("array", MapType::Array),
    ("prog_array", MapType::ProgramArray),
    ("perf_event_array", MapType::PerfEventArray),
    ("percpu_hash", MapType::PerCpuHash),
    ("percpu_array", MapType::PerCpuArray),
    ("stack_trace", MapType::StackTrace),
    ("cgroup_array", MapType::CgroupArray),
    ("lru_hash", MapType::LruHash),
    ("lru_percpu_hash", MapType::LruPerCpuHash),
    ("lpm_trie", MapType::LpmTrie),
    ("array_of_maps", MapType::ArrayOfMaps),
    ("hash_of_maps", MapType::HashOfMaps),
    ("devmap", MapType::DevMap),
    ("sockmap", MapType::SockMap),
    ("cpumap", MapType::CpuMap),
    ("xskmap", MapType::XskMap),
    ("sockhash", MapType::SockHash),
    ("cgroup_storage", MapType::CgroupStorage),
    ("reuseport_sockarray", MapType::ReuseportSockArray),
    ("percpu_cgroup_storage", MapType::PerCpuCgroupStorage),
    ("queue", MapType::Queue),
    ("stack", MapType::Stack),
    ("sk_storage", MapType::SkStorage),
    ("devmap_hash", MapType::DevMapHash),
    ("struct_ops", MapType::StructOps),
    ("ringbuf", MapType::RingBuf),
    ("inode_storage", MapType::InodeStorage),
    ("task_storage", MapType::TaskStorage),
    ("bloom_filter", MapType::BloomFilter),
    ("user_ringbuf", MapType::UserRingBuf),
    ("cgrp_storage", MapType::CgrpStorage),
    ("arena", MapType::Arena),
];

/// Program types whose helpers cannot be probed with a minimal program: they need a BTF attach
/// target (libbpf skips them too, libbpf_probes.c). Their helpers are reported unknown.
pub fn helpers_probeable(program_type: ProgramType) -> bool {
    !matches!(
        program_type,
        ProgramType::Tracing
            | ProgramType::Extension
            | ProgramType::Lsm(_)
            | ProgramType::StructOps
    )
}

/// The program types Cilium loads (bpf_lxc/bpf_host/bpf_overlay: sched_cls; bpf_xdp: xdp;
/// bpf_sock: cgroup_sock_addr and cgroup_sock; sockops acceleration: sock_ops, sk_msg).
pub const CILIUM_PROGRAM_TYPES: &[&str] = &[
    "socket_filter",
    "sched_cls",
    "xdp",
    "cgroup_sock",
    "cgroup_sock_addr",
    "sock_ops",
    "sk_msg",
];

/// Map types Cilium creates (policy/ct/nat/lb/ipcache/events/metrics/sockmap maps).
pub const CILIUM_MAP_TYPES: &[&str] = &[
    "hash",
    "array",
    "prog_array",
    "perf_event_array",
    "percpu_hash",
    "percpu_array",
    "lru_hash",
    "lru_percpu_hash",
    "lpm_trie",
    "array_of_maps",
    "hash_of_maps",
    "devmap",
    "sockhash",
    "sk_storage",
    "ringbuf",
];

/// Helpers the datapath calls, per program type (from Cilium's bpf/ sources and the agent's
/// startup probes, pkg/datapath/linux/probes). `socket_filter`'s skb_store_bytes is listed
/// because it must come out *unavailable*: the case bpftool 7.1 gets wrong on kernels >= 6.10.
pub const CILIUM_HELPERS: &[(&str, &[&str])] = &[
    (
        "socket_filter",
        &[
            "map_lookup_elem",
            "skb_load_bytes",
            "skb_store_bytes",
            "get_socket_cookie",
            "perf_event_output",
        ],
    ),
    (
        "sched_cls",
        &[
            "map_lookup_elem",
            "map_update_elem",
            "map_delete_elem",
            "tail_call",
            "redirect",
            "redirect_neigh",
            "redirect_peer",
            "skb_load_bytes",
            "skb_store_bytes",
            "l3_csum_replace",
            "l4_csum_replace",
            "csum_diff",
            "csum_level",
            "skb_change_tail",
            "skb_change_head",
            "skb_change_proto",
            "skb_adjust_room",
            "fib_lookup",
            "get_socket_cookie",
            "get_netns_cookie",
            "get_cgroup_classid",
            "jiffies64",
            "ktime_get_ns",
            "get_prandom_u32",
            "perf_event_output",
            "skb_get_tunnel_key",
            "skb_set_tunnel_key",
            "sk_assign",
            "skc_lookup_tcp",
            "sk_release",
            "check_mtu",
            "get_hash_recalc",
            "set_hash_invalid",
            "skb_ecn_set_ce",
        ],
    ),
    (
        "xdp",
        &[
            "map_lookup_elem",
            "map_update_elem",
            "tail_call",
            "redirect",
            "redirect_map",
            "xdp_adjust_head",
            "xdp_adjust_tail",
            "xdp_adjust_meta",
            "fib_lookup",
            "csum_diff",
            "xdp_get_buff_len",
            "xdp_load_bytes",
            "xdp_store_bytes",
            "jiffies64",
            "ktime_get_ns",
            "get_prandom_u32",
            "perf_event_output",
        ],
    ),
    (
        "cgroup_sock",
        &[
            "map_lookup_elem",
            "map_update_elem",
            "get_socket_cookie",
            "get_netns_cookie",
            "get_current_cgroup_id",
            "jiffies64",
        ],
    ),
    (
        "cgroup_sock_addr",
        &[
            "map_lookup_elem",
            "map_update_elem",
            "get_socket_cookie",
            "get_netns_cookie",
            "get_current_cgroup_id",
            "sk_lookup_tcp",
            "sk_lookup_udp",
            "sk_release",
            "jiffies64",
            "ktime_get_ns",
            "get_prandom_u32",
            "bind",
        ],
    ),
    (
        "sock_ops",
        &[
            "map_lookup_elem",
            "sock_hash_update",
            "sock_ops_cb_flags_set",
            "get_socket_cookie",
            "get_netns_cookie",
        ],
    ),
    ("sk_msg", &["msg_redirect_hash", "map_lookup_elem"]),
];

/// Helpers whose verification leaves a trace on the node: bpf_trace_printk/trace_vprintk allocate
/// the trace buffers and print a banner in the kernel log, bpf_probe_write_user logs a warning.
/// bpftool skips them unless asked for `full`; so do we (they are reported unknown).
pub const NOISY_HELPERS: &[&str] = &["trace_printk", "trace_vprintk", "probe_write_user"];

/// The expected attach type (UAPI `enum bpf_attach_type`) a program type must be loaded with to
/// reach the verifier; 0 where the type takes none. Same choices as aya's probes.
pub fn expected_attach_type(program: &str) -> u32 {
    use aya_obj::generated::bpf_attach_type as t;
    (match program {
        "sk_msg" => t::BPF_SK_MSG_VERDICT,
        "cgroup_sock_addr" => t::BPF_CGROUP_INET4_CONNECT,
        "lirc_mode2" => t::BPF_LIRC_MODE2,
        "sk_reuseport" => t::BPF_SK_REUSEPORT_SELECT,
        "flow_dissector" => t::BPF_FLOW_DISSECTOR,
        "cgroup_sysctl" => t::BPF_CGROUP_SYSCTL,
        "cgroup_sockopt" => t::BPF_CGROUP_GETSOCKOPT,
        "tracing" => t::BPF_TRACE_FENTRY,
        "lsm" => t::BPF_LSM_MAC,
        "sk_lookup" => t::BPF_SK_LOOKUP,
        "netfilter" => t::BPF_NETFILTER,
        _ => return 0,
    }) as u32
}

/// UAPI number of a program type: PROGRAM_TYPES is in UAPI order from 1.
pub fn program_type_number(name: &str) -> Option<u32> {
    PROGRAM_TYPES
        .iter()
        .position(|(n, _)| *n == name)
        .map(|i| i as u32 + 1)
}

pub fn program_type(name: &str) -> Option<ProgramType> {
    PROGRAM_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

pub fn helper(name: &str) -> Option<aya::sys::BpfHelper> {
    HELPERS.iter().find(|(n, _)| *n == name).map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cilium_name_is_in_the_catalogue() {
        for (prog, helpers) in CILIUM_HELPERS {
            assert!(program_type(prog).is_some(), "{prog}");
            assert!(CILIUM_PROGRAM_TYPES.contains(prog), "{prog}");
            for h in *helpers {
                assert!(helper(h).is_some(), "{prog}: {h}");
            }
        }
        for m in CILIUM_MAP_TYPES {
            assert!(MAP_TYPES.iter().any(|(n, _)| n == m), "{m}");
        }
    }

    #[test]
    fn program_type_numbers_follow_the_uapi_enum() {
        use aya_obj::generated::bpf_prog_type as t;
        for (name, number) in [
            ("socket_filter", t::BPF_PROG_TYPE_SOCKET_FILTER),
            ("sched_cls", t::BPF_PROG_TYPE_SCHED_CLS),
            ("cgroup_sock_addr", t::BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
            ("tracing", t::BPF_PROG_TYPE_TRACING),
            ("lsm", t::BPF_PROG_TYPE_LSM),
            ("netfilter", t::BPF_PROG_TYPE_NETFILTER),
        ] {
            assert_eq!(program_type_number(name), Some(number as u32), "{name}");
        }
    }

    /// docs/probe.md states the catalog's size in one sentence; a program type, map type or
    /// helper added here must be counted there.
    #[test]
    fn docs_state_the_size_of_the_catalog() {
        let docs = include_str!("../../../docs/probe.md");
        let docs = docs.split_whitespace().collect::<Vec<_>>().join(" ");
        let sentence = format!(
            "**{} program types, {} map types and {} helpers**",
            PROGRAM_TYPES.len(),
            MAP_TYPES.len(),
            HELPERS.len()
        );
        assert!(
            docs.contains(&sentence),
            "docs/probe.md must say {sentence}"
        );
    }

    #[test]
    fn helper_table_is_the_uapi_enum_in_order() {
        assert_eq!(
            HELPERS.len(),
            211,
            "bpf_func_id 1..=211 (helpers are frozen since 6.2)"
        );
        for (i, (_, id)) in HELPERS.iter().enumerate() {
            assert_eq!(*id as usize, i + 1);
        }
    }
}

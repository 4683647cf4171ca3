//! ELF section name → program type, expected attach type and role (entry point or tail call).
//!
//! The table is libbpf's section convention as cilium/ebpf carries it (`elf_sections.go`),
//! reduced to the program types a datapath uses, plus Cilium's own conventions:
//! - `<map id>/<slot>` (iproute2, Cilium ≤ 1.17: `__section_tail(ID, KEY)` in
//!   bpf/include/bpf/section.h, e.g. `2/1`, `1/0xffff`): a tail call into the legacy map whose
//!   `id` field is `<map id>`, at `<slot>`; the program type is the object's entry programs'
//!   (pkg/bpf `classifyProgramTypes`);
//! - `tc/entry`, `xdp/entry` and `tc/tail`, `xdp/tail` (Cilium 1.18+: `__section_entry`,
//!   `__declare_tail(N)` in bpf/include/bpf/section.h, lib/tailcall.h): the prefix gives the
//!   type; a tail call's slot is in a BTF decl tag `tail:<map>/<slot>` on the function.
//!
//! A section matches a table entry when it equals the entry or continues it with `/…`
//! (`tc/entry` is `tc`), as cilium/ebpf and libbpf match.
/// Program types (`enum bpf_prog_type`, include/uapi/linux/bpf.h: a stable kernel ABI).
pub mod prog_type {
    pub const SOCKET_FILTER: u32 = 1;
    pub const SCHED_CLS: u32 = 3;
    pub const SCHED_ACT: u32 = 4;
    pub const XDP: u32 = 6;
    pub const CGROUP_SKB: u32 = 8;
    pub const CGROUP_SOCK: u32 = 9;
    pub const LWT_IN: u32 = 10;
    pub const LWT_OUT: u32 = 11;
    pub const LWT_XMIT: u32 = 12;
    pub const SOCK_OPS: u32 = 13;
    pub const SK_SKB: u32 = 14;
    pub const SK_MSG: u32 = 16;
    pub const CGROUP_SOCK_ADDR: u32 = 18;
    pub const LWT_SEG6LOCAL: u32 = 19;
    pub const SK_REUSEPORT: u32 = 21;
    pub const FLOW_DISSECTOR: u32 = 22;
    pub const CGROUP_SOCKOPT: u32 = 25;
    pub const SK_LOOKUP: u32 = 30;
}

/// Attach types (`enum bpf_attach_type`), for the program types whose load needs one.
pub mod attach_type {
    pub const CGROUP_INET_INGRESS: u32 = 0;
    pub const CGROUP_INET_EGRESS: u32 = 1;
    pub const CGROUP_INET_SOCK_CREATE: u32 = 2;
    pub const CGROUP_SOCK_OPS: u32 = 3;
    pub const SK_SKB_STREAM_PARSER: u32 = 4;
    pub const SK_SKB_STREAM_VERDICT: u32 = 5;
    pub const SK_MSG_VERDICT: u32 = 7;
    pub const CGROUP_INET4_BIND: u32 = 8;
    pub const CGROUP_INET6_BIND: u32 = 9;
    pub const CGROUP_INET4_CONNECT: u32 = 10;
    pub const CGROUP_INET6_CONNECT: u32 = 11;
    pub const CGROUP_INET4_POST_BIND: u32 = 12;
    pub const CGROUP_INET6_POST_BIND: u32 = 13;
    pub const CGROUP_UDP4_SENDMSG: u32 = 14;
    pub const CGROUP_UDP6_SENDMSG: u32 = 15;
    pub const FLOW_DISSECTOR: u32 = 17;
    pub const CGROUP_UDP4_RECVMSG: u32 = 19;
    pub const CGROUP_UDP6_RECVMSG: u32 = 20;
    pub const CGROUP_GETSOCKOPT: u32 = 21;
    pub const CGROUP_SETSOCKOPT: u32 = 22;
    pub const CGROUP_INET4_GETPEERNAME: u32 = 29;
    pub const CGROUP_INET6_GETPEERNAME: u32 = 30;
    pub const CGROUP_INET4_GETSOCKNAME: u32 = 31;
    pub const CGROUP_INET6_GETSOCKNAME: u32 = 32;
    pub const CGROUP_INET_SOCK_RELEASE: u32 = 34;
    pub const SK_LOOKUP: u32 = 36;
}

use attach_type as at;
use prog_type as pt;

/// (section, program type, expected attach type, kernel name of the type, of the attach type).
/// Longer names first where one is a prefix of another (`cgroup/sock_create` before
/// `cgroup/sock`).
const TABLE: &[(&str, u32, Option<u32>, &str, &str)] = &[
    ("socket", pt::SOCKET_FILTER, None, "socket_filter", ""),
    ("sk_reuseport", pt::SK_REUSEPORT, None, "sk_reuseport", ""),
    ("tc", pt::SCHED_CLS, None, "sched_cls", ""),
    ("tcx", pt::SCHED_CLS, None, "sched_cls", ""),
    ("classifier", pt::SCHED_CLS, None, "sched_cls", ""),
    ("action", pt::SCHED_ACT, None, "sched_act", ""),
    ("xdp", pt::XDP, None, "xdp", ""),
    ("lwt_in", pt::LWT_IN, None, "lwt_in", ""),
    ("lwt_out", pt::LWT_OUT, None, "lwt_out", ""),
    ("lwt_xmit", pt::LWT_XMIT, None, "lwt_xmit", ""),
    (
        "lwt_seg6local",
        pt::LWT_SEG6LOCAL,
        None,
        "lwt_seg6local",
        "",
    ),
    (
        "sockops",
        pt::SOCK_OPS,
        Some(at::CGROUP_SOCK_OPS),
        "sock_ops",
        "cgroup_sock_ops",
    ),
    (
        "sk_skb/stream_parser",
        pt::SK_SKB,
        Some(at::SK_SKB_STREAM_PARSER),
        "sk_skb",
        "sk_skb_stream_parser",
    ),
    (
        "sk_skb/stream_verdict",
        pt::SK_SKB,
        Some(at::SK_SKB_STREAM_VERDICT),
        "sk_skb",
        "sk_skb_stream_verdict",
    ),
    ("sk_skb", pt::SK_SKB, None, "sk_skb", ""),
    (
        "sk_msg",
        pt::SK_MSG,
        Some(at::SK_MSG_VERDICT),
        "sk_msg",
        "sk_msg_verdict",
    ),
    (
        "sk_lookup",
        pt::SK_LOOKUP,
        Some(at::SK_LOOKUP),
        "sk_lookup",
        "sk_lookup",
    ),
    (
        "flow_dissector",
        pt::FLOW_DISSECTOR,
        Some(at::FLOW_DISSECTOR),
        "flow_dissector",
        "flow_dissector",
    ),
    (
        "cgroup_skb/ingress",
        pt::CGROUP_SKB,
        Some(at::CGROUP_INET_INGRESS),
        "cgroup_skb",
        "cgroup_inet_ingress",
    ),
    (
        "cgroup_skb/egress",
        pt::CGROUP_SKB,
        Some(at::CGROUP_INET_EGRESS),
        "cgroup_skb",
        "cgroup_inet_egress",
    ),
    ("cgroup/skb", pt::CGROUP_SKB, None, "cgroup_skb", ""),
    (
        "cgroup/sock_create",
        pt::CGROUP_SOCK,
        Some(at::CGROUP_INET_SOCK_CREATE),
        "cgroup_sock",
        "cgroup_inet_sock_create",
    ),
    (
        "cgroup/sock_release",
        pt::CGROUP_SOCK,
        Some(at::CGROUP_INET_SOCK_RELEASE),
        "cgroup_sock",
        "cgroup_inet_sock_release",
    ),
    (
        "cgroup/sock",
        pt::CGROUP_SOCK,
        Some(at::CGROUP_INET_SOCK_CREATE),
        "cgroup_sock",
        "cgroup_inet_sock_create",
    ),
    (
        "cgroup/post_bind4",
        pt::CGROUP_SOCK,
        Some(at::CGROUP_INET4_POST_BIND),
        "cgroup_sock",
        "cgroup_inet4_post_bind",
    ),
    (
        "cgroup/post_bind6",
        pt::CGROUP_SOCK,
        Some(at::CGROUP_INET6_POST_BIND),
        "cgroup_sock",
        "cgroup_inet6_post_bind",
    ),
    (
        "cgroup/bind4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET4_BIND),
        "cgroup_sock_addr",
        "cgroup_inet4_bind",
    ),
    (
        "cgroup/bind6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET6_BIND),
        "cgroup_sock_addr",
        "cgroup_inet6_bind",
    ),
    (
        "cgroup/connect4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET4_CONNECT),
        "cgroup_sock_addr",
        "cgroup_inet4_connect",
    ),
    (
        "cgroup/connect6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET6_CONNECT),
        "cgroup_sock_addr",
        "cgroup_inet6_connect",
    ),
    (
        "cgroup/sendmsg4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_UDP4_SENDMSG),
        "cgroup_sock_addr",
        "cgroup_udp4_sendmsg",
    ),
    (
        "cgroup/sendmsg6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_UDP6_SENDMSG),
        "cgroup_sock_addr",
        "cgroup_udp6_sendmsg",
    ),
    (
        "cgroup/recvmsg4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_UDP4_RECVMSG),
        "cgroup_sock_addr",
        "cgroup_udp4_recvmsg",
    ),
    (
        "cgroup/recvmsg6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_UDP6_RECVMSG),
        "cgroup_sock_addr",
        "cgroup_udp6_recvmsg",
    ),
    (
        "cgroup/getpeername4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET4_GETPEERNAME),
        "cgroup_sock_addr",
        "cgroup_inet4_getpeername",
    ),
    (
        "cgroup/getpeername6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET6_GETPEERNAME),
        "cgroup_sock_addr",
        "cgroup_inet6_getpeername",
    ),
    (
        "cgroup/getsockname4",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET4_GETSOCKNAME),
        "cgroup_sock_addr",
        "cgroup_inet4_getsockname",
    ),
    (
        "cgroup/getsockname6",
        pt::CGROUP_SOCK_ADDR,
        Some(at::CGROUP_INET6_GETSOCKNAME),
        "cgroup_sock_addr",
        "cgroup_inet6_getsockname",
    ),
    (
        "cgroup/getsockopt",
        pt::CGROUP_SOCKOPT,
        Some(at::CGROUP_GETSOCKOPT),
        "cgroup_sockopt",
        "cgroup_getsockopt",
    ),
    (
        "cgroup/setsockopt",
        pt::CGROUP_SOCKOPT,
        Some(at::CGROUP_SETSOCKOPT),
        "cgroup_sockopt",
        "cgroup_setsockopt",
    ),
];

/// What a section makes of the functions in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgType {
    pub prog_type: u32,
    pub attach_type: Option<u32>,
    /// The kernel's name for the type (`sched_cls`), as bpftool prints it.
    pub name: &'static str,
    /// The attach type's name, empty when the load needs none.
    pub attach_name: &'static str,
}

/// The role of a program section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// A known section: an entry point, or a tail call whose slot is in a BTF decl tag
    /// (`tail` true: the section ends in `/tail`).
    Typed { ty: ProgType, tail: bool },
    /// `<map id>/<slot>`: a tail call, type from the object's entry programs.
    Numbered { map_id: u32, slot: u32 },
    /// Nothing we know.
    Unknown,
}

/// Parses a number as iproute2's section names carry them: decimal or `0x` hex.
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn lookup(name: &str) -> Option<ProgType> {
    TABLE.iter().find_map(|(sec, ty, at, tn, an)| {
        let rest = name.strip_prefix(sec)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(ProgType {
            prog_type: *ty,
            attach_type: *at,
            name: tn,
            attach_name: an,
        })
    })
}

pub fn classify(name: &str) -> Section {
    if let Some((map, slot)) = name.split_once('/')
        && let (Some(map_id), Some(slot)) = (number(map), number(slot))
    {
        return Section::Numbered { map_id, slot };
    }
    match lookup(name) {
        Some(ty) => Section::Typed {
            ty,
            tail: name.ends_with("/tail"),
        },
        None => Section::Unknown,
    }
}

/// The program type of numbered tail-call sections when no entry program in the object says:
/// Cilium's entry function names (pkg/bpf/collection.go `classifyProgramTypes`).
pub fn type_of_entry_function(name: &str) -> Option<ProgType> {
    match name {
        "cil_xdp_entry" => lookup("xdp"),
        "cil_from_container" | "cil_to_container" | "cil_from_netdev" | "cil_from_host"
        | "cil_to_netdev" | "cil_to_host" | "cil_from_network" | "cil_to_overlay"
        | "cil_from_overlay" | "cil_to_wireguard" | "cil_from_wireguard" => lookup("tc"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(name: &str) -> ProgType {
        match classify(name) {
            Section::Typed { ty, .. } => ty,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn cilium_sections_get_their_program_types() {
        assert_eq!(typed("tc").prog_type, pt::SCHED_CLS);
        assert_eq!(typed("tc/entry").prog_type, pt::SCHED_CLS);
        assert_eq!(typed("xdp/entry").prog_type, pt::XDP);
        assert_eq!(typed("classifier").prog_type, pt::SCHED_CLS);
        assert_eq!(
            classify("tc/tail"),
            Section::Typed {
                ty: typed("tc"),
                tail: true
            }
        );
        assert!(
            matches!(classify("xdp/tail"), Section::Typed { tail: true, ty } if ty.prog_type == pt::XDP)
        );
        // A prefix must end at a '/': "tcp" is not "tc".
        assert_eq!(classify("tcp"), Section::Unknown);
    }

    #[test]
    fn cgroup_sections_carry_the_attach_type_the_kernel_checks() {
        let c = typed("cgroup/connect4");
        assert_eq!(
            (c.prog_type, c.attach_type),
            (pt::CGROUP_SOCK_ADDR, Some(10))
        );
        assert_eq!(typed("cgroup/sendmsg6").attach_type, Some(15));
        assert_eq!(typed("cgroup/getpeername4").attach_type, Some(29));
        assert_eq!(typed("cgroup/post_bind4").prog_type, pt::CGROUP_SOCK);
        assert_eq!(typed("cgroup/sock_release").attach_type, Some(34));
        assert_eq!(typed("cgroup/sock").attach_type, Some(2));
        assert_eq!(typed("sk_msg").attach_type, Some(7));
    }

    #[test]
    fn numbered_sections_are_tail_call_slots_in_decimal_or_hex() {
        assert_eq!(classify("2/1"), Section::Numbered { map_id: 2, slot: 1 });
        assert_eq!(
            classify("1/0xffff"),
            Section::Numbered {
                map_id: 1,
                slot: 0xffff
            }
        );
        assert_eq!(classify("2/x"), Section::Unknown);
        assert_eq!(classify("license"), Section::Unknown);
    }

    #[test]
    fn entry_function_names_fall_back_to_cilium_types() {
        assert_eq!(
            type_of_entry_function("cil_xdp_entry").unwrap().prog_type,
            pt::XDP
        );
        assert_eq!(
            type_of_entry_function("cil_from_container")
                .unwrap()
                .prog_type,
            pt::SCHED_CLS
        );
        assert!(type_of_entry_function("main").is_none());
    }
}

//! Canary programs for the attach checks of `preflight probe` / `preflight run`.
//!
//! Each program does the least that proves its hook runs on this kernel, and counts in `COUNTERS`
//! so userspace can tell "attached" from "attached and really ran". The set mirrors the hooks and
//! maps Cilium's datapath depends on: tc (legacy clsact and tcx), XDP, cgroup sock_addr
//! connect4/sendmsg4, tail calls through a program array, LRU hash and LPM trie maps.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action::XDP_PASS},
    macros::{cgroup_sock_addr, classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, ProgramArray, lpm_trie::Key},
    programs::{SockAddrContext, TcContext, XdpContext},
};

/// Counter slots. Userspace reads the same indices (preflight/src/probe/canary/slots.rs).
mod slot {
    pub const TC: u32 = 0;
    pub const TCX: u32 = 1;
    pub const XDP: u32 = 2;
    pub const TAIL: u32 = 3;
    pub const CONNECT4: u32 = 4;
    pub const SENDMSG4: u32 = 5;
    pub const LPM_HIT: u32 = 6;
}

#[map]
static COUNTERS: Array<u64> = Array::with_max_entries(8, 0);

/// Program array in the role of Cilium's CALLS_MAP: the tc program tail-calls slot 0.
#[map]
static CALLS: ProgramArray = ProgramArray::with_max_entries(4, 0);

/// Source address → packets seen, in the role of Cilium's conntrack (an LRU hash).
#[map]
static FLOWS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(64, 0);

/// Prefix → tag, in the role of Cilium's ipcache (an LPM trie). Userspace inserts the prefix.
#[map]
static PREFIXES: LpmTrie<u32, u32> = LpmTrie::with_max_entries(16, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
/// TC_ACT_UNSPEC: for tcx this is TCX_NEXT, so the packet carries on to the next program.
const TC_ACT_UNSPEC: i32 = -1;

#[inline(always)]
fn bump(index: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from the kernel's array map and stays valid for this call.
        unsafe { *counter += 1 };
    }
}

/// Legacy tc (clsact ingress, attached through netlink): record the flow, look the source
/// up in the LPM trie, then tail-call into `canary_tail`.
#[classifier]
pub fn canary_tc(ctx: TcContext) -> i32 {
    bump(slot::TC);
    if let Ok(proto) = ctx.load::<u16>(12)
        && u16::from_be(proto) == ETH_P_IP
        && let Ok(saddr_be) = ctx.load::<u32>(ETH_HLEN + 12)
    {
        let saddr = u32::from_be(saddr_be);
        let seen = FLOWS.get_ptr(saddr).map(|p| unsafe { *p }).unwrap_or(0);
        let _ = FLOWS.insert(saddr, seen + 1, 0);
        // LPM trie keys are compared in network byte order.
        if PREFIXES.get(Key::new(32, saddr_be)).is_some() {
            bump(slot::LPM_HIT);
        }
    }
    // SAFETY: CALLS is a program array whose slot 0 userspace fills with a sched_cls program.
    unsafe { CALLS.tail_call(&ctx, 0) };
    TC_ACT_OK
}

/// The tail-call target; only reachable through `CALLS`.
#[classifier]
pub fn canary_tail(_ctx: TcContext) -> i32 {
    bump(slot::TAIL);
    TC_ACT_OK
}

/// tcx (kernel >= 6.6, attached through a bpf link).
#[classifier]
pub fn canary_tcx(_ctx: TcContext) -> i32 {
    bump(slot::TCX);
    TC_ACT_UNSPEC
}

#[xdp]
pub fn canary_xdp(_ctx: XdpContext) -> u32 {
    bump(slot::XDP);
    XDP_PASS
}

#[cgroup_sock_addr(connect4)]
pub fn canary_connect4(_ctx: SockAddrContext) -> i32 {
    bump(slot::CONNECT4);
    1 // allow
}

#[cgroup_sock_addr(sendmsg4)]
pub fn canary_sendmsg4(_ctx: SockAddrContext) -> i32 {
    bump(slot::SENDMSG4);
    1 // allow
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

// SPDX-License-Identifier: MIT OR GPL-2.0
//! Canary programs for the attach checks of `preflight run`.
//!
//! Each program does the least that proves its hook runs on this kernel, and counts in `COUNTERS`
//! so userspace can tell "attached" from "attached and really ran". The set mirrors the hooks and
//! maps Cilium's datapath depends on: tc (legacy clsact and tcx), XDP, cgroup sock_addr
//! connect4/sendmsg4, tail calls through a program array, LRU hash and LPM trie maps.
//!
//! Built twice by preflight/build.rs: the default object, and with `--features log` one whose
//! programs also say what they saw through aya-log (loaded only at `-vv`). Slot indices and
//! names shared with user space live in `preflight-ebpf-common`.
#![no_std]
#![no_main]
// The BPF target has atomic loads and stores but no compare-and-swap, so core's `AtomicU64`
// has no `fetch_add` there; the intrinsic is what lowers to the BPF atomic add (the way aya's
// maintainers point to: aya-rs/aya#588, #947). The eBPF crate is built with a pinned nightly.
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "core_intrinsics, for atomic_xadd (above)")]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};
#[cfg(feature = "log")]
use core::net::Ipv4Addr;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, xdp_action::XDP_PASS},
    macros::{cgroup_sock_addr, classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, ProgramArray, lpm_trie::Key},
    programs::{SockAddrContext, TcContext, XdpContext},
};
use preflight_ebpf_common::{COUNTER_SLOTS, Counter, TAIL_CALL_SLOT};

/// What a canary saw, as an aya-log debug record: only in the logging build. The default build
/// has neither the log calls nor aya-log's `AYA_LOGS` ring buffer, a map type kernels before 5.8
/// cannot create (a 5.4 node must still run every canary). The default build evaluates only the
/// context, not the other arguments, so they must not have side effects.
macro_rules! saw {
    ($ctx:expr, $($arg:tt)+) => {
        #[cfg(feature = "log")]
        aya_log_ebpf::debug!($ctx, $($arg)+);
        #[cfg(not(feature = "log"))]
        let _ = $ctx;
    };
}

#[map]
static COUNTERS: Array<u64> = Array::with_max_entries(COUNTER_SLOTS, 0);

/// Program array in the role of Cilium's CALLS_MAP: the tc program tail-calls `TAIL_CALL_SLOT`.
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

/// Adds one to the `u64` a map lookup returned; false when the lookup found nothing.
///
/// The programs run on every CPU at once, so the add is atomic. Its result is not used, so LLVM
/// emits the plain BPF atomic add (`lock *(u64 *)(r1 + 0) += r2`, BPF_ATOMIC|BPF_ADD, what
/// C's `__sync_fetch_and_add` gives), which every kernel that runs eBPF accepts; using the
/// result would need BPF_FETCH, kernel 5.12.
#[inline(always)]
fn add_one(value: Option<*mut u64>) -> bool {
    let Some(value) = value else { return false };
    // SAFETY: `value` is what bpf_map_lookup_elem returned for a map with 8-byte values: non-null
    // (the None case is handled above), 8-byte aligned (the kernel aligns map values to 8), and
    // valid until this program returns. Every other write to it is this atomic add, a map
    // helper or the bpf() syscall, so no plain write races with this one.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(value, 1) };
    true
}

#[inline(always)]
fn bump(counter: Counter) {
    add_one(COUNTERS.get_ptr_mut(counter.index()));
}

/// Counts a frame from `saddr` in `FLOWS`; true when it was the first.
#[inline(always)]
fn count_flow(saddr: u32) -> bool {
    if add_one(FLOWS.get_ptr_mut(saddr)) {
        return false;
    }
    // BPF_NOEXIST: a CPU that inserted the entry in the meantime keeps its count; ours is
    // then added to it.
    if FLOWS.insert(saddr, 1, u64::from(BPF_NOEXIST)).is_ok() {
        return true;
    }
    add_one(FLOWS.get_ptr_mut(saddr));
    false
}

/// Legacy tc (clsact ingress, attached through netlink): record the flow, look the source
/// up in the LPM trie, then tail-call into `canary_tail`.
#[classifier]
pub fn canary_tc(ctx: TcContext) -> i32 {
    bump(Counter::Tc);
    if let Ok(proto) = ctx.load::<u16>(12)
        && u16::from_be(proto) == ETH_P_IP
        && let Ok(saddr_be) = ctx.load::<u32>(ETH_HLEN + 12)
    {
        let saddr = u32::from_be(saddr_be);
        #[cfg_attr(not(feature = "log"), expect(unused_variables, reason = "only logged"))]
        let first = count_flow(saddr);
        // LPM trie keys are compared in network byte order.
        let hit = PREFIXES.get(Key::new(32, saddr_be)).is_some();
        if hit {
            bump(Counter::LpmHit);
        }
        saw!(
            &ctx,
            "tc ingress: IPv4 from {}, new in FLOWS: {}, matched in PREFIXES: {}",
            Ipv4Addr::from_bits(saddr),
            yes_no(first),
            yes_no(hit)
        );
    } else {
        saw!(&ctx, "tc ingress: non-IPv4 frame of {} bytes", ctx.len());
    }
    // SAFETY: on success control jumps to `canary_tail` and never comes back, so nothing of this
    // frame runs or is dropped afterwards: it holds no value with a destructor. CALLS holds only
    // the sched_cls program user space puts in TAIL_CALL_SLOT; when the call fails (empty slot)
    // it returns and we carry on below.
    unsafe { CALLS.tail_call(&ctx, TAIL_CALL_SLOT) };
    saw!(
        &ctx,
        "tc ingress: tail call to slot {} failed",
        TAIL_CALL_SLOT
    );
    TC_ACT_OK
}

/// The tail-call target; only reachable through `CALLS`.
#[classifier]
pub fn canary_tail(ctx: TcContext) -> i32 {
    bump(Counter::Tail);
    saw!(&ctx, "tail call arrived: frame of {} bytes", ctx.len());
    TC_ACT_OK
}

/// tcx (kernel >= 6.6, attached through a bpf link).
#[classifier]
pub fn canary_tcx(ctx: TcContext) -> i32 {
    bump(Counter::Tcx);
    saw!(&ctx, "tcx egress: frame of {} bytes", ctx.len());
    TC_ACT_UNSPEC
}

#[xdp]
pub fn canary_xdp(ctx: XdpContext) -> u32 {
    bump(Counter::Xdp);
    saw!(
        &ctx,
        "xdp: frame of {} bytes on ifindex {}",
        ctx.data_end() - ctx.data(),
        ctx.ingress_ifindex()
    );
    XDP_PASS
}

#[cgroup_sock_addr(connect4)]
pub fn canary_connect4(ctx: SockAddrContext) -> i32 {
    bump(Counter::Connect4);
    saw!(&ctx, "connect4: to {}:{}", dest_ip(&ctx), dest_port(&ctx));
    1 // allow
}

#[cgroup_sock_addr(sendmsg4)]
pub fn canary_sendmsg4(ctx: SockAddrContext) -> i32 {
    bump(Counter::Sendmsg4);
    saw!(&ctx, "sendmsg4: to {}:{}", dest_ip(&ctx), dest_port(&ctx));
    1 // allow
}

/// Destination address of the socket call a sock_addr program runs for.
#[cfg(feature = "log")]
#[inline(always)]
fn dest_ip(ctx: &SockAddrContext) -> Ipv4Addr {
    // SAFETY: the kernel hands a sock_addr program a valid `struct bpf_sock_addr`; this is a
    // plain 4-byte read of one of its fields, which the verifier checks (offset, size, read
    // access) and rewrites into a read of the kernel's own structure.
    let ip = unsafe { (*ctx.sock_addr).user_ip4 };
    Ipv4Addr::from_bits(u32::from_be(ip))
}

/// Destination port of the socket call a sock_addr program runs for.
#[cfg(feature = "log")]
#[inline(always)]
fn dest_port(ctx: &SockAddrContext) -> u16 {
    // SAFETY: as in `dest_ip`: a verifier-checked 4-byte read of a field of the context.
    let port = unsafe { (*ctx.sock_addr).user_port };
    // Network byte order, in the low 16 bits.
    u16::from_be(port as u16)
}

#[cfg(feature = "log")]
const fn yes_no(answer: bool) -> &'static str {
    if answer { "yes" } else { "no" }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// The licence the kernel reads: this crate is MIT OR GPL-2.0, and "Dual MIT/GPL" is one of the
/// strings the kernel counts as GPL-compatible (include/linux/license.h), so GPL-only helpers
/// stay usable. None of the helpers these programs call is GPL-only today (docs/probe.md).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

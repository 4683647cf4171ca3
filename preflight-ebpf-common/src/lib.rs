// SPDX-License-Identifier: MIT OR GPL-2.0
//! What the canary programs (`preflight-ebpf`, built for the BPF target) and the canary worker
//! (`preflight/src/probe/canary/`) must agree on: counter slots, map and program names, the
//! tail-call slot. One copy, compiled into both sides (the aya template's `-common` crate).
//!
//! `no_std` because the eBPF side has no standard library. The names cannot be handed to the
//! eBPF crate's `#[map]`/`#[classifier]` macros (those take the item's own identifier), so a
//! unit test in `probe::canary` checks that every name here is in the built object.
#![cfg_attr(not(test), no_std)]

/// The slots of the [`maps::COUNTERS`] array: each canary program adds one to its own slot
/// every time it runs, so user space can tell "attached" from "attached and really ran".
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// `canary_tc` ran (legacy tc, clsact ingress).
    Tc = 0,
    /// `canary_tcx` ran (tcx link).
    Tcx = 1,
    /// `canary_xdp` ran.
    Xdp = 2,
    /// `canary_tail` ran: the tail call from `canary_tc` arrived.
    Tail = 3,
    /// `canary_connect4` ran.
    Connect4 = 4,
    /// `canary_sendmsg4` ran.
    Sendmsg4 = 5,
    /// `canary_tc`'s lookup in [`maps::PREFIXES`] matched.
    LpmHit = 6,
}

impl Counter {
    /// Every slot, in index order.
    pub const ALL: [Self; 7] = [
        Self::Tc,
        Self::Tcx,
        Self::Xdp,
        Self::Tail,
        Self::Connect4,
        Self::Sendmsg4,
        Self::LpmHit,
    ];

    /// The array index of this slot.
    pub const fn index(self) -> u32 {
        self as u32
    }
}

/// Entries of the [`maps::COUNTERS`] array (room for one more slot than [`Counter::ALL`]).
pub const COUNTER_SLOTS: u32 = 8;

// Every slot fits the array, and `ALL` lists each index once, in order.
const _: () = {
    assert!(Counter::ALL.len() as u32 <= COUNTER_SLOTS);
    let mut i = 0;
    while i < Counter::ALL.len() {
        assert!(Counter::ALL[i].index() == i as u32);
        i += 1;
    }
};

/// The slot of [`maps::CALLS`] that `canary_tc` tail-calls and user space fills with
/// `canary_tail`.
pub const TAIL_CALL_SLOT: u32 = 0;

/// Map names in the object (the statics' identifiers in `preflight-ebpf`).
pub mod maps {
    /// `Array<u64>` of [`COUNTER_SLOTS`](crate::COUNTER_SLOTS) run counters, see
    /// [`Counter`](crate::Counter).
    pub const COUNTERS: &str = "COUNTERS";
    /// Program array in the role of Cilium's CALLS_MAP.
    pub const CALLS: &str = "CALLS";
    /// LRU hash in the role of Cilium's conntrack: IPv4 source address (host byte order `u32`)
    /// → packets seen (`u64`).
    pub const FLOWS: &str = "FLOWS";
    /// LPM trie in the role of Cilium's ipcache: IPv4 prefix (network byte order `u32`) → tag
    /// (`u32`). User space inserts the prefix.
    pub const PREFIXES: &str = "PREFIXES";
    /// aya-log's ring buffer, only in the logging build (`--features log`).
    pub const AYA_LOGS: &str = "AYA_LOGS";
}

/// Program names in the object (the functions' identifiers in `preflight-ebpf`).
pub mod programs {
    pub const TC: &str = "canary_tc";
    pub const TAIL: &str = "canary_tail";
    pub const TCX: &str = "canary_tcx";
    pub const XDP: &str = "canary_xdp";
    pub const CONNECT4: &str = "canary_connect4";
    pub const SENDMSG4: &str = "canary_sendmsg4";
    /// Every program, for checks that the object holds them all.
    pub const ALL: [&str; 6] = [TC, TAIL, TCX, XDP, CONNECT4, SENDMSG4];
}

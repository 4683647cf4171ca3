//! Which cilium-agent wrote a `node_config.h` found in a state dir, judged from the macros
//! only some versions write ([`NODE_CONFIG_MARKERS`], read from the agents of 1.16.15, 1.18.3
//! and 1.20.0-dev). The answer is a range: the versions between two read ones were not read,
//! so a header matching 1.18's markers may come from 1.17 to 1.19. When no read version
//! matches every marker, the answer is "cannot tell", not a guess.
use std::collections::BTreeSet;

use super::agent_facts::{NODE_CONFIG_MARKERS, READ_MINORS};
use crate::host::state::macros;

/// The oldest minor preflight has compile facts for.
const OLDEST: u32 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGuess {
    /// Inclusive range of minors; `None` as upper bound: that version or newer.
    pub from: u32,
    pub to: Option<u32>,
    /// The read agent versions the header matches.
    pub matched: Vec<u32>,
    /// The header is a bpf dir's dummy copied into the state dir.
    pub dummy: bool,
}

impl VersionGuess {
    pub fn contains(&self, minor: u32) -> bool {
        !self.dummy && minor >= self.from && self.to.is_none_or(|to| minor <= to)
    }

    pub fn label(&self) -> String {
        if self.dummy {
            return "a bpf dir's dummy header (test values), not an agent".into();
        }
        let range = match self.to {
            Some(to) if to == self.from => format!("1.{to}"),
            Some(to) => format!("1.{}–1.{to}", self.from),
            None => format!("1.{} or newer", self.from),
        };
        let matched: Vec<String> = self.matched.iter().map(|m| format!("1.{m}")).collect();
        format!(
            "Cilium {range} (its macros match what the {} agent writes)",
            matched.join(" and ")
        )
    }
}

/// The range of minors a read version's facts stand for: from the one after the previous read
/// version to the one before the next.
fn neighbourhood(i: usize) -> (u32, Option<u32>) {
    let from = if i == 0 {
        OLDEST
    } else {
        READ_MINORS[i - 1] + 1
    };
    let to = READ_MINORS.get(i + 1).map(|next| next - 1);
    (from, to)
}

/// Judges a header's text; None when it cannot tell.
pub fn judge(text: &str) -> Option<VersionGuess> {
    if text.contains("test_cilium_") || text.contains("dummy header") {
        return Some(VersionGuess {
            from: 0,
            to: Some(0),
            matched: Vec::new(),
            dummy: true,
        });
    }
    judge_macros(&macros(text))
}

pub fn judge_macros(present: &BTreeSet<String>) -> Option<VersionGuess> {
    // No marker at all: not an agent's node_config.h we can place.
    if !NODE_CONFIG_MARKERS
        .iter()
        .any(|(name, _)| present.contains(*name))
    {
        return None;
    }
    let matching: Vec<usize> = (0..READ_MINORS.len())
        .filter(|i| {
            NODE_CONFIG_MARKERS
                .iter()
                .all(|(name, written)| written[*i] == present.contains(*name))
        })
        .collect();
    let first = *matching.first()?;
    let last = *matching.last()?;
    Some(VersionGuess {
        from: neighbourhood(first).0,
        to: neighbourhood(last).1,
        matched: matching.iter().map(|i| READ_MINORS[*i]).collect(),
        dummy: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn marker_sets_map_to_ranges_and_mixed_sets_cannot_be_told() {
        let v16 = judge_macros(&set(&[
            "HOST_IFINDEX",
            "CILIUM_IFINDEX",
            "ENDPOINTS_MAP",
            "L2_RESPONSER_MAP4_SIZE",
            "MTU",
            "KERNEL_HZ",
            "EPHEMERAL_MIN",
        ]))
        .unwrap();
        assert_eq!((v16.from, v16.to), (14, Some(17)));
        assert!(v16.contains(15) && !v16.contains(18));
        assert!(v16.label().contains("1.14–1.17"), "{}", v16.label());
        let v18 = judge_macros(&set(&[
            "CILIUM_HOST_IFINDEX",
            "CILIUM_NET_IFINDEX",
            "EVENTS_MAP_RATE_LIMIT",
            "L2_RESPONDER_MAP4_SIZE",
            "MTU",
            "KERNEL_HZ",
            "EPHEMERAL_MIN",
        ]))
        .unwrap();
        assert_eq!((v18.from, v18.to), (17, Some(19)));
        let v20 = judge_macros(&set(&[
            "INGRESS_ID",
            "L2_RESPONDER_MAP6_SIZE",
            "L2_RESPONDER_MAP4_SIZE",
        ]))
        .unwrap();
        assert_eq!((v20.from, v20.to), (19, None));
        assert!(v20.label().contains("1.19 or newer"));
        // 1.16's and 1.18's markers at once: no agent writes that.
        assert_eq!(
            judge_macros(&set(&["HOST_IFINDEX", "CILIUM_HOST_IFINDEX"])),
            None
        );
        assert_eq!(judge_macros(&set(&["FOO"])), None);
        assert!(judge("#define X test_cilium_lxc\n").unwrap().dummy);
    }
}

//! A tree's dummy header turned into the body of a generated one. The dummy `node_config.h`
//! is what the tree's own test build compiles with: every macro the sources need, with test
//! values. The agent's header has the same names (it is what the dummy stands in for), so the
//! generated header keeps the dummy's structure and drops what the agent writes elsewhere or
//! differently:
//!
//! - `#define` lines of names preflight writes itself (the agent's values for these settings);
//! - whole `#ifndef NAME … #endif` blocks that only provide a default for such a name, or for
//!   a name that belongs to another header (the endpoint's, a per-program `-D` flag) or is a
//!   test-only override (`__CLUSTERMESH_HELPERS__`);
//! - comments (the dummy says it is a dummy);
//!
//! and renames the test map names (`test_cilium_lxc` → `cilium_lxc`). Conditionals stay, so
//! the body follows the `ENABLE_*` switches written above it as the tree's own build does.
use std::collections::BTreeSet;

use super::tree_scan::{define_name, directive, logical_lines, strip_comments};

/// The dummy's prefix for map names; the agent's names have none.
const TEST_MAP_PREFIX: &str = "test_cilium_";

/// The body of a generated header from a dummy: `drop_defines` lose their `#define` lines,
/// `drop_blocks` lose their `#ifndef NAME` default blocks (and their `#define` lines too).
pub fn body(
    dummy: &str,
    drop_defines: &BTreeSet<String>,
    drop_blocks: &BTreeSet<String>,
) -> String {
    let clean = strip_comments(dummy);
    let lines = logical_lines(&clean);
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        match directive(line) {
            Some(("ifndef", rest))
                if define_name(rest).is_some_and(|n| drop_blocks.contains(n)) =>
            {
                i = skip_if_branch(&lines, i, &mut out, drop_defines, drop_blocks);
                continue;
            }
            Some(("define", rest))
                if define_name(rest)
                    .is_some_and(|n| drop_defines.contains(n) || drop_blocks.contains(n)) =>
            {
                i += 1;
                continue;
            }
            Some(("pragma", _)) => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if !line.trim().is_empty() {
            out.push_str(&line.replace(TEST_MAP_PREFIX, "cilium_"));
            out.push('\n');
        }
        i += 1;
    }
    out
}

/// Skips the branch after `#ifndef` at `start` up to its `#else` / `#endif` (nested
/// conditionals included). An `#else` branch is kept, without its directives. Returns the
/// index after the matching `#endif`.
fn skip_if_branch(
    lines: &[String],
    start: usize,
    out: &mut String,
    drop_defines: &BTreeSet<String>,
    drop_blocks: &BTreeSet<String>,
) -> usize {
    let mut depth = 0usize;
    let mut in_else = false;
    let mut i = start + 1;
    while i < lines.len() {
        let d = directive(&lines[i]);
        match d {
            Some(("if" | "ifdef" | "ifndef", _)) => depth += 1,
            Some(("endif", _)) if depth == 0 => return i + 1,
            Some(("endif", _)) => depth -= 1,
            Some(("else", _)) if depth == 0 => {
                in_else = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        let dropped = matches!(d, Some(("define", rest))
            if define_name(rest).is_some_and(|n| drop_defines.contains(n) || drop_blocks.contains(n)));
        if in_else && !dropped && !lines[i].trim().is_empty() {
            out.push_str(&lines[i].replace(TEST_MAP_PREFIX, "cilium_"));
            out.push('\n');
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn drops_owned_names_and_default_blocks_keeps_conditionals() {
        let dummy = "/* This is just a dummy header */\n#pragma once\n#include \"lib/utils.h\"\n\
            #define TUNNEL_PORT 8472\n\
            #ifndef THIS_INTERFACE_MAC\nDEFINE_MAC(THIS_INTERFACE_MAC, 1, 2);\n#define THIS_INTERFACE_MAC fetch_mac(THIS_INTERFACE_MAC)\n#endif\n\
            #ifdef ENABLE_NODEPORT\n#define SNAT_MAPPING_IPV4 test_cilium_snat_v4_external\n#define NODEPORT_NEIGH4_SIZE 524288\n#endif\n\
            #define VLAN_FILTER(ifindex, vlan_id) switch (ifindex) { \\\ncase 1: \\\nreturn true; \\\n}\n\
            #ifndef __CLUSTERMESH_HELPERS__\n#define __CLUSTERMESH_HELPERS__\n#define IDENTITY_LEN 16\n#endif\n\
            #define CALLS_MAP test_cilium_calls_65535\n";
        let b = body(
            dummy,
            &set(&["TUNNEL_PORT", "NODEPORT_NEIGH4_SIZE", "CALLS_MAP"]),
            &set(&["THIS_INTERFACE_MAC", "__CLUSTERMESH_HELPERS__"]),
        );
        assert!(!b.contains("dummy") && !b.contains("pragma"), "{b}");
        assert!(b.contains("#include \"lib/utils.h\""));
        assert!(!b.contains("TUNNEL_PORT") && !b.contains("CALLS_MAP"));
        assert!(
            !b.contains("DEFINE_MAC") && !b.contains("IDENTITY_LEN"),
            "{b}"
        );
        assert!(
            b.contains(
                "#ifdef ENABLE_NODEPORT\n#define SNAT_MAPPING_IPV4 cilium_snat_v4_external\n#endif"
            ),
            "{b}"
        );
        assert!(
            b.contains("#define VLAN_FILTER(ifindex, vlan_id) switch (ifindex) {"),
            "{b}"
        );
    }

    proptest::proptest! {
        /// Any text (a hostile or broken tree's dummy): no panic, and no dropped name survives
        /// as a `#define` at the start of a line.
        #[test]
        fn never_panics_and_drops_what_it_must(text in "(#ifndef X\n|#define X 1\n|#else\n|#endif\n|/\\*|\\*/|\\\\\n|[ -~\n\u{e9}])*") {
            let out = body(&text, &set(&["X"]), &set(&["X"]));
            proptest::prop_assert!(!out.lines().any(|l| l.trim_start().starts_with("#define X ")));
        }
    }

    #[test]
    fn an_else_branch_survives_the_dropped_default() {
        let b = body(
            "#ifndef X\n#define X 1\n#else\n#define Y 2\n#endif\nZ\n",
            &BTreeSet::new(),
            &set(&["X"]),
        );
        assert_eq!(b, "#define Y 2\nZ\n");
    }
}

//! Cilium state left on the node by an earlier or failed install
//! (docs/upstream.md#the-calls_map-incident): the generated node_config.h, endpoint templates,
//! pinned maps, /var/lib/cilium.
use std::collections::BTreeSet;

use super::{HostRoot, ReadError};

pub const STATE_DIR: &str = "/var/run/cilium/state";
pub const NODE_CONFIG: &str = "/var/run/cilium/state/globals/node_config.h";

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfigHeader {
    pub file: String,
    pub macros: BTreeSet<String>,
    /// The dummy test header from the bpf dir, not a generated one.
    pub dummy: bool,
    /// Which Cilium versions could have written it, judged from its macro set (inferred).
    pub written_by: Generation,
}

/// Cilium generations told apart by node_config.h's macro set. Inferred from the headers'
/// history (cilium/cilium bpf/node_config.h and bpf/include/bpf/config/node.h): 1.18 moved the
/// interface indexes to runtime config (`CILIUM_NET_IFINDEX`/`CILIUM_HOST_IFINDEX` in the
/// deprecated header), older ones define `HOST_IFINDEX`/`CILIUM_IFINDEX`; ≤1.13 had
/// `ENCAP_IFINDEX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    UpTo113,
    From114To117,
    From118,
    Unknown,
}

impl Generation {
    pub fn label(self) -> &'static str {
        match self {
            Self::UpTo113 => "Cilium 1.13 or older",
            Self::From114To117 => "Cilium 1.14 to 1.17",
            Self::From118 => "Cilium 1.18 or newer",
            Self::Unknown => "an unrecognised Cilium version",
        }
    }
}

pub fn classify(macros: &BTreeSet<String>) -> Generation {
    let has = |m: &str| macros.contains(m);
    if has("ENCAP_IFINDEX") {
        Generation::UpTo113
    } else if has("CILIUM_NET_IFINDEX") || has("CILIUM_HOST_IFINDEX") {
        Generation::From118
    } else if has("HOST_IFINDEX") || has("CILIUM_IFINDEX") {
        Generation::From114To117
    } else {
        Generation::Unknown
    }
}

/// `#define NAME` lines (any spacing, `# define` too).
pub fn macros(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix('#')?.trim_start();
            let rest = rest.strip_prefix("define")?;
            if !rest.starts_with([' ', '\t']) {
                return None;
            }
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CiliumState {
    pub node_config: Option<NodeConfigHeader>,
    /// Problems reading it (file and line).
    pub problems: Vec<String>,
    /// Template hashes under state/templates.
    pub templates: Vec<String>,
    /// Why state/templates could not be listed (it exists but is unreadable).
    pub templates_problem: Option<String>,
    /// Pin dirs that exist but could not be listed.
    pub pins_problems: Vec<String>,
    /// Whether /var/run/cilium exists at all.
    pub run_dir: bool,
    /// `cilium_*` pins under /sys/fs/bpf (tc/globals and the top level).
    pub pins: Vec<String>,
    pub var_lib_cilium: bool,
}

pub fn gather(host: &HostRoot) -> CiliumState {
    let mut state = CiliumState {
        run_dir: host.is_dir("/var/run/cilium"),
        var_lib_cilium: host.is_dir("/var/lib/cilium"),
        ..Default::default()
    };
    match host.read_text(NODE_CONFIG) {
        Ok(text) => {
            let macros = macros(&text);
            state.node_config = Some(NodeConfigHeader {
                file: host.display(NODE_CONFIG),
                dummy: text.contains("dummy header"),
                written_by: classify(&macros),
                macros,
            });
        }
        Err(ReadError::NotFound(_)) => {}
        Err(e) => state.problems.push(e.to_string()),
    }
    match host.read_dir_if_present(&format!("{STATE_DIR}/templates")) {
        Ok(names) => state.templates = names,
        Err(e) => state.templates_problem = Some(e.to_string()),
    }
    for dir in ["/sys/fs/bpf/tc/globals", "/sys/fs/bpf"] {
        match host.read_dir_if_present(dir) {
            Ok(names) => state.pins.extend(
                names
                    .into_iter()
                    .filter(|n| n.starts_with("cilium_"))
                    .map(|n| format!("{dir}/{n}")),
            ),
            Err(e) => state.pins_problems.push(e.to_string()),
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_sets_tell_generations_apart() {
        let old =
            macros("#define HOST_IFINDEX 2\n# define  CILIUM_IFINDEX 3\n#ifndef X\n#define\n");
        assert_eq!(old.len(), 2);
        assert_eq!(classify(&old), Generation::From114To117);
        assert_eq!(
            classify(&macros("#define CILIUM_HOST_IFINDEX 5\n")),
            Generation::From118
        );
        assert_eq!(
            classify(&macros("#define ENCAP_IFINDEX 5\n")),
            Generation::UpTo113
        );
        assert_eq!(classify(&macros("garbage\n")), Generation::Unknown);
    }
}

//! The headers cilium-agent generates at run time, written from the target into a state dir
//! shaped like /var/run/cilium/state: `globals/node_config.h`, `templates/<sha256>/ep_config.h`,
//! `netdev_config.h`. Which macros node_config.h carries changes between versions; the table
//! below is our model of that (our own names where Cilium's do not matter), and the same table
//! lets [`judge_version`] tell which version wrote a header found on a node. The datapath modes
//! (`ENABLE_NODEPORT`, `ENABLE_HOST_ROUTING`) and the kernel feature headers come from
//! [`features`](super::features).
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{
    features::{self, Features},
    profile::{NEWEST, OLDEST, Profile},
};
use crate::{cilium::Target, host::state::macros, probe::ProbeReport};

/// A node_config.h macro that only some versions write: (name, value, first minor, last minor).
const VERSIONED_NODE_MACROS: &[(&str, &str, u32, u32)] = &[
    ("CT_REPORT_FLAGS", "0x0002", 14, 14),
    ("LB_SERVICES_V2", "1", 14, 15),
    ("CT_REPORT_INTERVAL", "5", 14, 16),
    ("ENABLE_HEALTH_CHECK_SOCKET", "1", 16, NEWEST),
    ("SNAT_COLLISION_RETRIES", "128", 17, NEWEST),
    ("ENABLE_DROP_NOTIFY_V2", "1", 18, NEWEST),
];

/// The generated template ep_config.h defines these without guards: with a dummy node_config.h
/// in the include path they collide (docs/upstream.md#the-calls_map-incident).
pub const EP_TEMPLATE_CALLS_MAP: &str = "cilium_calls_65535";

pub struct Generated {
    pub node_config: String,
    pub ep_config: String,
    pub netdev_config: String,
    /// The agent's feature and mode decisions: `HAVE_*` for the bpf dir's feature headers,
    /// NodePort and host routing for node_config.h.
    pub features: Features,
    /// sha256 of the endpoint configuration: the template directory's name.
    pub template_hash: String,
}

/// Where each generated header goes inside a state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    pub root: PathBuf,
    /// The endpoint template's directory under `templates/` (bpf_lxc).
    pub template_hash: String,
    /// The host endpoint's (bpf_host): its own configuration, so its own hash on a real
    /// agent; the built-in templates share one.
    pub host_template_hash: String,
}

impl StateLayout {
    pub fn new(root: PathBuf, template_hash: String) -> Self {
        Self {
            root,
            host_template_hash: template_hash.clone(),
            template_hash,
        }
    }
    pub fn globals(&self) -> PathBuf {
        self.root.join("globals")
    }
    pub fn template_dir(&self) -> PathBuf {
        self.root.join("templates").join(&self.template_hash)
    }
    pub fn host_template_dir(&self) -> PathBuf {
        self.root.join("templates").join(&self.host_template_hash)
    }
    pub fn host_ep_config(&self) -> PathBuf {
        self.host_template_dir().join("ep_config.h")
    }
    pub fn filter_config(&self) -> PathBuf {
        self.root.join("filter_config.h")
    }
    pub fn node_config(&self) -> PathBuf {
        self.globals().join("node_config.h")
    }
    pub fn ep_config(&self) -> PathBuf {
        self.template_dir().join("ep_config.h")
    }
    pub fn netdev_config(&self) -> PathBuf {
        self.root.join("netdev_config.h")
    }
    /// The generated path that shadows a dummy header of this name in the bpf dir.
    pub fn generated_for(&self, dummy_name: &str) -> Option<PathBuf> {
        match dummy_name {
            "node_config.h" => Some(self.node_config()),
            "ep_config.h" => Some(self.ep_config()),
            "netdev_config.h" => Some(self.netdev_config()),
            "filter_config.h" => Some(self.filter_config()),
            _ => None,
        }
    }
}

/// Monitor aggregation levels as the values file names them.
fn monitor_aggregation(level: &str) -> u32 {
    match level {
        "none" => 0,
        "low" => 1,
        "medium" => 3,
        _ => 4,
    }
}

/// The headers for `target`; `probes` are the node's live probe results (None: every kernel
/// feature assumed present).
pub fn generate(profile: &Profile, target: &Target, probes: Option<&ProbeReport>) -> Generated {
    let features = features::derive(profile, target, probes);
    let mut node = String::new();
    let _ = writeln!(node, "/* node configuration (generated) */");
    let mut def = |name: &str, value: &str| {
        let _ = writeln!(node, "#define {name} {value}");
    };
    def("ENABLE_IPV4", "1");
    def("IPV4_NODE_ADDR", "0x012a0a0a");
    def("HOST_IFINDEX", "1");
    def("CT_MAP_SIZE_TCP", "524288");
    def("IPCACHE_MAP_SIZE", "512000");
    match super::nodeinit::tunnel(target) {
        Some((_, port)) => {
            def("ENCAP_IFINDEX", "2");
            def("TUNNEL_PORT", &port.to_string());
        }
        None => def("ENCAP_IFINDEX", "0"),
    }
    // Like the agent, host routing is only ever written together with NodePort.
    if features.nodeport {
        def("ENABLE_NODEPORT", "1");
        def("NODEPORT_NEIGH4_SIZE", "524288");
        if features.host_routing {
            def("ENABLE_HOST_ROUTING", "1");
        }
    }
    for (name, value, from, to) in VERSIONED_NODE_MACROS {
        if (*from..=*to).contains(&profile.minor.min(NEWEST)) {
            def(name, value);
        }
    }
    let ep_config = format!(
        "/* endpoint template configuration (generated) */\n\
         #define LXC_ID 3663\n\
         #define SECLABEL 2\n\
         #define LXC_IPV4 0x0a2a000a\n\
         #define CALLS_MAP {EP_TEMPLATE_CALLS_MAP}\n\
         #define ENABLE_ARP_RESPONDER 1\n\
         #define MONITOR_AGGREGATION {}\n",
        monitor_aggregation(
            target
                .value("bpf.monitorAggregation")
                .as_ref()
                .and_then(|v| v.as_str())
                .unwrap_or("medium")
        )
    );
    let netdev_config = "/* device configuration (generated) */\n\
                         #define NATIVE_DEV_IFINDEX 3\n\
                         #define DIRECT_ROUTING_DEV_IFINDEX 3\n"
        .to_string();
    let template_hash = format!("{:x}", Sha256::digest(ep_config.as_bytes()));
    Generated {
        node_config: node,
        ep_config,
        netdev_config,
        features,
        template_hash,
    }
}

impl Generated {
    pub fn layout(&self, root: &Path) -> StateLayout {
        StateLayout::new(root.to_path_buf(), self.template_hash.clone())
    }

    /// Writes the headers into `root`; `skip_node_config` leaves globals/node_config.h out (the
    /// agent's datapath init failed before writing it).
    pub fn write(&self, root: &Path, skip_node_config: bool) -> std::io::Result<StateLayout> {
        let layout = self.layout(root);
        std::fs::create_dir_all(layout.globals())?;
        std::fs::create_dir_all(layout.template_dir())?;
        if !skip_node_config {
            std::fs::write(layout.node_config(), &self.node_config)?;
        }
        std::fs::write(layout.ep_config(), &self.ep_config)?;
        std::fs::write(layout.netdev_config(), &self.netdev_config)?;
        Ok(layout)
    }
}

/// Every macro some modelled version's node_config.h defines (names the sources expect from it).
pub fn versioned_node_macros() -> impl Iterator<Item = String> {
    VERSIONED_NODE_MACROS.iter().map(|(n, ..)| n.to_string())
}

/// Whether some version's node_config.h defines this macro (a name the sources expect from the
/// generated header rather than define themselves).
pub fn is_versioned_node_macro(name: &str) -> bool {
    VERSIONED_NODE_MACROS.iter().any(|(n, ..)| *n == name)
}

/// Which Cilium minors would have written a node_config.h with this macro set: the minors whose
/// versioned macros match best. Returns e.g. "1.18" or "1.16-1.17"; None when nothing matches.
pub fn judge_version(text: &str) -> Option<String> {
    let present = macros(text);
    if !VERSIONED_NODE_MACROS
        .iter()
        .any(|(n, ..)| present.contains(*n))
    {
        return None;
    }
    let score = |minor: u32| -> i32 {
        VERSIONED_NODE_MACROS
            .iter()
            .map(|(name, _, from, to)| {
                let expected = (*from..=*to).contains(&minor);
                if expected == present.contains(*name) {
                    1
                } else {
                    -1
                }
            })
            .sum()
    };
    let best = (OLDEST..=NEWEST).map(score).max()?;
    let minors: Vec<u32> = (OLDEST..=NEWEST).filter(|m| score(*m) == best).collect();
    let label = |m: u32| {
        if m == NEWEST {
            format!("1.{m}+")
        } else {
            format!("1.{m}")
        }
    };
    Some(match (minors.first(), minors.last()) {
        (Some(a), Some(b)) if a == b => label(*a),
        (Some(a), Some(b)) => format!("{}-{}", label(*a), label(*b)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::profile::for_minor;

    #[test]
    fn each_versions_header_is_judged_as_that_version() {
        for minor in OLDEST..=NEWEST {
            let g = generate(&for_minor(minor), &Target::default(), None);
            let want = if minor == NEWEST {
                format!("1.{minor}+")
            } else {
                format!("1.{minor}")
            };
            assert_eq!(judge_version(&g.node_config).as_deref(), Some(&*want));
        }
        assert_eq!(judge_version("#define FOO 1\n"), None);
    }

    #[test]
    fn generated_node_config_leaves_endpoint_macros_to_ep_config() {
        let g = generate(&for_minor(18), &Target::default(), None);
        let node = macros(&g.node_config);
        for m in ["CALLS_MAP", "ENABLE_ARP_RESPONDER", "MONITOR_AGGREGATION"] {
            assert!(!node.contains(m), "{m} in node_config.h");
            assert!(macros(&g.ep_config).contains(m), "{m} not in ep_config.h");
        }
        assert_eq!(g.template_hash.len(), 64);
    }
}

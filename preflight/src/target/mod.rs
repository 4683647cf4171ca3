//! The target of a preflight: which Cilium version, with which settings, and therefore which
//! capabilities the node must have.
mod capability;

use std::collections::BTreeSet;

pub use capability::Capability;
use serde::{Deserialize, Serialize};

/// The newest Cilium minor we ship facts for; the default target.
pub const DEFAULT_CILIUM_VERSION: &str = "1.18.4";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub cilium_version: String,
    /// Capabilities the target needs, derived from its values.
    pub capabilities: BTreeSet<Capability>,
}

impl Target {
    /// The chart's defaults: VXLAN tunnel, kube-proxy kept, L7 proxy on.
    pub fn chart_defaults(cilium_version: &str) -> Self {
        Self {
            cilium_version: cilium_version.to_string(),
            capabilities: [
                Capability::BaseDatapath,
                Capability::TunnelVxlan,
                Capability::L7Proxy,
            ]
            .into(),
        }
    }

    pub fn needs(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

impl Default for Target {
    fn default() -> Self {
        Self::chart_defaults(DEFAULT_CILIUM_VERSION)
    }
}

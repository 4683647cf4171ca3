use serde::{Deserialize, Serialize};

// The node a report is about, as it reports itself. (A `//` comment: doc comments
// become descriptions in the published JSON Schema.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Node {
    pub hostname: String,
    pub kernel_release: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distro: Option<String>,
    pub arch: String,
    /// The root facts were read from (`/` on the node itself, `/host` in a Job).
    pub root: String,
    /// Whether live probes (bpf(), netlink, mounts) ran against this root's kernel.
    pub live: bool,
}

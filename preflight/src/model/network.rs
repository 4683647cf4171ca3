use serde::{Deserialize, Serialize};

use super::Gathered;

// What a report says about the node for a whole-cluster migration plan (`plan --cluster`):
// its network as the node's own network namespace sees it, and its k3s role and CIDRs. Added
// to schema_version 1 after it was published: optional, absent in reports of earlier builds.
// (`//` comments: doc comments become descriptions in the published JSON Schema.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClusterFacts {
    /// Addresses, routes, bound UDP ports and devices of the node's network namespace (PID 1's,
    /// read from `<root>/proc/1/net` and `<root>/sys/class/net`).
    pub network: Gathered<NodeNetwork>,
    /// k3s on this node: role and CIDRs (defaults applied), or absent when k3s is not there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k3s: Option<K3sRole>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeNetwork {
    /// Addresses in CIDR form with their device (the device of the connected route that holds
    /// them; none when no such route was seen). Loopback left out.
    pub addresses: Vec<NodeAddress>,
    /// Routes of the main table (IPv4 and IPv6), loopback and link-local left out.
    pub routes: Vec<NodeRoute>,
    /// UDP ports bound in the node's namespace (any address): a tunnel device holds one.
    pub udp_ports: Vec<u16>,
    /// Network devices and their kind (`vxlan`, `bridge`, `geneve`, … from sysfs `uevent`;
    /// empty for a physical device).
    pub devices: Vec<NetDevice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeAddress {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NodeRoute {
    /// Destination in CIDR form (`0.0.0.0/0` for the default route).
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub dev: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NetDevice {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct K3sRole {
    /// `server` or `agent`.
    pub role: String,
    /// The service that runs it (`k3s`, `k3s-agent`).
    pub unit: String,
    /// `cluster-cidr`, k3s's default 10.42.0.0/16 when not set.
    pub cluster_cidrs: Vec<String>,
    /// `service-cidr`, k3s's default 10.43.0.0/16 when not set.
    pub service_cidrs: Vec<String>,
    /// `flannel-backend` as configured (absent: k3s's default, vxlan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flannel_backend: Option<String>,
    /// The `server:` an agent joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The CNI conf and bin dirs containerd uses now (its config.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_conf_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cni_bin_dirs: Vec<String>,
}

//! Plain types every room shares: what a check found, where it belongs, what Cilium needs, the
//! node a report is about and the verdict. The bottom room: it imports no other room.
mod area;
mod capability;
mod check;
mod gathered;
mod names;
mod network;
mod node;
mod outcome;
mod status;
mod support;
mod verdict;

pub use area::Area;
pub use capability::Capability;
pub use check::CheckResult;
pub use gathered::Gathered;
pub use names::{
    context_name_error, dns1123_label_error, parse_context_name, parse_dns1123_label,
    parse_release_name,
};
pub use network::{ClusterFacts, K3sRole, NetDevice, NodeAddress, NodeNetwork, NodeRoute};
pub use node::Node;
pub use outcome::Outcome;
pub use status::Status;
pub use support::Support;
pub use verdict::{CapabilityVerdict, PlanFix, Readiness, Recommendation, Verdict};

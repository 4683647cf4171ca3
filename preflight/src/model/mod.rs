//! Plain types every room shares: what a check found, where it belongs, what Cilium needs, the
//! node a report is about and the verdict. The bottom room: it imports no other room.
mod capability;

pub use capability::Capability;

//! Preflight across a cluster: manifests that run it on every node (`job`) and the cluster
//! verdict from many node reports (`aggregate`). See docs/fleet.md.
pub mod aggregate;
pub mod job;
pub mod read;

//! Apply: each family of actions carries itself out under the journal and undoes itself, one
//! file per family (as aya keeps one file per program type). The executor (`exec.rs`) walks
//! the plan and the journal and hands each action or undo to its family.
pub mod files;
pub mod firewall;
pub mod helm;
pub mod iptables;
pub mod k3s;
pub mod kernel;
pub mod kubectl;
pub mod links;
pub mod mounts;
pub mod services;

/// An argument vector from string literals.
pub(in crate::plan) fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

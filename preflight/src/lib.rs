//! preflight: will Cilium come up on this node, and if not, why and what to change.
//!
//! Data flow: `facts` (the only part that touches the node: `host`, `probe`) → `checks`
//! (a registry of pure functions) → `verdict` → `report` (one model, several renderers).
pub mod checks;
pub mod cilium;
pub mod cluster;
pub mod cmd;
pub mod compile;
pub mod exe;
pub mod facts;
pub mod fleet;
pub mod gate;
pub mod host;
pub mod model;
pub mod plan;
pub mod probe;
pub mod report;
pub mod verdict;

/// Exit codes, as ripgrep: 0 positive answer, 1 negative answer, 2 error.
pub mod exit {
    pub const GO: u8 = 0;
    pub const NO_GO: u8 = 1;
    pub const ERROR: u8 = 2;
}

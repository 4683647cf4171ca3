//! Facts about the node: the only part of preflight that touches the system. Checks read facts;
//! they never gather them.
use std::{path::PathBuf, time::Instant};

use crate::probe::{self, ProbeReport, Scope, canary::CanaryReport};

/// A fact that was gathered, or why not. `Skipped` means it does not apply (a live-only fact when
/// reading another root); checks turn it into `skip`, not `fail`.
#[derive(Debug, Clone, PartialEq)]
pub enum Gathered<T> {
    Got(T),
    Skipped(String),
}

impl<T> Gathered<T> {
    pub fn get(&self) -> Result<&T, &str> {
        match self {
            Self::Got(t) => Ok(t),
            Self::Skipped(why) => Err(why),
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// The node's root: `/` on the node, `/host` in a Job, a fixture tree in tests.
    pub root: PathBuf,
    pub canaries: bool,
    /// The root is another view of the node this kernel runs (a pod with the host's `/` at
    /// `/host` shares the node's kernel), so live probes apply even though root is not `/`.
    pub host_kernel: bool,
}

impl GatherOptions {
    /// Live probes only make sense against the kernel we run on.
    pub fn live(&self) -> bool {
        self.host_kernel || self.root == std::path::Path::new("/")
    }
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub live: bool,
    pub probes: Gathered<ProbeReport>,
    pub canaries: Gathered<CanaryReport>,
    /// Milliseconds per gathering stage.
    pub timings: Vec<(String, f64)>,
}

impl Facts {
    pub fn gather(opts: &GatherOptions) -> Self {
        let live = opts.live();
        let mut timings = Vec::new();
        let not_live = || {
            format!(
                "live probe; --root {} is not this kernel's root",
                opts.root.display()
            )
        };
        let t = Instant::now();
        let probes = if live {
            Gathered::Got(probe::probe(&probe::LiveKernel, Scope::Cilium))
        } else {
            Gathered::Skipped(not_live())
        };
        timings.push(("gather.probes".into(), t.elapsed().as_secs_f64() * 1e3));
        let t = Instant::now();
        let canaries = match (live, opts.canaries) {
            (true, true) => Gathered::Got(probe::canary::run()),
            (true, false) => Gathered::Skipped("canaries disabled (--no-canaries)".into()),
            (false, _) => Gathered::Skipped(not_live()),
        };
        timings.push(("gather.canaries".into(), t.elapsed().as_secs_f64() * 1e3));
        Self {
            live,
            probes,
            canaries,
            timings,
        }
    }
}

//! Facts about the node: the only part of preflight that touches the system. Checks read facts;
//! they never gather them.
use std::{path::PathBuf, time::Instant};

use crate::{
    cilium::Target,
    compile::{self, CompileReport},
    host::{
        HostRoot, cni::CniFacts, distro::DistroFacts, k3s::K3sFacts, kconfig::KernelConfigFact,
        links::Link, modules::ModuleIndex, mounts::MountsFact, state::CiliumState, sysctl::Sysctls,
    },
    probe::{self, ProbeReport, Scope, canary::CanaryReport},
};

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
    /// Compile the datapath for this target; None skips the stage. Under a `--root` that is
    /// not this kernel's the compile still runs (the agent's clang is its image's, not the
    /// node's); only the verifier load and the `HAVE_*` probes need the live kernel.
    pub compile: Option<Target>,
    /// A real Cilium bpf dir for the compile stage; None compiles the built-in templates.
    pub compile_bpf_dir: Option<std::path::PathBuf>,
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
    /// The root every node file was read through (module files are checked lazily through it).
    pub host: HostRoot,
    /// `proc/sys/kernel/osrelease` under the root.
    pub kernel_release: Option<String>,
    pub kernel_config: KernelConfigFact,
    pub modules: ModuleIndex,
    pub mounts: MountsFact,
    /// statfs(2) magic of /sys/fs/bpf (live-only).
    pub bpffs_magic: Gathered<Result<i64, String>>,
    pub sysctls: Sysctls,
    /// Network devices over rtnetlink (live-only).
    pub links: Gathered<Result<Vec<Link>, String>>,
    pub k3s: K3sFacts,
    pub cni: CniFacts,
    pub cilium_state: CiliumState,
    pub distro: DistroFacts,
    /// The datapath compile stage; `Err` when it could not run (no clang, bad version).
    pub compile: Gathered<Result<CompileReport, String>>,
    /// Milliseconds per gathering stage.
    pub timings: Vec<(String, f64)>,
}

impl Facts {
    /// Node facts read from `root` only: no live probes, canaries or compile stage. Tests start
    /// from this and put fixture probe or compile results in.
    pub fn from_root(root: &std::path::Path) -> Self {
        Self::gather(&GatherOptions {
            root: root.to_path_buf(),
            canaries: false,
            compile: None,
            compile_bpf_dir: None,
            host_kernel: false,
        })
    }

    pub fn gather(opts: &GatherOptions) -> Self {
        let live = opts.live();
        let mut timings = Vec::new();
        let not_live = || {
            format!(
                "live probe; --root {} is not this kernel's root",
                opts.root.display()
            )
        };
        // The canaries run in their own process and namespaces and touch nothing the rest
        // reads, so they run beside probes, node facts and the compile stage: the stages'
        // timings overlap, and the wall time is the longest path, not the sum.
        std::thread::scope(|scope| {
            let canaries = scope.spawn(|| {
                let t = Instant::now();
                let got = match (live, opts.canaries) {
                    (true, true) => Gathered::Got(probe::canary::run()),
                    (true, false) => Gathered::Skipped("canaries disabled (--no-canaries)".into()),
                    (false, _) => Gathered::Skipped(not_live()),
                };
                (got, t.elapsed().as_secs_f64() * 1e3)
            });
            let t = Instant::now();
            let probes = if live {
                Gathered::Got(probe::probe(&probe::LiveKernel, Scope::Cilium))
            } else {
                Gathered::Skipped(not_live())
            };
            timings.push(("gather.probes".into(), t.elapsed().as_secs_f64() * 1e3));
            let t = Instant::now();
            let host = HostRoot::new(&opts.root);
            let kernel_release = host.kernel_release();
            let kernel_config = crate::host::kconfig::gather(&host, kernel_release.as_deref());
            let modules = crate::host::modules::gather(&host, kernel_release.as_deref());
            let mounts = crate::host::mounts::gather(&host);
            let bpffs_magic = if live {
                Gathered::Got(crate::host::mounts::fs_magic("/sys/fs/bpf"))
            } else {
                Gathered::Skipped(format!(
                    "statfs is live-only; --root {} is not this system's root",
                    opts.root.display()
                ))
            };
            let sysctls = crate::host::sysctl::gather(&host, &mounts);
            let links = if live {
                Gathered::Got(crate::host::links::gather())
            } else {
                Gathered::Skipped(format!(
                    "network devices are live-only (netlink); --root {} is not this system's root",
                    opts.root.display()
                ))
            };
            let k3s = crate::host::k3s::gather(&host);
            let cni = crate::host::cni::gather(&host, k3s.rancher_desktop);
            let cilium_state = crate::host::state::gather(&host);
            let distro = crate::host::distro::gather(&host);
            timings.push(("gather.node".into(), t.elapsed().as_secs_f64() * 1e3));
            let t = Instant::now();
            let compile = match &opts.compile {
                Some(target) => {
                    let mut o = compile::Options::new(target.clone());
                    o.bpf_dir = opts.compile_bpf_dir.clone();
                    o.state = compile::StateSource::Predict(host.clone());
                    o.progress = true;
                    if live {
                        o.probes = probes.get().ok().cloned();
                    } else {
                        o.verify = false;
                        o.verify_skipped = Some(format!(
                            "the verifier load needs the live kernel; --root {} is not this \
                             kernel's root (kernel features assumed present)",
                            opts.root.display()
                        ));
                    }
                    Gathered::Got(compile::run(&o))
                }
                None => Gathered::Skipped("compile stage disabled (--no-compile)".into()),
            };
            timings.push(("gather.compile".into(), t.elapsed().as_secs_f64() * 1e3));
            let (canaries, canary_ms) = canaries
                .join()
                .unwrap_or_else(|_| (Gathered::Skipped("the canary thread panicked".into()), 0.0));
            timings.push(("gather.canaries".into(), canary_ms));
            Self {
                live,
                probes,
                canaries,
                host,
                kernel_release,
                kernel_config,
                modules,
                mounts,
                bpffs_magic,
                sysctls,
                links,
                k3s,
                cni,
                cilium_state,
                distro,
                compile,
                timings,
            }
        })
    }
}

//! Facts about the node: the only part of preflight that touches the system. Checks read facts;
//! they never gather them.
use std::time::Instant;

use crate::{
    cilium::{
        Target,
        node::{KubeProxy, NodeHints},
    },
    compile::{self, CompileReport},
    host::{
        HostRoot, cni::CniFacts, distro::DistroFacts, k3s::K3sFacts, kconfig::KernelConfigFact,
        links::Link, modules::ModuleIndex, mounts::MountTable, state::CiliumState, sysctl::Sysctls,
    },
    model::{ClusterFacts, NodeNetwork},
    probe::{self, ProbeReport, Scope, canary::CanaryReport},
};

use crate::model::Gathered;

#[derive(Debug, Clone)]
pub struct GatherOptions {
    /// The node's root: `/` on the node, `/host` in a Job, a fixture tree in tests. Live probes
    /// run only when it is the live node.
    pub host: HostRoot,
    pub canaries: bool,
    /// Compile the datapath for this target; None skips the stage. Under a `--root` that is
    /// not this kernel's the compile still runs (the agent's clang is its image's, not the
    /// node's); only the verifier load and the `HAVE_*` probes need the live kernel.
    pub compile: Option<Target>,
    /// The tree the compile stage judges (default: the built-in templates).
    pub tree: compile::source::Resolved,
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
    pub mounts: Gathered<MountTable>,
    /// statfs(2) magic of /sys/fs/bpf (live-only).
    pub bpffs_magic: Gathered<i64>,
    pub sysctls: Sysctls,
    /// Network devices over rtnetlink (live-only).
    pub links: Gathered<Vec<Link>>,
    /// Addresses, routes, bound UDP ports and devices of the node's namespace, read through the
    /// root (`proc/1/net`, `sys/class/net`): what a whole-cluster plan compares across nodes.
    pub network: Gathered<NodeNetwork>,
    pub k3s: K3sFacts,
    pub cni: CniFacts,
    pub cilium_state: CiliumState,
    pub distro: DistroFacts,
    /// The datapath compile stage; `Unknown` when it could not run (no clang, bad version).
    pub compile: Gathered<CompileReport>,
    /// Milliseconds per gathering stage.
    pub timings: Vec<(String, f64)>,
}

impl Facts {
    /// The node facts the values cross-checks (`cilium::node`) judge the values against.
    pub fn node_hints(&self) -> NodeHints {
        let cni = &self.cni;
        NodeHints {
            rancher_desktop: self.k3s.rancher_desktop,
            // An empty list means the runtime's config could not be read at all.
            cni_bin_dirs: (!cni.bin_dirs.is_empty()).then(|| cni.bin_dirs.clone()),
            cni_dirs_source: (!cni.dirs_source.is_empty()).then(|| cni.dirs_source.clone()),
            cni_conf_dir: (!cni.conf_dir.is_empty()).then(|| cni.conf_dir.clone()),
            cgroup2_mounts: match &self.mounts {
                Gathered::Got(t) => Some(
                    t.of_type("cgroup2")
                        .iter()
                        .map(|m| m.mount_point.clone())
                        .collect(),
                ),
                _ => None,
            },
            // kube-proxy runs on a k3s node unless its config says disable-kube-proxy; an
            // unreadable config or another distribution cannot tell.
            kube_proxy: match (&self.k3s, self.k3s.disable_kube_proxy) {
                (k, _) if !k.present || !k.problems.is_empty() => KubeProxy::CannotTell,
                (_, Some(true)) => KubeProxy::Removed,
                _ => KubeProxy::Runs,
            },
            // Dual-stack k3s lists both families; the IPv4 one is the native-routing CIDR.
            cluster_cidr: self.k3s.cluster_cidr.as_deref().and_then(|list| {
                list.split(',')
                    .map(str::trim)
                    .find(|c| !c.is_empty() && !c.contains(':'))
                    .map(str::to_string)
            }),
        }
    }

    /// What the report carries for a whole-cluster migration plan (`plan --cluster`).
    pub fn cluster_facts(&self) -> ClusterFacts {
        ClusterFacts {
            network: self.network.clone(),
            k3s: crate::host::network::k3s_role(&self.host, &self.k3s, &self.cni),
        }
    }

    /// Node facts read from `root` only: no live probes, canaries or compile stage. Tests start
    /// from this and put fixture probe or compile results in.
    pub fn from_root(root: &std::path::Path) -> Self {
        Self::gather(&GatherOptions {
            host: HostRoot::new(root),
            canaries: false,
            compile: None,
            tree: Default::default(),
        })
    }

    pub fn gather(opts: &GatherOptions) -> Self {
        let live = opts.host.is_live();
        let mut timings = Vec::new();
        let not_live = || {
            format!(
                "live probe; --root {} is not this kernel's root",
                opts.host.root().display()
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
            let host = opts.host.clone();
            let kernel_release = host.kernel_release();
            let kernel_config = crate::host::kconfig::gather(&host, kernel_release.as_deref());
            let modules = crate::host::modules::gather(&host, kernel_release.as_deref());
            let mounts = crate::host::mounts::gather(&host);
            let on_node = opts.host.is_own_root();
            let bpffs_magic = if live && !on_node {
                // A host root (`/host` in a Job): the host's bpffs through it, read-only.
                Gathered::from_result(
                    host.fs_magic("/sys/fs/bpf")
                        .ok_or_else(|| format!("statfs {}: failed", host.display("/sys/fs/bpf"))),
                )
            } else if live {
                Gathered::from_result(crate::host::mounts::fs_magic("/sys/fs/bpf"))
            } else {
                Gathered::Skipped(format!(
                    "statfs is live-only; --root {} is not this system's root",
                    host.root().display()
                ))
            };
            let sysctls = crate::host::sysctl::gather(&host, &mounts);
            let links = if live && !on_node {
                // No hostNetwork in a Job: the host's devices from its sysfs, not our netns.
                Gathered::from_result(crate::host::links::gather_from_root(&host))
            } else if live {
                Gathered::from_result(crate::host::links::gather())
            } else {
                Gathered::Skipped(format!(
                    "network devices are live-only (netlink); --root {} is not this system's root",
                    host.root().display()
                ))
            };
            let network = crate::host::network::gather(&host);
            let k3s = crate::host::k3s::gather(&host);
            let cni = crate::host::cni::gather(&host, k3s.rancher_desktop);
            let cilium_state = crate::host::state::gather(&host);
            let distro = crate::host::distro::gather(&host);
            timings.push(("gather.node".into(), t.elapsed().as_secs_f64() * 1e3));
            let t = Instant::now();
            let compile = match &opts.compile {
                Some(target) => {
                    let mut o = compile::Options::new(target.clone());
                    o.use_source(&opts.tree);
                    o.state = compile::StateSource::Predict(host.clone());
                    o.progress = true;
                    if live {
                        o.probes = probes.got().cloned();
                    } else {
                        o.verify = false;
                        o.verify_skipped = Some(format!(
                            "the verifier load needs the live kernel; --root {} is not this \
                             kernel's root (kernel features assumed present)",
                            opts.host.root().display()
                        ));
                    }
                    Gathered::from_result(compile::run(&o))
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
                network,
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

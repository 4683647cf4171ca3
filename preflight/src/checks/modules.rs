//! Kernel modules the flannel side (and a fallback to it) relies on, and the module index
//! itself. Cilium's own modules are judged with their config options in kernel.rs.
use super::Check;
use crate::{
    host::{
        kconfig::{KernelConfigFact, Setting},
        modules::ModuleState,
    },
    model::{Area, Capability::*, Outcome},
};

/// (module, its config option, why).
const FLANNEL_SIDE: &[(&str, &str, &str)] = &[
    (
        "br_netfilter",
        "BRIDGE_NETFILTER",
        "bridged pod traffic through iptables (flannel, kube-proxy)",
    ),
    (
        "overlay",
        "OVERLAY_FS",
        "containerd's overlayfs snapshotter",
    ),
    (
        "nf_conntrack",
        "NF_CONNTRACK",
        "connection tracking for kube-proxy and masquerading",
    ),
    ("vxlan", "VXLAN", "flannel's and Cilium's vxlan tunnel"),
];

pub(super) fn flannel_side_modules() -> impl Iterator<Item = &'static str> {
    FLANNEL_SIDE.iter().map(|&(module, _, _)| module)
}

pub fn checks() -> Vec<Check> {
    let mut checks: Vec<Check> = FLANNEL_SIDE
        .iter()
        .map(|&(module, option, why)| {
            Check::new(
                format!("modules.{}", module.replace('_', "-")),
                Area::Modules,
                format!("Module {module}: {why}"),
            )
            .remedy(format!("modprobe {module}; persist it with `echo {module} > /etc/modules-load.d/{module}.conf`"))
            .evaluate(move |facts, _| {
                // A module-less kernel (CONFIG_MODULES=n) answers through its config.
                let config = match &facts.kernel_config {
                    KernelConfigFact::Got(c) => Some(c),
                    KernelConfigFact::Unknown(_) | KernelConfigFact::Skipped(_) => None,
                };
                if let Some(Setting::Builtin) = config.and_then(|c| c.get(option)) {
                    return Outcome::pass(format!("built in (CONFIG_{option}=y)"))
                        .evidence(config.map(|c| c.source.clone()).unwrap_or_default());
                }
                match facts.modules.state(&facts.host, module) {
                    ModuleState::Builtin => Outcome::pass("built in (modules.builtin)"),
                    ModuleState::Loaded => Outcome::pass("loaded").evidence(facts.host.display("/proc/modules")),
                    ModuleState::Loadable { file } => {
                        Outcome::pass("present, not loaded (modprobe loads it)").evidence(file)
                    }
                    ModuleState::FileMissing { file } => {
                        Outcome::warn(format!("listed in modules.dep but {file} is missing"))
                    }
                    ModuleState::Missing => match config.map(|c| c.get(option)) {
                        Some(None) => Outcome::warn(format!("not available: CONFIG_{option} is not set")),
                        _ => Outcome::warn("not built in and not installed for this kernel"),
                    },
                    ModuleState::Unknown { why } => Outcome::unknown(why),
                }
            })
        })
        .collect();
    checks.push(
        Check::new("modules.index", Area::Modules, "Module index (modules.dep, modules.builtin, /proc/modules) is readable")
            .needed_by(&[BaseDatapath])
            .remedy("run `depmod -a $(uname -r)`; reinstall the kernel's modules package if files are corrupt")
            .evaluate(|facts, _| {
                let m = &facts.modules;
                if !m.problems.is_empty() {
                    let mut out = Outcome::warn(m.problems.join("; "));
                    for p in &m.problems {
                        out = out.evidence(p.clone());
                    }
                    return out;
                }
                match &m.dir {
                    // A module dir with an empty index: depmod never ran (or the file was
                    // emptied), so "loadable" cannot be told from it.
                    Some(dir) if m.available.is_empty() => Outcome::warn(format!(
                        "{dir}/modules.dep lists no modules: depmod has not run for this kernel, so which modules are loadable cannot be told"
                    ))
                    .evidence(facts.host.display(dir)),
                    Some(dir) => Outcome::pass(format!(
                        "{} modules loadable, {} built in, {} loaded",
                        m.available.len(),
                        m.builtin.len(),
                        m.loaded.len()
                    ))
                    .evidence(facts.host.display(dir)),
                    None if m.loaded_visible => Outcome::pass(format!("{} modules loaded; no module directory for this kernel", m.loaded.len())),
                    None => Outcome::skip("no module support visible (CONFIG_MODULES=n or /lib/modules not mounted)"),
                }
            }),
    );
    checks
}

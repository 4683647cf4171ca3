//! Apply: kernel modules and sysctls: load and set, unload and reset (what is in use stays).

use super::args;
use crate::host::HostRoot;
use crate::plan::{
    exec::Executor,
    journal::{EntryState, Undo},
    runner::{Runner, Tool},
};

/// `Action::Modprobe`: the module loaded, journaled; nothing to do when it is loaded already.
pub(in crate::plan) fn modprobe(
    ex: &mut Executor<'_>,
    id: &str,
    module: &str,
) -> anyhow::Result<Option<String>> {
    if crate::plan::fallback::module_loaded(ex.host, module) {
        return Ok(Some(format!("{module} is loaded")));
    }
    let seq = ex.journal.intent(
        id,
        Undo::Module {
            name: module.to_string(),
        },
    )?;
    let (tool, argv) = modprobe_command(module);
    ex.runner.check(tool, &argv)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

/// `Action::Sysctl`: the key set, its prior value journaled; nothing to do when it has the value.
pub(in crate::plan) fn sysctl(
    ex: &mut Executor<'_>,
    id: &str,
    key: &str,
    value: &str,
) -> anyhow::Result<Option<String>> {
    let proc = format!("/proc/sys/{}", key.replace('.', "/"));
    // A key can be missing until its module loads (net.bridge.* with br_netfilter):
    // then there is no old value to restore, and unloading the module removes it.
    let prior = ex.host.read_text(&proc).ok().map(|s| s.trim().to_string());
    if prior.as_deref() == Some(value) {
        return Ok(Some(format!("{key} is {value}")));
    }
    let seq = ex.journal.intent(
        id,
        Undo::Sysctl {
            key: key.to_string(),
            prior,
        },
    )?;
    ex.runner
        .check(Tool::Sysctl, &sysctl_command(key, value).1)?;
    ex.journal.set_state(seq, EntryState::Done)?;
    Ok(None)
}

// A module in use (flannel.1 holds vxlan, containerd's mounts hold overlay) cannot be
// unloaded, and forcing it would take the node's network down: it stays loaded. Its
// modules-load.d file is gone, so it is not loaded again at the next boot.
/// `Undo::Module`: the module unloaded again, unless something uses it (then a note says so).
pub(in crate::plan) fn undo_module(
    host: &HostRoot,
    runner: &Runner,
    name: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    Ok(match module_refcount(host, name) {
        Some(None) => None,
        Some(Some(users)) if users > 0 => {
            notes.push(format!(
                "module {name} left loaded: in use ({users} users); it is no longer loaded at boot"
            ));
            None
        }
        _ => match runner.check(Tool::Modprobe, &args(&["-r", name])) {
            Ok(_) => Some(format!("module {name} unloaded")),
            Err(e) => {
                notes.push(format!(
                    "module {name} left loaded: `modprobe -r {name}` refused ({e:#}); it is \
                         no longer loaded at boot"
                ));
                None
            }
        },
    })
}

/// A module's users from `<root>/proc/modules`: Some(None) when it is not loaded, Some(Some(n))
/// when loaded with n users, None when the file cannot be read.
pub(in crate::plan) fn module_refcount(host: &HostRoot, name: &str) -> Option<Option<u64>> {
    let text = host.read_text("/proc/modules").ok()?;
    Some(text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&name)).then(|| f.get(2).and_then(|n| n.parse().ok()).unwrap_or(1))
    }))
}

/// `Undo::Sysctl`: the value it had again (a key that did not exist before stays: unloading
/// its module removes it). Forwarding stays on while k3s runs.
pub(in crate::plan) fn undo_sysctl(
    host: &HostRoot,
    runner: &Runner,
    key: &str,
    prior: &Option<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    let Some(prior) = prior else {
        return Ok(None);
    };
    if key == "net.ipv4.ip_forward" && prior.trim() == "0" && super::k3s::k3s_running(host, runner)
    {
        notes.push(
            "net.ipv4.ip_forward left at 1: k3s is running and every pod's traffic needs \
             forwarding (k3s turns it on at start anyway); only the boot-time file is removed"
                .into(),
        );
        return Ok(None);
    }
    runner.check(Tool::Sysctl, &args(&["-w", &format!("{key}={prior}")]))?;
    Ok(Some(format!("{key} = {prior} again")))
}

/// `modprobe MODULE`, as printed and as run.
pub fn modprobe_command(module: &str) -> (Tool, Vec<String>) {
    (Tool::Modprobe, args(&[module]))
}

/// `sysctl -w KEY=VALUE`, as printed and as run.
pub fn sysctl_command(key: &str, value: &str) -> (Tool, Vec<String>) {
    (Tool::Sysctl, args(&["-w", &format!("{key}={value}")]))
}

//! Apply: k3s after its restart: containerd's CNI dirs must be the ones the values name; whether k3s runs.

use anyhow::bail;

use super::args;
use crate::host::HostRoot;
use crate::plan::{
    exec::Executor,
    node::{self, CniPaths},
    runner::{Runner, Tool},
};

/// `Action::CheckCniPaths`: after k3s restarted, containerd's CNI dirs must be the ones the values
/// name (changes nothing; fails the step otherwise).
pub(in crate::plan) fn check_cni_paths(
    ex: &mut Executor<'_>,
    expect: &CniPaths,
) -> anyhow::Result<Option<String>> {
    let path = ex.host.display(node::CONTAINERD_CONFIG);
    let Some(now) = node::read_containerd_cni(ex.host, node::CONTAINERD_CONFIG)? else {
        return Ok(Some(format!(
            "{path} has no CNI section; containerd uses its defaults"
        )));
    };
    let now_bin = node::versionless(&now.bin_dir);
    if now_bin != expect.bin_dir || now.conf_dir != expect.conf_dir {
        bail!(
            "after the restart containerd uses bin_dir {} and conf_dir {} ({}), but the values \
                         were made for {} and {}: re-run `preflight plan` and check config.toml(.tmpl)",
            now.bin_dir,
            now.conf_dir,
            path,
            expect.bin_dir,
            expect.conf_dir
        );
    }
    Ok(None)
}

/// Whether a k3s service runs on the node: `systemctl is-active`, or `rc-service … status`
/// under OpenRC. When that cannot be asked, assume it does (the safe side for forwarding).
pub(in crate::plan) fn k3s_running(host: &HostRoot, runner: &Runner) -> bool {
    let openrc = !host.is_dir("/run/systemd/system")
        && !host.is_dir("/etc/systemd/system")
        && (host.exists("/etc/init.d/k3s") || host.exists("/etc/init.d/k3s-agent"));
    ["k3s", "k3s-agent"].iter().any(|unit| {
        let (tool, argv) = if openrc {
            (Tool::RcService, args(&[unit, "status"]))
        } else {
            (Tool::Systemctl, args(&["is-active", "--quiet", unit]))
        };
        runner.run(tool, &argv).map_or(true, |o| o.success())
    })
}

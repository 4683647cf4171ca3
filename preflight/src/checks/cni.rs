//! CNI dirs and configs (docs/node-facts.md): the Helm values this node needs (`cni.binPath`,
//! `cni.confPath`), conflicting network configs, a stray cilium-cni.
use super::Check;
use crate::{
    host::cni::{CniFacts, DEFAULT_BIN, DEFAULT_CONF, K3S_CONTAINERD_TMPL, NetworkConfig},
    model::{Area, Capability::*, Outcome},
};

fn is_cilium(c: &NetworkConfig) -> bool {
    c.primary() == "cilium-cni"
}

const K3S_DATA: &str = "/var/lib/rancher/k3s/data/";

/// A k3s `data/<hash>/bin` dir: replaced on every k3s upgrade (k3s-io/k3s#10869).
fn is_versioned_k3s_dir(dir: &str) -> bool {
    dir.strip_prefix(K3S_DATA)
        .is_some_and(|rest| rest.ends_with("/bin") && !rest.starts_with("current/"))
}

/// `data/<hash>/bin` → `data/current/bin`, the symlink k3s moves along on upgrade.
fn versionless(dir: &str) -> String {
    match dir
        .strip_prefix(K3S_DATA)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((_, tail)) if is_versioned_k3s_dir(dir) => format!("{K3S_DATA}current/{tail}"),
        _ => dir.to_string(),
    }
}

/// k3s's own flannel-era containerd config: every bin dir in k3s's data dir, written by k3s
/// (not the user's `config.toml.tmpl`). `flannel-backend: none` makes k3s drop these dirs and
/// containerd use its defaults, /opt/cni/bin and /etc/cni/net.d, as `preflight plan` predicts.
fn k3s_managed_dirs(c: &CniFacts) -> bool {
    !c.bin_dirs.is_empty()
        && c.bin_dirs.iter().all(|d| d.starts_with(K3S_DATA))
        && !c.dirs_source.ends_with(K3S_CONTAINERD_TMPL)
}

/// The runtime's dirs come from a containerd config we could not read: say so instead of
/// judging the defaults (containerd rejects that file too, so the node is not what it seems).
fn dirs_unknown(c: &CniFacts) -> Option<Outcome> {
    c.dirs_unknown.as_ref().map(|why| {
        Outcome::unknown(format!(
            "the container runtime's CNI dirs are unknown: {why}"
        ))
        .evidence(why.clone())
        .remedy("fix the containerd config at the file and line named (containerd refuses it too), then run preflight again")
    })
}

pub fn checks() -> Vec<Check> {
    vec![
        Check::new("cni.dirs", Area::Cni, "Cilium's CNI paths match the runtime's (cni.binPath, cni.confPath)")
            .needed_by(&[BaseDatapath])
            .remedy("--set cni.binPath=<bin dir> --set cni.confPath=<conf dir> as the detail says")
            .evaluate(|facts, _| {
                let c = &facts.cni;
                if let Some(out) = dirs_unknown(c) {
                    return out;
                }
                // Never a data/<hash> dir: the versionless path survives k3s upgrades.
                let bin = versionless(&c.bin_dirs.first().cloned().unwrap_or_else(|| DEFAULT_BIN.into()));
                let mut detail = format!("runtime bin dir(s) {}, conf dir {} ({})", c.bin_dirs.join(", "), c.conf_dir, c.dirs_source);
                for note in &c.notes {
                    detail.push_str("; ");
                    detail.push_str(note);
                }
                let mut values = Vec::new();
                if !c.bin_dirs.iter().any(|d| d == DEFAULT_BIN) {
                    values.push(format!("--set cni.binPath={bin}"));
                }
                if c.conf_dir != DEFAULT_CONF {
                    values.push(format!("--set cni.confPath={}", c.conf_dir));
                }
                let mut out = if values.is_empty() {
                    Outcome::pass(format!("{detail}; the chart's defaults match"))
                } else if k3s_managed_dirs(c) {
                    // What `preflight plan` does: switch k3s off flannel, keep the chart defaults.
                    Outcome::warn(format!("{detail}; k3s points containerd at its own dirs because it runs flannel: with flannel-backend: none containerd uses /opt/cni/bin and /etc/cni/net.d, the chart's defaults (as `preflight plan` sets up)"))
                        .remedy(format!("start k3s with flannel-backend: none and keep the chart's cni.binPath/cni.confPath; only if containerd must keep k3s's dirs: {} (never a data/<hash> dir, k3s-io/k3s#10869)", values.join(" ")))
                } else {
                    Outcome::warn(format!("{detail}; the chart's defaults (/opt/cni/bin, /etc/cni/net.d) do not match: without {} kubelet reports failed to find plugin \"cilium-cni\"", values.join(" ")))
                        .remedy(values.join(" "))
                };
                if c.dirs_source.starts_with('/') {
                    out = out.evidence(c.dirs_source.clone());
                }
                out
            }),
        Check::new("cni.bin-dir-versioned", Area::Cni, "CNI bin dir survives k3s upgrades")
            .remedy("start k3s with flannel-backend: none (containerd then uses /opt/cni/bin, as `preflight plan` sets up); if containerd must keep k3s's dirs, use the versionless /var/lib/rancher/k3s/data/current/bin, never data/<hash>/bin (k3s-io/k3s#10869)")
            .evaluate(|facts, _| {
                if let Some(out) = dirs_unknown(&facts.cni) {
                    return out;
                }
                let versioned: Vec<_> = facts.cni.bin_dirs.iter().filter(|d| is_versioned_k3s_dir(d)).cloned().collect();
                if versioned.is_empty() {
                    Outcome::pass("no versioned k3s data dir in the CNI path")
                } else {
                    Outcome::warn(format!("{} is a k3s data/<hash> dir: cilium-cni installed there is gone after the next k3s upgrade", versioned.join(", ")))
                }
            }),
        Check::new("cni.configs", Area::Cni, "Network configs in the conf dir are readable, one CNI")
            .remedy("keep one CNI's config in the conf dir: move the others away (Cilium's cni.exclusive=true renames them to *.cilium_bak)")
            .evaluate(|facts, _| {
                let c = &facts.cni;
                let mut primaries: Vec<&str> = c.configs.iter().map(NetworkConfig::primary).collect();
                primaries.dedup();
                let mut out = match primaries.as_slice() {
                    [] => Outcome::pass(format!("no network config in {} yet", c.conf_dir)),
                    [one] => Outcome::pass(format!("one CNI configured: {one}")),
                    many => Outcome::warn(format!("{} CNIs configured at once in {} ({}); the runtime uses the first file, {}", many.len(), c.conf_dir, many.join(", "), c.configs[0].file)),
                };
                if !c.problems.is_empty() {
                    let detail = format!("unreadable CNI/containerd config: {}; {}", c.problems.join("; "), out.detail);
                    out = Outcome::warn(detail).remedy("fix or remove the file named (file:line); the runtime skips or rejects it too");
                }
                for p in &c.problems {
                    out = out.evidence(p.clone());
                }
                for cfg in &c.configs {
                    out = out.evidence(cfg.file.clone());
                }
                out
            }),
        Check::new("cni.leftover-configs", Area::Cni, "No network configs left in other CNI conf dirs")
            .remedy("remove the leftover flannel config, e.g. rm /var/lib/rancher/k3s/agent/etc/cni/net.d/10-flannel.conflist")
            .evaluate(|facts, _| {
                let others = &facts.cni.other_configs;
                if others.is_empty() {
                    return Outcome::pass("none");
                }
                let mut out = Outcome::warn(format!(
                    "{} config(s) outside the effective conf dir ({}): a later switch of dirs would pick them up",
                    others.len(),
                    others.iter().map(|c| c.primary()).collect::<Vec<_>>().join(", ")
                ))
                .remedy(others.iter().map(|c| format!("rm {}", c.file)).collect::<Vec<_>>().join(" && "));
                for c in others {
                    out = out.evidence(c.file.clone());
                }
                out
            }),
        Check::new("cni.cilium-cni", Area::Cni, "cilium-cni in the bin dir kubelet searches")
            .remedy("remove the stray plugin (rm <bin dir>/cilium-cni) or finish the Cilium install that put it there")
            .evaluate(|facts, _| {
                let c = &facts.cni;
                if let Some(out) = dirs_unknown(c) {
                    return out;
                }
                let configured = c.configs.iter().any(is_cilium);
                match (&c.cilium_cni, configured) {
                    (Some(dir), true) => Outcome::pass(format!("installed in {dir} and configured")),
                    (Some(dir), false) => Outcome::warn(format!("{dir}/cilium-cni exists but no Cilium network config does: left by an earlier install")).evidence(format!("{dir}/cilium-cni")),
                    (None, true) => Outcome::warn(format!("a Cilium network config exists but cilium-cni is not in {}: pods fail with failed to find plugin \"cilium-cni\"", c.bin_dirs.join(", "))).remedy("set cni.binPath to the runtime's bin dir and restart the agent"),
                    (None, false) => Outcome::pass(format!("not installed yet; the agent installs it into {}", c.bin_dirs.join(", "))),
                }
            }),
    ]
}

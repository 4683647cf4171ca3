//! Cilium state left by an earlier or failed install (docs/compile.md).
use super::Check;
use crate::{
    host::state::{Generation, NODE_CONFIG},
    model::{Area, Capability::*, Outcome},
};

const WIPE: &str = "set cleanState: true for the first install (Helm), or with no agent running: rm -rf /var/run/cilium/state";

pub fn checks() -> Vec<Check> {
    vec![
        Check::new("state.node-config", Area::State, "No node_config.h from another Cilium version")
            .needed_by(&[BaseDatapath])
            .remedy(WIPE)
            .evaluate(|facts, target| {
                let s = &facts.cilium_state;
                if let Some(p) = s.problems.first() {
                    return Outcome::unknown(p.clone()).evidence(p.clone());
                }
                let Some(h) = &s.node_config else {
                    return Outcome::pass("none (fresh node); the agent writes it during datapath init")
                        .evidence(facts.host.display(NODE_CONFIG));
                };
                let file = h.file.clone();
                if h.dummy {
                    return Outcome::warn("the dummy test header from the bpf dir was copied over the generated one: endpoint compiles hit macro redefinitions").evidence(file);
                }
                let wanted = target.release().headers.node_config;
                let same = (h.written_by != Generation::Unknown).then(|| h.written_by == wanted);
                match same {
                    Some(true) => Outcome::pass(format!("written by {} (matches {}); the agent rewrites it at init", h.written_by.label(), target.cilium_version)).evidence(file),
                    Some(false) => Outcome::warn(format!(
                        "written by {} ({} macros), target {}: if datapath init fails before rewriting it, endpoint compiles use this stale header ('SNAT_COLLISION_RETRIES' macro redefined, undeclared identifiers)",
                        h.written_by.label(), h.macros.len(), target.cilium_version
                    )).evidence(file),
                    None => Outcome::unknown(format!("left by an earlier install; its macro set ({} macros) matches no known Cilium generation", h.macros.len())).evidence(file),
                }
            }),
        Check::new("state.templates", Area::State, "No stale endpoint templates")
            .remedy(WIPE)
            .evaluate(|facts, target| {
                let s = &facts.cilium_state;
                let dir = facts.host.display("/var/run/cilium/state/templates");
                if let Some(p) = &s.templates_problem {
                    return Outcome::unknown(format!("cannot list the templates: {p}")).evidence(dir);
                }
                if s.templates.is_empty() {
                    return Outcome::pass("none");
                }
                if target.release().agent.wipes_stale_templates {
                    Outcome::pass(format!("{} template(s); Cilium {} wipes them when its config hash changes", s.templates.len(), target.cilium_version)).evidence(dir)
                } else {
                    Outcome::warn(format!("{} template(s) from an earlier install; Cilium {} does not wipe them when its config changes and may reuse them", s.templates.len(), target.cilium_version)).evidence(dir)
                }
            }),
        Check::new("state.bpf-pins", Area::State, "No cilium_* maps pinned by an earlier install")
            .remedy("with no agent running: rm -f /sys/fs/bpf/tc/globals/cilium_* (or Helm cleanBpfState: true for the first start)")
            .evaluate(|facts, _| {
                let pins = &facts.cilium_state.pins;
                let problems = &facts.cilium_state.pins_problems;
                if pins.is_empty() && !problems.is_empty() {
                    return problems.iter().fold(
                        Outcome::unknown(format!("cannot list the pins: {}", problems.join("; "))),
                        |o, p| o.evidence(p.clone()),
                    );
                }
                if pins.is_empty() {
                    return Outcome::pass("none");
                }
                let shown: Vec<_> = pins.iter().take(5).map(|p| p.rsplit('/').next().unwrap_or(p)).collect();
                Outcome::warn(format!("{} cilium_* pin(s) (e.g. {}): an agent of another version reuses or fails on maps with changed layouts", pins.len(), shown.join(", ")))
                    .evidence(facts.host.display("/sys/fs/bpf/tc/globals"))
            }),
        Check::new("state.var-lib-cilium", Area::State, "No /var/lib/cilium from a host install")
            .remedy("remove it if no native cilium-agent runs here: rm -rf /var/lib/cilium (the Helm DaemonSet does not use the host's copy)")
            .evaluate(|facts, _| {
                let s = &facts.cilium_state;
                let dir = facts.host.display("/var/lib/cilium");
                match (s.var_lib_cilium, s.run_dir) {
                    (false, false) => Outcome::pass("no /var/lib/cilium, no /var/run/cilium"),
                    (false, true) => Outcome::pass("/var/run/cilium exists (state of an earlier install; see state.node-config)").evidence(facts.host.display("/var/run/cilium")),
                    (true, _) => Outcome::warn("/var/lib/cilium exists: a native (non-Helm) install, or leftovers of one; two agents on one node overwrite each other's headers").evidence(dir),
                }
            }),
    ]
}

//! The check registry. A check is a value: a stable id, the capabilities that need it, a remedy,
//! and a pure function from gathered facts and the target to an outcome. Gathering facts is the
//! only part that touches the node; everything here is testable on fixture facts.
//!
//! One file per area; `registry()` lists them. To find a check by id, grep for its id string.
mod attach;
mod bpf;
mod cni;
mod compile;
mod distro;
mod k3s;
mod kernel;
mod modules;
mod mounts;
mod network;
mod profile;
mod state;
mod sysctl;
mod values;

pub use kernel::kernel_version;

use crate::model::{Area, Outcome};
use crate::{
    cilium::{
        Target,
        releases::{BUILTIN, Release},
    },
    facts::Facts,
    model::{Capability, CheckResult, Recommendation, Status},
};

type Evaluate = Box<dyn Fn(&Facts, &Target) -> Outcome + Send + Sync>;

pub struct Check {
    pub id: String,
    pub area: Area,
    pub title: String,
    /// Capabilities that fail when this check fails. A check with none is informational.
    pub needed_by: Vec<Capability>,
    pub remedy: String,
    evaluate: Evaluate,
}

impl Check {
    pub fn new(id: impl Into<String>, area: Area, title: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            area,
            title: title.into(),
            needed_by: Vec::new(),
            remedy: String::new(),
            evaluate: Box::new(|_, _| Outcome::skip("not implemented")),
        }
    }
    pub fn needed_by(mut self, capabilities: &[Capability]) -> Self {
        self.needed_by = capabilities.to_vec();
        self
    }
    pub fn remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = remedy.into();
        self
    }
    pub fn evaluate(
        mut self,
        evaluate: impl Fn(&Facts, &Target) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.evaluate = Box::new(evaluate);
        self
    }

    /// Whether the target needs anything this check guards.
    pub fn relevant_to(&self, target: &Target) -> bool {
        self.needed_by.iter().any(|c| target.needs(*c))
    }

    pub fn run(&self, facts: &Facts, target: &Target, ignored: bool) -> CheckResult {
        let outcome = (self.evaluate)(facts, target);
        let fix = outcome.patch.map(|patch| Recommendation {
            fixes: self.id.clone(),
            why: outcome
                .remedy
                .clone()
                .unwrap_or_else(|| outcome.detail.clone()),
            patch,
        });
        // Only a problem carries a remedy; a pass with "do X" would be noise.
        let remedy = match outcome.status {
            Status::Pass | Status::Skip => None,
            _ => outcome
                .remedy
                .or_else(|| (!self.remedy.is_empty()).then(|| self.remedy.clone())),
        };
        CheckResult {
            id: self.id.clone(),
            area: self.area,
            title: self.title.clone(),
            status: outcome.status,
            detail: outcome.detail,
            remedy,
            evidence: outcome.evidence,
            needed_by: self.needed_by.clone(),
            relevant: self.relevant_to(target),
            ignored,
            decisive: outcome.decisive && outcome.status == Status::Unknown,
            follows: outcome.follows.filter(|_| outcome.status == Status::Fail),
            fix,
        }
    }
}

/// Every check preflight knows, in report order, as the newest release needs them. The ids are
/// the same for every release; which capabilities need a check can differ (registry_for).
pub fn registry() -> Vec<Check> {
    registry_for(BUILTIN.newest())
}

/// The checks with the needs of one release (its capability table says which capability needs
/// which kernel option and helper).
pub fn registry_for(release: &'static Release) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(bpf::checks(release));
    checks.extend(attach::checks());
    checks.extend(kernel::checks(release));
    checks.extend(modules::checks());
    checks.extend(mounts::checks());
    checks.extend(sysctl::checks());
    checks.extend(network::checks());
    checks.extend(cni::checks());
    checks.extend(k3s::checks());
    checks.extend(state::checks());
    checks.extend(distro::checks());
    checks.extend(compile::checks());
    checks.extend(profile::checks());
    checks.extend(values::checks());
    checks
}

/// Every kernel module a check judges (the `=m` modules of the kernel options, the flannel-side
/// modules), sorted and without duplicates: what a test node must carry for those checks to be
/// about the kernel rather than about missing files (`cargo xtask vm-test` ships these).
pub fn modules_checked() -> Vec<&'static str> {
    let mut all: Vec<_> = kernel::option_modules()
        .chain(modules::flannel_side_modules())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Runs every check. `ignore` holds check ids (kubeadm's --ignore-preflight-errors): an ignored
/// failure stays in the report but does not count against the verdict.
pub fn run_all(facts: &Facts, target: &Target, ignore: &[String]) -> Vec<CheckResult> {
    registry_for(target.release())
        .iter()
        .map(|check| check.run(facts, target, ignored(ignore, &check.id)))
        .collect()
}

/// Checks `--ignore` ids against the registry before anything runs. Every id a run can report
/// is in the registry (the helper checks `bpf.helper.<prog>.<helper>` too: one per helper Cilium
/// uses, fixed per build), so an id that is not there is a typo and would silently ignore
/// nothing. The error suggests the closest id.
pub fn validate_ignores(ids: &[String]) -> Result<(), String> {
    let known: Vec<String> = registry().into_iter().map(|c| c.id).collect();
    for id in ids {
        if id.is_empty() {
            return Err("--ignore: an empty check id (a stray comma?)".into());
        }
        if id == IGNORE_ALL || known.contains(id) {
            continue;
        }
        if is_glob(id) {
            let glob = globset::Glob::new(id)
                .map_err(|e| format!("--ignore: {id} is not a glob: {e}"))?
                .compile_matcher();
            if known.iter().any(|k| glob.is_match(k)) {
                continue;
            }
            return Err(format!(
                "--ignore: {id} matches no check id (`preflight checks` lists them)"
            ));
        }
        let closest = known
            .iter()
            .map(|k| (strsim::damerau_levenshtein(id, k), k))
            .min_by_key(|(d, _)| *d)
            .filter(|(d, k)| *d <= 3.max(k.len() / 5));
        return Err(match closest {
            Some((_, k)) => format!("--ignore: unknown check id {id}; did you mean {k}?"),
            None => format!("--ignore: unknown check id {id}; `preflight checks` lists the ids"),
        });
    }
    Ok(())
}

/// `--ignore all`: every check (kubeadm's `--ignore-preflight-errors=all`).
pub const IGNORE_ALL: &str = "all";

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Whether `--ignore` (ids, globs such as `kernel.config.*`, or `all`) covers the check `id`.
/// The patterns were validated first ([`validate_ignores`]); one that does not compile matches
/// nothing.
pub fn ignored(patterns: &[String], id: &str) -> bool {
    patterns.iter().any(|p| {
        p == IGNORE_ALL
            || p == id
            || (is_glob(p) && globset::Glob::new(p).is_ok_and(|g| g.compile_matcher().is_match(id)))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn check_ids_are_unique_dotted_and_start_with_their_area() {
        let mut seen = HashSet::new();
        for check in registry() {
            assert!(seen.insert(check.id.clone()), "duplicate id {}", check.id);
            let area = serde_json::to_value(check.area).unwrap();
            let prefix = format!("{}.", area.as_str().unwrap());
            assert!(
                check.id.starts_with(&prefix),
                "{} not under {prefix}",
                check.id
            );
            assert!(
                check
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)),
                "{} has characters outside [a-z0-9._-]",
                check.id
            );
        }
    }

    #[test]
    fn every_check_that_can_fail_has_a_remedy() {
        for check in registry() {
            if !check.needed_by.is_empty() {
                assert!(!check.remedy.is_empty(), "{} has no remedy", check.id);
            }
        }
    }

    #[test]
    fn ignore_takes_ids_globs_and_all() {
        let p = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_ignores(&p(&["kernel.config.*", "all", "mounts.bpffs"])).is_ok());
        assert!(ignored(&p(&["kernel.config.*"]), "kernel.config.geneve"));
        assert!(!ignored(&p(&["kernel.config.*"]), "kernel.release"));
        assert!(ignored(&p(&["all"]), "kernel.release"));
        assert!(!ignored(&p(&["kernel.releas"]), "kernel.release"));
        let e = validate_ignores(&p(&["nosuch.*"])).unwrap_err();
        assert!(e.contains("nosuch.* matches no check id"), "{e}");
        let e = validate_ignores(&p(&["kernel.[*"])).unwrap_err();
        assert!(e.contains("is not a glob"), "{e}");
        assert!(validate_ignores(&p(&[""])).is_err());
    }

    #[test]
    fn unknown_ignore_ids_are_refused_with_the_closest_id() {
        assert!(validate_ignores(&["mounts.bpffs".into(), "kernel.release".into()]).is_ok());
        let e = validate_ignores(&["mounts.bpfs".into()]).unwrap_err();
        assert_eq!(
            e,
            "--ignore: unknown check id mounts.bpfs; did you mean mounts.bpffs?"
        );
        let e = validate_ignores(&["nothing.like.it.at.all.zzzz".into()]).unwrap_err();
        assert!(
            e.contains("unknown check id") && !e.contains("did you mean"),
            "{e}"
        );
    }
}

//! How cilium-agent invokes clang for a target, read from the version's row of the release table
//! (cilium::releases, docs/upstream.md#datapath-compile: pkg/datapath/loader/compile.go): language
//! standard, warnings, defines, -mcpu rule, whether clang's output is piped through llc, and the
//! LLVM bundled in that version's image. This file knows no version numbers.
use serde::Serialize;

pub use crate::cilium::releases::McpuRule;
use crate::{
    cilium::{
        CiliumVersion,
        releases::{BUILTIN, RELEASES, Release},
    },
    probe::ProbeReport,
};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// The compile generation: the oldest Cilium minor (1.`minor`) with the same compile facts
    /// (18 stands for 1.18 and every later minor that compiles the same way).
    pub minor: u32,
    pub std: &'static str,
    pub warnings: &'static [&'static str],
    /// `-D__NR_CPUS__=<possible cpus>` (dropped in 1.18).
    pub nr_cpus: bool,
    /// `-ftrap-function=__undefined_trap` (1.18+).
    pub trap_function: bool,
    /// `clang -emit-llvm | llc -march=bpf` (1.14) instead of one clang call.
    pub llc_pipeline: bool,
    /// Major of the LLVM bundled in the image (cilium/image-tools).
    pub bundled_llvm: u32,
    /// Its full version (docs/upstream.md#datapath-compile: 10.0.0, 17.0.6, 18.1.8, 19.1.7).
    pub bundled_llvm_version: String,
    pub mcpu_rule: McpuRule,
    /// `-DCALLS_MAP=cilium_calls_overlay_2` for bpf_overlay.c (up to 1.17).
    pub overlay_calls_map: bool,
    /// The first clang major whose warnings break these sources (19 for 1.14–1.16).
    pub clang_breaks_from: Option<u32>,
}

/// Oldest and newest compile generations the release table has.
pub const OLDEST: u32 = RELEASES[0].compile.generation;
pub const NEWEST: u32 = RELEASES[RELEASES.len() - 1].compile.generation;

/// The profile for a target's release.
pub fn for_release(release: &Release) -> Profile {
    let c = release.compile;
    Profile {
        minor: c.generation,
        std: c.std,
        warnings: c.warnings,
        nr_cpus: c.nr_cpus,
        trap_function: c.trap_function,
        llc_pipeline: c.llc_pipeline,
        bundled_llvm: c.bundled_llvm.0,
        bundled_llvm_version: {
            let (major, minor, patch) = c.bundled_llvm;
            format!("{major}.{minor}.{patch}")
        },
        mcpu_rule: c.mcpu_rule,
        overlay_calls_map: c.overlay_calls_map,
        clang_breaks_from: c.clang_breaks_from,
    }
}

/// The profile for a version of the built-in table, or why there is none.
pub fn for_version(version: &CiliumVersion) -> Result<Profile, String> {
    Ok(for_release(BUILTIN.resolve(version)?.release))
}

/// The profile of compile generation 1.`minor` of the built-in table (tests, header models).
pub fn for_minor(minor: u32) -> Profile {
    let release = BUILTIN
        .releases
        .iter()
        .find(|r| r.compile.generation == minor)
        .or_else(|| BUILTIN.find((1, minor)))
        .unwrap_or_else(|| BUILTIN.newest());
    for_release(release)
}

impl Profile {
    /// Whether clang of this major fails these sources where the agent's LLVM does not.
    pub fn clang_breaks(&self, major: u32) -> bool {
        self.clang_breaks_from.is_some_and(|from| major >= from)
    }

    pub fn label(&self) -> String {
        if self.minor >= NEWEST {
            format!("1.{}+", self.minor)
        } else {
            format!("1.{}", self.minor)
        }
    }
}

/// The `-mcpu` the agent would pass, and why. Without probe results we cannot tell what the
/// kernel supports; v2 is the conservative middle (every 4.14+ kernel has it).
pub fn choose_mcpu(profile: &Profile, probes: Option<&ProbeReport>) -> (String, String) {
    let Some(p) = probes else {
        return (
            "v2".into(),
            "no live probe results: assumed the v2 ISA (every kernel Cilium supports has it)"
                .into(),
        );
    };
    let has = |name: &str| p.misc.get(name).is_some_and(|s| s.is_available());
    let neigh = p
        .helper("sched_cls", "redirect_neigh")
        .is_some_and(|s| s.is_available());
    let v3 = match profile.mcpu_rule {
        McpuRule::Isa => has("isa_v3"),
        McpuRule::Jmp32AndRedirectNeigh => has("isa_v3") && neigh,
    };
    if v3 {
        let why = match profile.mcpu_rule {
            McpuRule::Isa => "probe: v3 ISA available",
            McpuRule::Jmp32AndRedirectNeigh => {
                "probe: JMP32 (v3 ISA) and bpf_redirect_neigh for sched_cls available"
            }
        };
        ("v3".into(), why.into())
    } else if has("isa_v2") {
        (
            "v2".into(),
            "probe: v2 ISA available, v3 conditions not met".into(),
        )
    } else {
        ("v1".into(), "probe: no v2 ISA".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Result<Profile, String> {
        for_version(&CiliumVersion::parse(text)?)
    }

    #[test]
    fn versions_map_to_profiles_as_facts_say() {
        let p14 = version("1.14.19").unwrap();
        assert!(p14.llc_pipeline && p14.nr_cpus && p14.std == "gnu89");
        assert_eq!(
            (p14.bundled_llvm, p14.bundled_llvm_version.as_str()),
            (10, "10.0.0")
        );
        assert_eq!(version("v1.16").unwrap().bundled_llvm, 17);
        assert_eq!(version("1.17.2").unwrap().bundled_llvm, 18);
        for v in ["1.19.0", "1.20", "1.20.0-dev"] {
            let p = version(v).unwrap();
            assert_eq!((p.minor, p.std, p.bundled_llvm), (18, "gnu99", 19), "{v}");
            assert_eq!(p.label(), "1.18+");
            assert!(p.warnings.contains(&"-Wimplicit-fallthrough"));
            assert!(!p.warnings.contains(&"-Wdeclaration-after-statement"));
            assert!(!p.nr_cpus && p.trap_function && !p.overlay_calls_map);
        }
        assert_eq!((OLDEST, NEWEST), (14, 18));
        assert!(version("1.13").is_err());
        assert!(version("2.0").is_err());
        assert!(version("latest").is_err());
    }

    #[test]
    fn mcpu_without_probes_is_v2() {
        assert_eq!(choose_mcpu(&for_minor(18), None).0, "v2");
    }
}

#[cfg(test)]
mod mcpu_tests {

    use super::*;

    fn probes(v3: bool, neigh: bool) -> ProbeReport {
        ProbeReport::stated(
            &[("sched_cls", "redirect_neigh", neigh)],
            &[("isa_v2", true), ("isa_v3", v3)],
        )
    }

    #[test]
    fn up_to_1_17_v3_also_needs_redirect_neigh_from_1_18_only_the_isa() {
        let no_neigh = probes(true, false);
        assert_eq!(choose_mcpu(&for_minor(17), Some(&no_neigh)).0, "v2");
        assert_eq!(choose_mcpu(&for_minor(18), Some(&no_neigh)).0, "v3");
        assert_eq!(
            choose_mcpu(&for_minor(16), Some(&probes(true, true))).0,
            "v3"
        );
        assert_eq!(
            choose_mcpu(&for_minor(18), Some(&probes(false, true))).0,
            "v2"
        );
    }
}

//! How cilium-agent invokes clang, per Cilium minor, as data (../shared/FACTS.md §1, from
//! pkg/datapath/loader/compile.go): language standard, warnings, defines, -mcpu rule, whether
//! clang's output is piped through llc, and the LLVM bundled in that version's image.
use serde::Serialize;

use crate::probe::ProbeReport;

/// How the agent picks `-mcpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpuRule {
    /// Up to 1.17: v3 when the kernel has JMP32 *and* bpf_redirect_neigh for sched_cls, else v2
    /// when it has the v2 ISA, else v1.
    Jmp32AndRedirectNeigh,
    /// 1.18+: v3 when the kernel has the v3 ISA, else v2/v1 as above.
    Isa,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Cilium minor (1.`minor`) of the target; its flags are 1.18's from 1.18 on.
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
    /// Its full version (FACTS §1: 10.0.0, 17.0.6, 18.1.8, 19.1.7).
    pub bundled_llvm_version: &'static str,
    pub mcpu_rule: McpuRule,
    /// `-DCALLS_MAP=cilium_calls_overlay_2` for bpf_overlay.c (up to 1.17).
    pub overlay_calls_map: bool,
}

const WARNINGS_1_14: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wno-address-of-packed-member",
    "-Wno-unknown-warning-option",
    "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wdeclaration-after-statement",
    "-Wimplicit-int-conversion",
    "-Wenum-conversion",
];

const WARNINGS_1_18: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wno-address-of-packed-member",
    "-Wno-unknown-warning-option",
    "-Wno-gnu-variable-sized-type-not-at-end",
    "-Wimplicit-int-conversion",
    "-Wenum-conversion",
    "-Wimplicit-fallthrough",
];

/// Oldest and newest minors with a profile.
pub const OLDEST: u32 = 14;
pub const NEWEST: u32 = 18;

/// The profile for a Cilium version such as "1.16.3" or "v1.18". Versions past 1.18 use the
/// 1.18 rules (and keep their own minor); versions before 1.14 are refused (no facts for them).
pub fn for_version(version: &str) -> Result<Profile, String> {
    let minor = parse_minor(version)?;
    if minor < OLDEST {
        return Err(format!(
            "Cilium {version}: compile profiles start at 1.{OLDEST}"
        ));
    }
    Ok(for_minor(minor))
}

pub fn parse_minor(version: &str) -> Result<u32, String> {
    let v = version.trim().trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let minor = parts.next().and_then(|m| m.parse::<u32>().ok());
    match (major, minor) {
        (Some(1), Some(minor)) => Ok(minor),
        _ => Err(format!(
            "'{version}' is not a Cilium version like 1.16 or 1.18.4"
        )),
    }
}

pub fn for_minor(minor: u32) -> Profile {
    let modern = minor >= 18;
    Profile {
        minor,
        std: if modern { "gnu99" } else { "gnu89" },
        warnings: if modern { WARNINGS_1_18 } else { WARNINGS_1_14 },
        nr_cpus: !modern,
        trap_function: modern,
        llc_pipeline: minor == 14,
        bundled_llvm: match minor {
            ..=15 => 10,
            16 => 17,
            17 => 18,
            _ => 19,
        },
        bundled_llvm_version: match minor {
            ..=15 => "10.0.0",
            16 => "17.0.6",
            17 => "18.1.8",
            _ => "19.1.7",
        },
        mcpu_rule: if modern {
            McpuRule::Isa
        } else {
            McpuRule::Jmp32AndRedirectNeigh
        },
        overlay_calls_map: !modern,
    }
}

impl Profile {
    pub fn label(&self) -> String {
        if self.minor >= NEWEST {
            format!("1.{NEWEST}+")
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

    #[test]
    fn versions_map_to_profiles_as_facts_say() {
        let p14 = for_version("1.14.19").unwrap();
        assert!(p14.llc_pipeline && p14.nr_cpus && p14.std == "gnu89");
        assert_eq!(p14.bundled_llvm, 10);
        assert_eq!(for_version("v1.16").unwrap().bundled_llvm, 17);
        assert_eq!(for_version("1.17.2").unwrap().bundled_llvm, 18);
        let p18 = for_version("1.19.0").unwrap();
        assert_eq!((p18.minor, p18.std, p18.bundled_llvm), (19, "gnu99", 19));
        assert_eq!(p18.label(), "1.18+");
        assert!(p18.warnings.contains(&"-Wimplicit-fallthrough"));
        assert!(!p18.warnings.contains(&"-Wdeclaration-after-statement"));
        assert!(!p18.nr_cpus && p18.trap_function && !p18.overlay_calls_map);
        assert!(for_version("1.13").is_err());
        assert!(for_version("2.0").is_err());
        assert!(for_version("latest").is_err());
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

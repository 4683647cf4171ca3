//! Which clang compiles the datapath: every clang-NN / llc-NN on PATH and in
//! /usr/lib/llvm-NN/bin, their versions, and the one that fits the target best. The real agent
//! uses the LLVM bundled in its image (10 / 17 / 18 / 19); a different major can fail where the
//! agent would not (or pass where it would fail), so the choice and its risk are reported.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Serialize;

use super::profile::Profile;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Toolchain {
    pub clang: PathBuf,
    pub major: u32,
    pub version: String,
    /// llc of the same major (needed by the 1.14 pipeline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llc: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    /// Same major as the image's LLVM.
    Exact,
    /// The nearest major we have; `risk` says what can differ.
    Nearest,
    /// `--clang PATH`.
    Override,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub toolchain: Toolchain,
    pub fit: Fit,
    pub wanted_major: u32,
    /// What using this clang instead of the image's LLVM risks; None for an exact match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    /// Every toolchain found, for the report.
    pub found: Vec<Toolchain>,
}

/// Parses `clang --version` / `llc --version` output: "clang version 19.1.7 (...)" or
/// "LLVM version 16.0.6".
pub fn parse_version(text: &str) -> Option<(u32, String)> {
    let rest = text
        .lines()
        .find_map(|l| {
            l.split_once("clang version ")
                .or(l.split_once("LLVM version "))
        })?
        .1;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let major = version.split('.').next()?.parse().ok()?;
    Some((major, version))
}

fn version_of(tool: &Path) -> Option<(u32, String)> {
    if let Some(known) = versions::lookup(tool) {
        return Some(known);
    }
    let out = Command::new(tool).arg("--version").output().ok()?;
    let found = parse_version(&String::from_utf8_lossy(&out.stdout))?;
    versions::remember(tool, &found);
    Some(found)
}

/// What `--version` said per binary, kept next to the object cache and keyed by the file's
/// size and modification time: each `--version` is a process start that maps all of LLVM
/// (tens of milliseconds, more on a busy machine), and a toolchain rarely changes between runs.
pub mod versions {
    use std::{
        collections::BTreeMap,
        path::{Path, PathBuf},
        sync::Mutex,
        time::SystemTime,
    };

    const FILE: &str = "toolchains.txt";
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

    /// Where to keep the table (the object cache's dir); None: no table.
    pub fn set_dir(dir: Option<PathBuf>) {
        if let Ok(mut d) = DIR.lock() {
            *d = dir;
        }
    }

    fn stamp(tool: &Path) -> Option<String> {
        let canonical = tool.canonicalize().ok()?;
        let meta = std::fs::metadata(&canonical).ok()?;
        let mtime = meta
            .modified()
            .ok()?
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some(format!("{}\t{}\t{mtime}", canonical.display(), meta.len()))
    }

    fn table(dir: &Path) -> BTreeMap<String, (u32, String)> {
        let Ok(text) = std::fs::read_to_string(dir.join(FILE)) else {
            return BTreeMap::new();
        };
        text.lines()
            .filter_map(|l| {
                let mut parts = l.rsplitn(3, '\t');
                let version = parts.next()?.to_string();
                let major = parts.next()?.parse().ok()?;
                Some((parts.next()?.to_string(), (major, version)))
            })
            .take(256)
            .collect()
    }

    pub fn lookup(tool: &Path) -> Option<(u32, String)> {
        let dir = DIR.lock().ok()?.clone()?;
        table(&dir).remove(&stamp(tool)?)
    }

    pub fn remember(tool: &Path, found: &(u32, String)) {
        let Some(dir) = DIR.lock().ok().and_then(|d| d.clone()) else {
            return;
        };
        let Some(key) = stamp(tool) else {
            return;
        };
        let mut t = table(&dir);
        t.insert(key, found.clone());
        let text: String = t
            .iter()
            .map(|(k, (m, v))| format!("{k}\t{m}\t{v}\n"))
            .collect();
        if std::fs::create_dir_all(&dir).is_ok()
            && let Ok(tmp) = tempfile::NamedTempFile::new_in(&dir)
            && std::fs::write(tmp.path(), text).is_ok()
        {
            let _ = tmp.persist(dir.join(FILE));
        }
    }
}

/// Describes one clang binary (for `--clang PATH` and discovery). The llc is looked up later,
/// only for the toolchain that is chosen: each `--version` costs a process start.
pub fn inspect(clang: &Path) -> Result<Toolchain, String> {
    let (major, version) =
        version_of(clang).ok_or_else(|| format!("{}: not a runnable clang", clang.display()))?;
    Ok(Toolchain {
        clang: clang.to_path_buf(),
        major,
        version,
        llc: None,
    })
}

fn with_llc(mut t: Toolchain) -> Toolchain {
    t.llc = find_llc(&t.clang, t.major);
    t
}

fn find_llc(clang: &Path, major: u32) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = clang.parent() {
        candidates.push(dir.join(format!("llc-{major}")));
        candidates.push(dir.join("llc"));
    }
    candidates.push(PathBuf::from(format!("/usr/lib/llvm-{major}/bin/llc")));
    candidates
        .into_iter()
        .find(|c| c.is_file() && version_of(c).is_some_and(|(m, _)| m == major))
}

/// Candidate clang paths: `clang` and `clang-NN` in every PATH directory, plus
/// /usr/lib/llvm-NN/bin/clang.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let numbered = name
                .strip_prefix("clang-")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if name == "clang" || numbered {
                out.push(e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("llvm-") {
                out.push(e.path().join("bin/clang"));
            }
        }
    }
    out.retain(|p| p.is_file());
    out
}

/// Every clang found, one per major (the first found wins: PATH order).
pub fn discover() -> Vec<Toolchain> {
    // clang-19 and /usr/lib/llvm-19/bin/clang are usually one binary: ask each file once, and
    // ask them all at the same time.
    let mut seen = std::collections::BTreeSet::new();
    let unique: Vec<PathBuf> = candidates()
        .into_iter()
        .filter(|c| seen.insert(c.canonicalize().unwrap_or_else(|_| c.clone())))
        .collect();
    let inspected: Vec<Option<Toolchain>> = std::thread::scope(|s| {
        let handles: Vec<_> = unique
            .iter()
            .map(|c| s.spawn(move || inspect(c).ok()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut by_major: BTreeMap<u32, Toolchain> = BTreeMap::new();
    for t in inspected.into_iter().flatten() {
        by_major.entry(t.major).or_insert(t);
    }
    by_major.into_values().collect()
}

/// What compiling `profile`'s sources with clang `major` risks, compared with the image's LLVM.
pub fn risk(profile: &Profile, major: u32) -> Option<String> {
    let wanted = profile.bundled_llvm;
    if major == wanted {
        return None;
    }
    let mut risks = vec![format!(
        "the Cilium {} image compiles with LLVM {wanted}; clang {major} may warn, optimise and \
         emit differently, so a result here is close to but not exactly the agent's",
        profile.label()
    )];
    if profile.clang_breaks(major) {
        risks.push(format!(
            "clang >= 19 moved -Wshorten-64-to-32 under -Wimplicit-int-conversion: Cilium {} \
             sources fail with errors the agent (LLVM {wanted}) does not hit",
            profile.label()
        ));
    }
    if major < 10 {
        risks.push("clang < 10 lacks BTF/CO-RE support the sources rely on".into());
    }
    Some(risks.join("; "))
}

/// Picks the clang for a profile: `--clang` wins; else the exact major; else the nearest, avoiding
/// clang >= 19 for sources up to 1.16 (docs/upstream.md#datapath-compile: clang 14 and 16 compile
/// 1.14 onwards).
pub fn choose(
    found: Vec<Toolchain>,
    profile: &Profile,
    override_clang: Option<&Path>,
) -> Result<Choice, String> {
    let wanted = profile.bundled_llvm;
    if let Some(path) = override_clang {
        // Absolute: the jobs run clang from the scratch dir, where `./clang` means nothing.
        // A bare name (`clang-19`) stays a PATH lookup.
        let path = if path.components().count() > 1 || path.is_absolute() {
            std::path::absolute(path).map_err(|e| format!("--clang {}: {e}", path.display()))?
        } else {
            path.to_path_buf()
        };
        let t = inspect(&path)?;
        let t = if profile.llc_pipeline { with_llc(t) } else { t };
        return Ok(Choice {
            risk: risk(profile, t.major),
            fit: Fit::Override,
            toolchain: t,
            wanted_major: wanted,
            found,
        });
    }
    let mut ranked: Vec<&Toolchain> = found.iter().collect();
    ranked.sort_by_key(|t| {
        let too_new = profile.clang_breaks(t.major);
        (
            too_new,
            t.major.abs_diff(wanted),
            std::cmp::Reverse(t.major),
        )
    });
    // The 1.14 pipeline needs an llc of the same major: the best clang that has one. Other
    // versions never run llc, so none is looked for (each lookup is a process start).
    let best = if profile.llc_pipeline {
        ranked
            .into_iter()
            .map(|t| match &t.llc {
                Some(_) => t.clone(),
                None => with_llc(t.clone()),
            })
            .find(|t| t.llc.is_some())
    } else {
        ranked.into_iter().next().cloned()
    };
    let Some(t) = best else {
        let what = if profile.llc_pipeline {
            "a clang with an llc of the same major (Cilium 1.14 pipes clang into llc)"
        } else {
            "a clang"
        };
        return Err(format!(
            "no usable toolchain: need {what}; found {}. Install clang-{wanted} (or the nearest \
             your distribution has) or pass --clang PATH",
            if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|t| t.clang.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    };
    Ok(Choice {
        fit: if t.major == wanted {
            Fit::Exact
        } else {
            Fit::Nearest
        },
        risk: risk(profile, t.major),
        toolchain: t,
        wanted_major: wanted,
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::profile::for_minor;

    fn tc(major: u32, llc: bool) -> Toolchain {
        Toolchain {
            clang: PathBuf::from(format!("/usr/bin/clang-{major}")),
            major,
            version: format!("{major}.0.0"),
            llc: llc.then(|| PathBuf::from(format!("/usr/bin/llc-{major}"))),
        }
    }

    #[test]
    fn parses_clang_and_llc_versions() {
        let clang = "Debian clang version 19.1.7 (3~deb12u1)\nTarget: x86_64-pc-linux-gnu\n";
        assert_eq!(parse_version(clang), Some((19, "19.1.7".into())));
        let llc = "Debian LLVM version 16.0.6\n  Optimized build.\n";
        assert_eq!(parse_version(llc), Some((16, "16.0.6".into())));
        assert_eq!(parse_version("gcc (Debian 12.2.0-14) 12.2.0"), None);
    }

    #[test]
    fn prefers_exact_then_nearest_that_does_not_break_old_sources() {
        let found = vec![tc(16, true), tc(19, true)];
        let c = choose(found.clone(), &for_minor(18), None).unwrap();
        assert_eq!((c.toolchain.major, c.fit), (19, Fit::Exact));
        assert!(c.risk.is_none());
        // 1.16 bundles LLVM 17: 16 is nearer than 19, and 19 would break the sources anyway.
        let c = choose(found.clone(), &for_minor(16), None).unwrap();
        assert_eq!((c.toolchain.major, c.fit), (16, Fit::Nearest));
        assert!(c.risk.unwrap().contains("LLVM 17"));
        // 1.17 bundles 18: 19 is nearest and 1.17 sources are fixed for it.
        assert_eq!(
            choose(found.clone(), &for_minor(17), None)
                .unwrap()
                .toolchain
                .major,
            19
        );
        // Only clang 19 for 1.15: chosen, with the -Wshorten-64-to-32 risk spelled out.
        let c = choose(vec![tc(19, true)], &for_minor(15), None).unwrap();
        assert!(c.risk.unwrap().contains("-Wshorten-64-to-32"));
    }

    #[test]
    fn the_llc_pipeline_needs_an_llc_of_the_same_major() {
        // A major nobody installs: no llc-31 anywhere, so 1.14's pipeline cannot use it.
        assert!(choose(vec![tc(31, false)], &for_minor(14), None).is_err());
        assert!(choose(vec![tc(31, false)], &for_minor(15), None).is_ok());
        let err = choose(vec![], &for_minor(18), None).unwrap_err();
        assert!(err.contains("clang-19"), "{err}");
    }
}

//! Kernel modules: built in (modules.builtin), loaded (/proc/modules), loadable (listed in
//! modules.dep and the .ko/.ko.xz/.ko.zst file present), or missing.
use std::collections::{BTreeMap, BTreeSet};

use super::{HostRoot, ReadError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    Builtin,
    Loaded,
    /// Not loaded; its file is present and modprobe can load it.
    Loadable {
        file: String,
    },
    /// Listed in modules.dep, but the file is gone (partial package, wrong kernel).
    FileMissing {
        file: String,
    },
    Missing,
    /// Could not tell: no module directory is visible for this kernel, or it has no readable
    /// modules.dep (`why` says which).
    Unknown {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModuleIndex {
    /// `/lib/modules/<release>` as found (evidence), if any.
    pub dir: Option<String>,
    pub builtin: BTreeSet<String>,
    pub loaded: BTreeSet<String>,
    /// Whether /proc/modules was readable (CONFIG_MODULES=n kernels have none).
    pub loaded_visible: bool,
    /// Module name → file relative to the module directory.
    pub available: BTreeMap<String, String>,
    /// Files that exist but could not be parsed.
    pub problems: Vec<String>,
}

/// `nf-conntrack` and `nf_conntrack` are the same module.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/net/vxlan.ko.zst` → `vxlan`.
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file
        .strip_suffix(".ko")
        .or_else(|| file.strip_suffix(".ko.xz"))
        .or_else(|| file.strip_suffix(".ko.zst"))
        .or_else(|| file.strip_suffix(".ko.gz"))?;
    (!stem.is_empty()).then(|| normalize(stem))
}

pub fn gather(host: &HostRoot, release: Option<&str>) -> ModuleIndex {
    let mut index = ModuleIndex::default();
    match host.read_text("/proc/modules") {
        Ok(text) => {
            index.loaded_visible = true;
            index.loaded = text
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(normalize)
                .collect();
        }
        Err(ReadError::NotFound(_)) => {}
        Err(e) => index.problems.push(e.to_string()),
    }
    let Some(release) = release else {
        return index;
    };
    let dir = [
        format!("/lib/modules/{release}"),
        format!("/usr/lib/modules/{release}"),
    ]
    .into_iter()
    .find(|d| host.is_dir(d));
    let Some(dir) = dir else {
        return index;
    };
    match host.read_text(&format!("{dir}/modules.builtin")) {
        Ok(text) => index.builtin = text.lines().filter_map(module_name).collect(),
        Err(ReadError::NotFound(_)) => {}
        Err(e) => index.problems.push(e.to_string()),
    }
    let dep = format!("{dir}/modules.dep");
    match host.read_text(&dep) {
        Ok(text) => match parse_dep(&text) {
            Ok(available) => index.available = available,
            Err(line) => index.problems.push(format!(
                "{}:{line}: not a modules.dep line",
                host.display(&dep)
            )),
        },
        Err(ReadError::NotFound(_)) => index.problems.push(format!(
            "{}: missing (run depmod); loadable modules not known",
            host.display(&dep)
        )),
        Err(e) => index.problems.push(e.to_string()),
    }
    index.dir = Some(dir);
    index
}

/// `kernel/drivers/net/vxlan/vxlan.ko.xz: kernel/net/ipv4/udp_tunnel.ko.xz` lines; the error is
/// the first line that is not one.
pub fn parse_dep(text: &str) -> Result<BTreeMap<String, String>, usize> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((file, _deps)) = line.split_once(':') else {
            return Err(i + 1);
        };
        let file = file.trim();
        let name = module_name(file).ok_or(i + 1)?;
        out.insert(name, file.to_string());
    }
    Ok(out)
}

impl ModuleIndex {
    pub fn state(&self, host: &HostRoot, name: &str) -> ModuleState {
        let name = normalize(name);
        if self.builtin.contains(&name) {
            return ModuleState::Builtin;
        }
        if self.loaded.contains(&name) {
            return ModuleState::Loaded;
        }
        let Some(dir) = &self.dir else {
            return ModuleState::Unknown {
                why: "no module directory for this kernel is visible".into(),
            };
        };
        match self.available.get(&name) {
            Some(file) => {
                let full = format!("{dir}/{file}");
                if host.exists(&full) {
                    ModuleState::Loadable {
                        file: host.display(&full),
                    }
                } else {
                    ModuleState::FileMissing {
                        file: host.display(&full),
                    }
                }
            }
            // Without a readable modules.dep absence proves nothing.
            None if self.available.is_empty() => ModuleState::Unknown {
                why: format!(
                    "{} is visible but has no readable modules.dep (run `depmod -a`)",
                    host.display(dir)
                ),
            },
            None => ModuleState::Missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_every_compression() {
        assert_eq!(
            module_name("kernel/net/vxlan.ko.zst").as_deref(),
            Some("vxlan")
        );
        assert_eq!(
            module_name("a/br-netfilter.ko.xz").as_deref(),
            Some("br_netfilter")
        );
        assert_eq!(module_name("a/sch_fq.ko").as_deref(), Some("sch_fq"));
        assert_eq!(module_name("a/readme.txt"), None);
    }

    #[test]
    fn dep_lines_parse_and_garbage_names_its_line() {
        let m =
            parse_dep("kernel/a/vxlan.ko.xz: kernel/b/udp_tunnel.ko.xz\n\nkernel/c/geneve.ko:\n")
                .unwrap();
        assert_eq!(m["vxlan"], "kernel/a/vxlan.ko.xz");
        assert_eq!(m["geneve"], "kernel/c/geneve.ko");
        assert_eq!(parse_dep("kernel/a/x.ko:\nbinary junk\n"), Err(2));
    }
}

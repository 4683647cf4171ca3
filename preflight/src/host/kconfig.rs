//! The kernel's build configuration, from the first readable location of the list
//! kubernetes/system-validators uses (docs/upstream.md#kernel-config). Not visible is "unknown",
//! never "missing".
use std::{collections::BTreeMap, io::Read};

use super::{HostRoot, MAX_FILE_BYTES, ReadError};
use crate::model::Gathered;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `=y`
    Builtin,
    /// `=m`
    Module,
    /// Any other value (`=0x10`, `="string"`).
    Value(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelConfig {
    /// The file it came from (evidence).
    pub source: String,
    /// `CONFIG_` prefix stripped. Options "is not set" are absent.
    pub options: BTreeMap<String, Setting>,
}

impl KernelConfig {
    pub fn get(&self, option: &str) -> Option<&Setting> {
        self.options.get(option)
    }
}

/// What the search found: a config ([`Gathered::Got`]), or could not tell and why
/// ([`Gathered::Unknown`] of [`NotVisible`]). Never skipped: every root has a kernel.
pub type KernelConfigFact = Gathered<KernelConfig, NotVisible>;

/// Why no config could be read: where it was looked for, and what was wrong with the files that
/// were there (checks word "none exists" and "none usable" differently).
#[derive(Debug, Clone, PartialEq)]
pub struct NotVisible {
    pub searched: Vec<String>,
    /// Files that exist but could not be used, with the reason (file and line).
    pub problems: Vec<String>,
}

/// Locations in the order they are tried, for kernel `release`.
pub fn locations(release: &str) -> Vec<String> {
    vec![
        "/proc/config.gz".into(),
        format!("/boot/config-{release}"),
        format!("/usr/src/linux-{release}/.config"),
        "/usr/src/linux/.config".into(),
        format!("/usr/lib/modules/{release}/config"),
        format!("/usr/lib/ostree-boot/config-{release}"),
        format!("/usr/lib/kernel/config-{release}"),
        format!("/usr/src/linux-headers-{release}/.config"),
        format!("/lib/modules/{release}/build/.config"),
    ]
}

pub fn gather(host: &HostRoot, release: Option<&str>) -> KernelConfigFact {
    let mut searched = Vec::new();
    let mut problems = Vec::new();
    let candidates = match release {
        Some(r) => locations(r),
        // Without a release only the unversioned locations make sense.
        None => vec!["/proc/config.gz".into(), "/usr/src/linux/.config".into()],
    };
    for path in candidates {
        searched.push(host.display(&path));
        match read_one(host, &path) {
            Ok(config) => return Gathered::Got(config),
            Err(ReadError::NotFound(_)) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    Gathered::Unknown(NotVisible { searched, problems })
}

fn read_one(host: &HostRoot, path: &str) -> Result<KernelConfig, ReadError> {
    let bytes = host.read_bytes(path)?;
    let shown = host.display(path);
    let bytes = if path.ends_with(".gz") {
        gunzip(&bytes).map_err(|e| ReadError::Io(shown.clone(), format!("not gzip: {e}")))?
    } else {
        bytes
    };
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(shown, MAX_FILE_BYTES));
    }
    let text = super::text(bytes, || shown.clone())?;
    let options =
        parse(&text).map_err(|(line, why)| ReadError::Io(format!("{shown}:{line}"), why))?;
    Ok(KernelConfig {
        source: shown,
        options,
    })
}

/// Decompresses at most [`MAX_FILE_BYTES`] + 1 bytes (a gzip bomb stops there).
pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Parses `CONFIG_X=value` lines. A line that is neither that, a comment nor blank means the file
/// is corrupt or truncated: the whole file is refused (returning the line), because a partial
/// config would turn options into false "not set" failures.
pub fn parse(text: &str) -> Result<BTreeMap<String, Setting>, (usize, String)> {
    let mut options = BTreeMap::new();
    let mut last_line = 0;
    let (mut menu_ends, mut last_menu_end) = (false, false);
    for (i, line) in text.lines().enumerate() {
        last_line = i + 1;
        let line = line.trim();
        if let Some(menu) = line.strip_prefix("# end of ") {
            menu_ends = true;
            last_menu_end |= menu == LAST_MENU;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line
            .strip_prefix("CONFIG_")
            .and_then(|rest| rest.split_once('='))
        else {
            return Err((i + 1, "not a CONFIG_NAME=value line".into()));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err((i + 1, format!("bad option name {name:?}")));
        }
        if value.is_empty() {
            return Err((i + 1, format!("CONFIG_{name} has no value (truncated?)")));
        }
        let setting = match value {
            "y" => Setting::Builtin,
            "m" => Setting::Module,
            "n" => continue,
            v => Setting::Value(v.trim_matches('"').to_string()),
        };
        options.insert(name.to_string(), setting);
    }
    if options.is_empty() {
        return Err((
            last_line.max(1),
            "no CONFIG_ options: not a kernel config".into(),
        ));
    }
    // A cut at a line boundary parses cleanly; Kconfig's menu markers give it away.
    if menu_ends && !last_menu_end {
        return Err((
            last_line.max(1),
            format!(
                "cut short: the file has Kconfig's `# end of …` menu markers but not the last \
                 one, `# end of {LAST_MENU}` (truncated?)"
            ),
        ));
    }
    Ok(options)
}

/// Kconfig (5.3+) closes every menu with `# end of <menu>`; the top-level Kconfig sources
/// lib/Kconfig.debug, the "Kernel hacking" menu, last, on every architecture. A file with
/// markers but without this one was cut off. Older configs have no markers: nothing to tell.
const LAST_MENU: &str = "Kernel hacking";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_builtin_module_value_and_not_set() {
        let opts = parse("# comment\nCONFIG_BPF=y\nCONFIG_VXLAN=m\n# CONFIG_GENEVE is not set\nCONFIG_HZ=250\nCONFIG_S=\"x\"\n").unwrap();
        assert_eq!(opts["BPF"], Setting::Builtin);
        assert_eq!(opts["VXLAN"], Setting::Module);
        assert_eq!(opts["HZ"], Setting::Value("250".into()));
        assert_eq!(opts["S"], Setting::Value("x".into()));
        assert!(!opts.contains_key("GENEVE"));
    }

    #[test]
    fn truncated_or_garbage_configs_name_the_line() {
        assert_eq!(parse("CONFIG_BPF=y\nCONFIG_VX").unwrap_err().0, 2);
        assert_eq!(parse("CONFIG_BPF=y\nCONFIG_VXLAN=").unwrap_err().0, 2);
        assert_eq!(parse("hello world").unwrap_err().0, 1);
        // Cut at a line boundary: markers present, the last one missing.
        let cut = "CONFIG_BPF=y\n# end of General setup\nCONFIG_VXLAN=m\n";
        assert!(parse(cut).unwrap_err().1.contains("cut short"));
        assert!(parse(&format!("{cut}# end of Kernel hacking\nCONFIG_X=y\n")).is_ok());
        assert_eq!(parse("").unwrap_err().0, 1);
    }

    #[test]
    fn reads_proc_config_gz_and_refuses_garbage_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"CONFIG_BPF=y\n").unwrap();
        std::fs::write(dir.path().join("proc/config.gz"), gz.finish().unwrap()).unwrap();
        let host = HostRoot::new(dir.path());
        let KernelConfigFact::Got(c) = gather(&host, Some("6.1.0")) else {
            panic!("not found")
        };
        assert_eq!(c.get("BPF"), Some(&Setting::Builtin));
        std::fs::write(dir.path().join("proc/config.gz"), b"\x1f\x8bgarbage").unwrap();
        let KernelConfigFact::Unknown(NotVisible { problems, .. }) = gather(&host, Some("6.1.0"))
        else {
            panic!("garbage accepted")
        };
        assert!(
            problems[0].contains("proc/config.gz: not gzip"),
            "{problems:?}"
        );
    }
}

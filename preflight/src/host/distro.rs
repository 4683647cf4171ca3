//! Distribution and packet filtering: os-release, the iptables backend (legacy or nft),
//! NetworkManager's unmanaged devices, firewalld.
use std::collections::BTreeMap;

use super::{HostRoot, ReadError};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OsRelease {
    pub file: String,
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
    pub id_like: Option<String>,
}

impl OsRelease {
    pub fn gather(host: &HostRoot) -> Result<Self, ReadError> {
        let path = ["/etc/os-release", "/usr/lib/os-release"]
            .into_iter()
            .find(|p| host.exists(p))
            .unwrap_or("/etc/os-release");
        let text = host.read_text(path)?;
        let fields = parse_os_release(&text);
        Ok(Self {
            file: host.display(path),
            id: fields.get("ID").cloned(),
            version_id: fields.get("VERSION_ID").cloned(),
            pretty_name: fields.get("PRETTY_NAME").cloned(),
            id_like: fields.get("ID_LIKE").cloned(),
        })
    }
}

/// `KEY=value` / `KEY="value"` lines; anything else is ignored, as systemd does.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            if k.is_empty() || k.starts_with('#') {
                return None;
            }
            Some((k.to_string(), v.trim_matches(['"', '\'']).to_string()))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesBackend {
    Nft,
    Legacy,
    NotInstalled,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkManager {
    pub installed: bool,
    /// `unmanaged-devices` patterns from NetworkManager.conf and conf.d/*.conf, with their file.
    pub unmanaged: Vec<(String, String)>,
    pub problems: Vec<String>,
}

impl NetworkManager {
    /// Whether NetworkManager leaves interface `name` alone.
    pub fn leaves_alone(&self, name: &str) -> bool {
        self.unmanaged.iter().any(|(pattern, _)| {
            let p = pattern.strip_prefix("interface-name:").unwrap_or(pattern);
            match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DistroFacts {
    pub os: Result<OsRelease, String>,
    pub iptables: IptablesBackend,
    /// The file the backend was judged from.
    pub iptables_evidence: String,
    pub network_manager: NetworkManager,
    /// The unit link that enables firewalld, if any.
    pub firewalld_enabled: Option<String>,
}

pub fn gather(host: &HostRoot) -> DistroFacts {
    let (iptables, iptables_evidence) = iptables_backend(host);
    DistroFacts {
        os: OsRelease::gather(host).map_err(|e| e.to_string()),
        iptables,
        iptables_evidence,
        network_manager: network_manager(host),
        firewalld_enabled: [
            "/etc/systemd/system/multi-user.target.wants/firewalld.service",
            "/etc/systemd/system/sysinit.target.wants/firewalld.service",
        ]
        .into_iter()
        .find(|p| host.lexists(p))
        .map(|p| host.display(p)),
    }
}

/// Debian/Ubuntu/RHEL point `iptables` through alternatives at `xtables-nft-multi` /
/// `iptables-nft` or their legacy twins; the link's final name says which.
fn iptables_backend(host: &HostRoot) -> (IptablesBackend, String) {
    for path in ["/usr/sbin/iptables", "/sbin/iptables", "/usr/bin/iptables"] {
        if !host.lexists(path) {
            continue;
        }
        let shown = host.display(path);
        let Ok(real) = host.resolve(path) else {
            return (IptablesBackend::Unknown, format!("{shown}: symlink loop"));
        };
        let name = real
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let evidence = format!("{shown} -> {name}");
        let backend = if name.contains("nft") {
            IptablesBackend::Nft
        } else if name.contains("legacy") {
            IptablesBackend::Legacy
        } else {
            IptablesBackend::Unknown
        };
        return (backend, evidence);
    }
    (
        IptablesBackend::NotInstalled,
        host.display("/usr/sbin/iptables"),
    )
}

fn network_manager(host: &HostRoot) -> NetworkManager {
    let mut nm = NetworkManager {
        installed: host.exists("/usr/sbin/NetworkManager")
            || host.exists("/etc/NetworkManager/NetworkManager.conf"),
        ..Default::default()
    };
    let mut files = vec!["/etc/NetworkManager/NetworkManager.conf".to_string()];
    for dir in [
        "/usr/lib/NetworkManager/conf.d",
        "/etc/NetworkManager/conf.d",
    ] {
        match host.read_dir_if_present(dir) {
            Ok(names) => files.extend(
                names
                    .into_iter()
                    .filter(|n| n.ends_with(".conf"))
                    .map(|n| format!("{dir}/{n}")),
            ),
            Err(e) => nm.problems.push(e.to_string()),
        }
    }
    for file in files {
        match host.read_text(&file) {
            Ok(text) => {
                for line in text.lines() {
                    let Some((k, v)) = line.split_once('=') else {
                        continue;
                    };
                    if k.trim() == "unmanaged-devices" {
                        nm.unmanaged.extend(
                            v.split([';', ','])
                                .map(str::trim)
                                .filter(|p| !p.is_empty())
                                .map(|p| (p.to_string(), host.display(&file))),
                        );
                    }
                }
            }
            Err(ReadError::NotFound(_)) => {}
            Err(e) => nm.problems.push(e.to_string()),
        }
    }
    nm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_unmanaged_patterns() {
        let f = parse_os_release("ID=rhel\nVERSION_ID=\"10.0\"\n# c\ngarbage\n");
        assert_eq!(f["ID"], "rhel");
        assert_eq!(f["VERSION_ID"], "10.0");
        let nm = NetworkManager {
            installed: true,
            unmanaged: vec![
                ("interface-name:cilium_*".into(), "f".into()),
                ("interface-name:lxc*".into(), "f".into()),
            ],
            problems: vec![],
        };
        assert!(nm.leaves_alone("cilium_host"));
        assert!(nm.leaves_alone("lxc1234"));
        assert!(!nm.leaves_alone("eth0"));
    }
}

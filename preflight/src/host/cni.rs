//! CNI: which bin and conf dirs the container runtime (and so kubelet) will use, the network
//! configs present there, and whether `cilium-cni` is in the bin dir
//! (docs/upstream.md#k3s-and-rancher-desktop).
use super::{HostRoot, ReadError};

pub const K3S_CONTAINERD: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
pub const K3S_CONTAINERD_TMPL: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl";
pub const CONTAINERD: &str = "/etc/containerd/config.toml";
pub const RANCHER_DESKTOP_BIN: &str = "/usr/libexec/cni";
pub const DEFAULT_BIN: &str = "/opt/cni/bin";
pub const DEFAULT_CONF: &str = "/etc/cni/net.d";
pub const K3S_CONF: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub file: String,
    pub name: Option<String>,
    /// Plugin types in order; the first is the primary CNI (flannel, cilium-cni, calico…).
    pub plugins: Vec<String>,
}

impl NetworkConfig {
    pub fn primary(&self) -> &str {
        self.plugins.first().map(String::as_str).unwrap_or("?")
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CniFacts {
    pub bin_dirs: Vec<String>,
    pub conf_dir: String,
    /// Where the dirs came from: a config file, or why defaults apply.
    pub dirs_source: String,
    /// Configs in the effective conf dir, sorted by file name (the runtime uses the first).
    pub configs: Vec<NetworkConfig>,
    /// Configs in the other well-known conf dirs (leftovers that a later switch could pick up).
    pub other_configs: Vec<NetworkConfig>,
    /// Bin dir holding `cilium-cni`, if any.
    pub cilium_cni: Option<String>,
    /// Unparseable files: `file[:line]: why`.
    pub problems: Vec<String>,
    /// Things worth saying that are not problems (a Go template we do not render).
    pub notes: Vec<String>,
    /// Set when a containerd config that would decide the dirs could not be read or parsed: the
    /// runtime's dirs are then unknown (containerd refuses that file too), not the defaults.
    pub dirs_unknown: Option<String>,
}

/// The `cni` table of a containerd config: `(bin dirs, conf dir)`. containerd 1.x/2.x put it
/// under different plugin names, so look for any table named `cni` below `plugins`.
pub fn containerd_cni(text: &str) -> Result<(Vec<String>, Option<String>), String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(1);
        format!("{line}: {}", e.message())
    })?;
    let Some(plugins) = doc.get("plugins").and_then(|p| p.as_table()) else {
        return Ok((Vec::new(), None));
    };
    let mut bins = Vec::new();
    let mut conf = None;
    for plugin in plugins.values().filter_map(|p| p.as_table()) {
        let Some(cni) = plugin.get("cni").and_then(|c| c.as_table()) else {
            continue;
        };
        if let Some(b) = cni.get("bin_dir").and_then(|b| b.as_str()) {
            bins.push(b.to_string());
        }
        if let Some(list) = cni.get("bin_dirs").and_then(|b| b.as_array()) {
            bins.extend(list.iter().filter_map(|b| b.as_str()).map(String::from));
        }
        if let Some(c) = cni.get("conf_dir").and_then(|c| c.as_str()) {
            conf = Some(c.to_string());
        }
    }
    Ok((bins, conf))
}

/// A `.conflist` (plugins array) or a single `.conf`.
pub fn parse_network_config(text: &str) -> Result<(Option<String>, Vec<String>), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{}: {e}", e.line()))?;
    let obj = v.as_object().ok_or("1: not a JSON object")?;
    let name = obj.get("name").and_then(|n| n.as_str()).map(String::from);
    let plugins = match obj.get("plugins") {
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|p| p.get("type").and_then(|t| t.as_str()).map(String::from))
            .collect(),
        Some(_) => return Err("1: \"plugins\" is not an array".into()),
        None => obj
            .get("type")
            .and_then(|t| t.as_str())
            .map(|t| vec![t.to_string()])
            .unwrap_or_default(),
    };
    if plugins.is_empty() {
        return Err("1: no plugin \"type\"".into());
    }
    Ok((name, plugins))
}

pub fn gather(host: &HostRoot, rancher_desktop: bool) -> CniFacts {
    let mut facts = CniFacts::default();
    let mut found = None;
    for path in [K3S_CONTAINERD_TMPL, K3S_CONTAINERD, CONTAINERD] {
        match host.read_text(path) {
            Ok(text) => match containerd_cni(&text) {
                Ok((bins, conf)) if !bins.is_empty() || conf.is_some() => {
                    found = Some((host.display(path), bins, conf));
                    break;
                }
                Ok(_) => {}
                // k3s templates are Go templates ({{ template "base" . }}); not TOML we can read.
                Err(_) if path.ends_with(".tmpl") && text.contains("{{") => facts.notes.push(format!(
                    "{} is a Go template: k3s renders it into config.toml, which was read instead",
                    host.display(path)
                )),
                Err(why) => {
                    let problem = format!("{}:{why}", host.display(path));
                    facts.dirs_unknown.get_or_insert_with(|| problem.clone());
                    facts.problems.push(problem);
                }
            },
            Err(ReadError::NotFound(_)) => {}
            Err(e) => {
                facts.dirs_unknown.get_or_insert_with(|| e.to_string());
                facts.problems.push(e.to_string());
            }
        }
    }
    match found {
        Some((source, bins, conf)) => {
            facts.bin_dirs = bins;
            facts.conf_dir = conf.unwrap_or_else(|| DEFAULT_CONF.into());
            facts.dirs_source = source;
        }
        None if rancher_desktop => {
            facts.bin_dirs = vec![RANCHER_DESKTOP_BIN.into()];
            facts.conf_dir = DEFAULT_CONF.into();
            facts.dirs_source = "Rancher Desktop: CNI plugins live in /usr/libexec/cni".into();
        }
        None => {
            facts.dirs_source = "no containerd CNI config; containerd defaults".into();
        }
    }
    if facts.bin_dirs.is_empty() {
        facts.bin_dirs = vec![DEFAULT_BIN.into()];
    }
    if facts.conf_dir.is_empty() {
        facts.conf_dir = DEFAULT_CONF.into();
    }
    facts.cilium_cni = facts
        .bin_dirs
        .iter()
        .find(|d| host.exists(&format!("{d}/cilium-cni")))
        .cloned();
    let conf_dir = facts.conf_dir.clone();
    facts.configs = read_configs(host, &conf_dir, &mut facts.problems);
    for dir in [DEFAULT_CONF, K3S_CONF] {
        if dir != conf_dir {
            let mut others = read_configs(host, dir, &mut facts.problems);
            facts.other_configs.append(&mut others);
        }
    }
    facts
}

fn read_configs(host: &HostRoot, dir: &str, problems: &mut Vec<String>) -> Vec<NetworkConfig> {
    let names = match host.read_dir_if_present(dir) {
        Ok(names) => names,
        // A conf dir that exists but cannot be listed is a finding, not "no config yet".
        Err(e) => {
            problems.push(e.to_string());
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        if !(name.ends_with(".conflist") || name.ends_with(".conf") || name.ends_with(".json")) {
            continue;
        }
        let path = format!("{dir}/{name}");
        let shown = host.display(&path);
        match host
            .read_text(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_network_config(&t).map_err(|why| format!("{shown}:{why}")))
        {
            Ok((cfg_name, plugins)) => out.push(NetworkConfig {
                file: shown,
                name: cfg_name,
                plugins,
            }),
            Err(e) => problems.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_containerd_v2_and_v3_cni_tables() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/var/lib/rancher/k3s/data/cni\"\n  conf_dir = \"/var/lib/rancher/k3s/agent/etc/cni/net.d\"\n";
        let (b, c) = containerd_cni(v2).unwrap();
        assert_eq!(b, ["/var/lib/rancher/k3s/data/cni"]);
        assert_eq!(
            c.as_deref(),
            Some("/var/lib/rancher/k3s/agent/etc/cni/net.d")
        );
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\nbin_dirs = ['/opt/cni/bin', '/x']\n";
        assert_eq!(containerd_cni(v3).unwrap().0, ["/opt/cni/bin", "/x"]);
        assert!(
            containerd_cni("a = 1\nb = [\n")
                .unwrap_err()
                .starts_with('2')
                || containerd_cni("a = 1\nb = [\n")
                    .unwrap_err()
                    .starts_with('3')
        );
    }

    #[test]
    fn conflists_and_single_confs() {
        let (n, p) = parse_network_config(
            r#"{"name":"cbr0","plugins":[{"type":"flannel"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        assert_eq!(n.as_deref(), Some("cbr0"));
        assert_eq!(p, ["flannel", "portmap"]);
        assert_eq!(
            parse_network_config(r#"{"type":"bridge"}"#).unwrap().1,
            ["bridge"]
        );
        assert!(
            parse_network_config("{\n\"a\": ")
                .unwrap_err()
                .starts_with("2:")
        );
        assert!(parse_network_config("[]").is_err());
    }
}

//! k3s configuration (`/etc/rancher/k3s/config.yaml` then `config.yaml.d/*.yaml`, later files
//! win, `key+:` appends) and Rancher Desktop detection (docs/upstream.md#k3s-and-rancher-desktop).
use serde_norway::Value;

use super::{HostRoot, ReadError};

pub const CONFIG: &str = "/etc/rancher/k3s/config.yaml";
pub const CONFIG_D: &str = "/etc/rancher/k3s/config.yaml.d";

#[derive(Debug, Clone, PartialEq, Default)]
pub struct K3sFacts {
    /// k3s is installed or configured on this node.
    pub present: bool,
    pub rancher_desktop: bool,
    /// Why we think it is Rancher Desktop (evidence).
    pub rancher_desktop_evidence: Vec<String>,
    /// Config files read, in order.
    pub files: Vec<String>,
    /// Files that could not be used: `file:line: why`.
    pub problems: Vec<String>,
    pub flannel_backend: Option<String>,
    pub disable_network_policy: Option<bool>,
    pub disable_kube_proxy: Option<bool>,
    pub cluster_cidr: Option<String>,
    pub service_cidr: Option<String>,
    /// `server:` (an agent joining a server).
    pub server: Option<String>,
    /// `disable:` components (traefik, servicelb, …).
    pub disable: Vec<String>,
}

pub fn gather(host: &HostRoot) -> K3sFacts {
    let mut facts = K3sFacts {
        present: [
            "/etc/rancher/k3s",
            "/var/lib/rancher/k3s",
            "/usr/local/bin/k3s",
        ]
        .iter()
        .any(|p| host.exists(p)),
        ..Default::default()
    };
    let mut paths = vec![CONFIG.to_string()];
    match host.read_dir_if_present(CONFIG_D) {
        Ok(names) => paths.extend(
            names
                .into_iter()
                .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
                .map(|n| format!("{CONFIG_D}/{n}")),
        ),
        Err(e) => facts.problems.push(e.to_string()),
    }
    for path in paths {
        let text = match host.read_text(&path) {
            Ok(t) => t,
            Err(ReadError::NotFound(_)) => continue,
            Err(e) => {
                facts.problems.push(e.to_string());
                continue;
            }
        };
        let shown = host.display(&path);
        match parse(&text) {
            Ok(doc) => {
                facts.files.push(shown);
                apply(&mut facts, &doc);
            }
            Err(why) => facts.problems.push(format!("{shown}:{why}")),
        }
    }
    let hostname = host.hostname().unwrap_or_default();
    if hostname.contains("rancher-desktop") {
        facts
            .rancher_desktop_evidence
            .push(format!("hostname {hostname}"));
    }
    // Inferred: Rancher Desktop's VM provisioning keeps its state under these paths.
    for marker in [
        "/etc/rancher/desktop",
        "/usr/local/bin/rancher-desktop-guestagent",
    ] {
        if host.exists(marker) {
            facts.rancher_desktop_evidence.push(host.display(marker));
        }
    }
    facts.rancher_desktop = !facts.rancher_desktop_evidence.is_empty();
    facts
}

/// One YAML document as a mapping; errors carry `line:column: message`.
pub fn parse(text: &str) -> Result<serde_norway::Mapping, String> {
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    // The YAML parser is quadratic in flow nesting: refuse a hostile file before it runs.
    if let Err(crate::host::input::InputError::TooDeep { line, .. }) =
        crate::host::input::yaml_depth("", text)
    {
        return Err(format!(
            "{line}: YAML nested more than {} levels deep; not parsed",
            crate::host::input::MAX_YAML_DEPTH
        ));
    }
    match serde_norway::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Default::default()),
        Ok(_) => Err("1: not a mapping of k3s flags".into()),
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| "1".into());
            Err(format!("{at}: {e}"))
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        // k3s accepts `disable: traefik,servicelb` too.
        other => scalar(other)
            .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
            .unwrap_or_default(),
    }
}

fn joined(v: &Value) -> Option<String> {
    Some(list(v).join(",")).filter(|s| !s.is_empty())
}

/// Folds one config document into `facts`: later documents win, `key+:` appends.
pub fn apply(facts: &mut K3sFacts, doc: &serde_norway::Mapping) {
    for (key, value) in doc {
        let Some(key) = key.as_str() else { continue };
        let (key, append) = match key.strip_suffix('+') {
            Some(k) => (k, true),
            None => (key, false),
        };
        let flag = || scalar(value).map(|s| s == "true");
        match key {
            "flannel-backend" => facts.flannel_backend = scalar(value),
            "disable-network-policy" => facts.disable_network_policy = flag(),
            "disable-kube-proxy" => facts.disable_kube_proxy = flag(),
            // Dual-stack CIDRs come as `a,b` or as a YAML list.
            "cluster-cidr" => facts.cluster_cidr = joined(value),
            "service-cidr" => facts.service_cidr = joined(value),
            "server" => facts.server = scalar(value),
            "disable" => {
                if !append {
                    facts.disable.clear();
                }
                facts.disable.extend(list(value));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_files_win_and_plus_appends() {
        let mut f = K3sFacts::default();
        apply(
            &mut f,
            &parse("flannel-backend: vxlan\ndisable: [traefik]\n").unwrap(),
        );
        apply(
            &mut f,
            &parse("flannel-backend: none\ndisable+: servicelb\ndisable-kube-proxy: true\n")
                .unwrap(),
        );
        assert_eq!(f.flannel_backend.as_deref(), Some("none"));
        assert_eq!(f.disable, ["traefik", "servicelb"]);
        assert_eq!(f.disable_kube_proxy, Some(true));
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let err = parse("a: 1\nb: [unclosed\n").unwrap_err();
        assert!(err.starts_with("3:") || err.starts_with("2:"), "{err}");
        assert!(parse("- a\n- b\n").unwrap_err().starts_with("1:"));
    }
}

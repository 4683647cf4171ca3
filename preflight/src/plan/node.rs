//! What the plan needs to know about the node, read through the root prefix (files) and the
//! runner (`ip` for links). Read-only.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::host::{HostRoot, ReadError, cni, k3s, mounts};

use super::{
    journal::LinkSpec,
    runner::{Runner, Tool},
};

pub use crate::host::k3s::{CONFIG as K3S_CONFIG, CONFIG_D as K3S_CONFIG_D};
pub const DROP_IN: &str = "/etc/rancher/k3s/config.yaml.d/90-preflight-cilium.yaml";
/// The fallback's drop-in that turns flannel back on when the user's own config turned it off.
/// It sorts before the Cilium drop-in, so a later install still wins, and after the usual
/// user drop-ins (`10-…`, `50-…`).
pub const FLANNEL_DROP_IN: &str = "/etc/rancher/k3s/config.yaml.d/89-preflight-flannel.yaml";
pub const CONTAINERD_CONFIG: &str = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
pub const K3S_CNI_CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";
pub const BPFFS: &str = "/sys/fs/bpf";
pub const BPFFS_UNIT: &str = "/etc/systemd/system/sys-fs-bpf.mount";
pub const RANCHER_DESKTOP_CNI_BIN: &str = "/usr/libexec/cni";

/// `node_path` with every symlink resolved inside the root (e.g. /var/run → /run; absolute
/// targets relative to the root, `..` stopping at it), as a node path: what the plan shows and
/// journals. A symlink loop is an error naming the file.
pub fn resolve(host: &HostRoot, node_path: &str) -> anyhow::Result<String> {
    Ok(host.canonical(node_path)?)
}

/// A node file's text, None when it does not exist; any other failure (a FIFO, a loop, too
/// large, not text) is an error naming the file.
fn read_optional(host: &HostRoot, node_path: &str) -> anyhow::Result<Option<String>> {
    match host.read_text(node_path) {
        Ok(t) => Ok(Some(t)),
        Err(ReadError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct K3s {
    /// The systemd unit: `k3s` (server) or `k3s-agent`.
    pub unit: String,
    /// Merged view of config.yaml and config.yaml.d/*.yaml (our drop-in excluded).
    pub flannel_backend: Option<String>,
    pub disable_network_policy: bool,
    pub disable_kube_proxy: bool,
    /// Every `cluster-cidr` (dual-stack gives an IPv4 and an IPv6 one, in either order).
    pub cluster_cidrs: Vec<String>,
    pub server: Option<String>,
    /// An agent (k3s-agent service, or a `server:` URL and no k3s server service): it takes
    /// flannel's settings from the server and has no admin kubeconfig.
    pub agent: bool,
    /// The file (host path) whose `flannel-backend` wins, if any sets it.
    pub flannel_backend_from: Option<String>,
    /// Our drop-in's current content, if present.
    pub drop_in: Option<String>,
    /// The fallback's flannel drop-in, if present.
    pub flannel_drop_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MountState {
    NotMounted,
    Mounted { shared: bool, count: usize },
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    Present(LinkSpec),
    Absent,
    Unknown(String),
}

/// CNI directories: what containerd uses now and what it will use once flannel is off.
#[derive(Debug, Clone, PartialEq)]
pub struct CniPaths {
    pub bin_dir: String,
    pub conf_dir: String,
    /// Why these (which file said so, what was predicted).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NodeState {
    /// The root as given (for messages); every access goes through `host`.
    pub root: PathBuf,
    pub host: HostRoot,
    pub k3s: Option<K3s>,
    pub cni_now: Option<CniPaths>,
    pub cni_after: CniPaths,
    pub rancher_desktop: bool,
    pub flannel_conflists: Vec<String>,
    /// Cilium's conflists (e.g. 05-cilium.conflist): after Cilium is gone they shadow flannel's.
    pub cilium_conflists: Vec<String>,
    pub stale_state: Vec<String>,
    pub pins: Vec<String>,
    pub links: BTreeMap<String, LinkState>,
    pub bpffs: MountState,
    pub systemd: bool,
    /// No systemd, but OpenRC (/sbin/openrc-run or /etc/init.d/k3s*): services restart with
    /// rc-service.
    pub openrc: bool,
    pub bpffs_persisted: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    /// A completed install of this preflight is in place (its journal, not rolled back): the
    /// Cilium state and pins on the node are then the running agent's, not leftovers.
    pub installed: Option<String>,
}

impl NodeState {
    pub fn read(host: &HostRoot, runner: &Runner) -> anyhow::Result<Self> {
        let k3s = read_k3s(host)?;
        let cni_now = read_containerd_cni(host, CONTAINERD_CONFIG)?;
        let rancher_desktop = host.is_dir(RANCHER_DESKTOP_CNI_BIN) && !host.is_dir("/opt/cni/bin");
        let cni_after = predict_cni(host, cni_now.as_ref(), rancher_desktop)?;

        let mut conf_dirs = vec![K3S_CNI_CONF_DIR.to_string(), "/etc/cni/net.d".to_string()];
        if let Some(c) = &cni_now {
            conf_dirs.push(c.conf_dir.clone());
        }
        conf_dirs.sort();
        conf_dirs.dedup();
        let mut flannel_conflists = Vec::new();
        let mut cilium_conflists = Vec::new();
        for dir in &conf_dirs {
            let dir = resolve(host, dir)?;
            for name in sorted_names(host, &dir) {
                if !(name.ends_with(".conflist") || name.ends_with(".conf")) {
                    continue;
                }
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                if name.contains("flannel") {
                    flannel_conflists.push(path);
                } else if name.contains("cilium") {
                    cilium_conflists.push(path);
                }
            }
        }

        let state = resolve(host, "/var/run/cilium/state")?;
        let stale_state: Vec<String> = [
            format!("{state}/globals/node_config.h"),
            format!("{state}/templates"),
        ]
        .into_iter()
        .filter(|p| host.lexists(p))
        .collect();

        let mut pins = Vec::new();
        for dir in ["/sys/fs/bpf/tc/globals", "/sys/fs/bpf"] {
            for name in sorted_names(host, dir) {
                if name.starts_with("cilium_") || (dir == "/sys/fs/bpf" && name == "cilium") {
                    pins.push(format!("{dir}/{name}"));
                }
            }
        }

        let mut links = BTreeMap::new();
        for name in ["flannel.1", "cni0"] {
            links.insert(name.to_string(), link_state(runner, name));
        }

        let systemd = host.is_dir("/run/systemd/system") || host.is_dir("/etc/systemd/system");
        let openrc = !systemd
            && (host.exists("/sbin/openrc-run")
                || host.exists("/etc/init.d/k3s")
                || host.exists("/etc/init.d/k3s-agent"));
        let bpffs_persisted = if host.exists(BPFFS_UNIT)
            || host.exists("/usr/lib/systemd/system/sys-fs-bpf.mount")
            || host.exists("/lib/systemd/system/sys-fs-bpf.mount")
        {
            Some("systemd unit sys-fs-bpf.mount".to_string())
        } else {
            read_optional(host, "/etc/fstab")?.and_then(|t| {
                t.lines()
                    .find(|l| {
                        let f: Vec<_> = l.split_whitespace().collect();
                        !l.trim_start().starts_with('#') && f.get(1) == Some(&BPFFS)
                    })
                    .map(|l| format!("/etc/fstab: {l}"))
            })
        };
        // Handed to helm and kubectl: the file as resolved inside the root, so a symlink
        // cannot make them read a file outside it.
        let kubeconfig = Some("/etc/rancher/k3s/k3s.yaml")
            .filter(|p| host.is_file(p))
            .map(|p| host.resolve(p))
            .transpose()?;
        let installed = installed_by_preflight(host, None);
        Ok(Self {
            root: host.root().to_path_buf(),
            host: host.clone(),
            bpffs: bpffs_state(host),
            k3s,
            cni_now,
            cni_after,
            rancher_desktop,
            flannel_conflists,
            cilium_conflists,
            stale_state,
            pins,
            links,
            systemd,
            openrc,
            bpffs_persisted,
            kubeconfig,
            installed,
        })
    }
}

/// A directory's entries; one that is missing or unreadable has none.
fn sorted_names(host: &HostRoot, dir: &str) -> Vec<String> {
    host.read_dir_if_present(dir).unwrap_or_default()
}

/// k3s reads config.yaml, then config.yaml.d/*.yaml in name order; later files win.
fn read_k3s(host: &HostRoot) -> anyhow::Result<Option<K3s>> {
    let unit = if host.exists("/etc/systemd/system/k3s-agent.service")
        || host.exists("/etc/init.d/k3s-agent")
    {
        "k3s-agent"
    } else {
        "k3s"
    };
    let is_k3s = host.exists(K3S_CONFIG)
        || host.is_dir(K3S_CONFIG_D)
        || host.exists("/etc/systemd/system/k3s.service")
        || host.exists("/etc/systemd/system/k3s-agent.service")
        || host.exists("/etc/init.d/k3s")
        || host.exists("/etc/init.d/k3s-agent");
    if !is_k3s {
        return Ok(None);
    }
    let mut files = vec![K3S_CONFIG.to_string()];
    files.extend(
        sorted_names(host, K3S_CONFIG_D)
            .into_iter()
            .filter(|n| {
                n.ends_with(".yaml")
                    && !DROP_IN.ends_with(n.as_str())
                    && !FLANNEL_DROP_IN.ends_with(n.as_str())
            })
            .map(|n| format!("{K3S_CONFIG_D}/{n}")),
    );
    // The same merge the node facts use (later files win, `key+:` appends); unlike them, a
    // file that does not parse stops the plan: we would otherwise plan from half a config.
    let mut merged = k3s::K3sFacts::default();
    let mut flannel_backend_from = None;
    for f in files {
        let Some(text) = read_optional(host, &f)? else {
            continue;
        };
        let shown = host.display(&f);
        let doc = k3s::parse(&text).map_err(|why| anyhow::anyhow!("{shown}:{why}"))?;
        let was = merged.flannel_backend.clone();
        k3s::apply(&mut merged, &doc);
        if merged.flannel_backend != was
            || text
                .lines()
                .any(|l| l.trim_start().starts_with("flannel-backend"))
        {
            flannel_backend_from = Some(shown);
        }
    }
    Ok(Some(K3s {
        unit: unit.into(),
        flannel_backend: merged.flannel_backend,
        flannel_backend_from,
        disable_network_policy: merged.disable_network_policy.unwrap_or(false),
        disable_kube_proxy: merged.disable_kube_proxy.unwrap_or(false),
        cluster_cidrs: merged
            .cluster_cidr
            .map(|c| {
                c.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["10.42.0.0/16".into()]),
        agent: unit == "k3s-agent"
            || (merged.server.is_some()
                && !host.exists("/etc/systemd/system/k3s.service")
                && !host.exists("/etc/init.d/k3s")),
        server: merged.server,
        drop_in: host.read_text(DROP_IN).ok(),
        flannel_drop_in: host.read_text(FLANNEL_DROP_IN).ok(),
    }))
}

/// `bin_dir`/`bin_dirs` and `conf_dir` of the CRI plugin's `cni` table, whatever the
/// containerd config version (v2 `io.containerd.grpc.v1.cri`, v3 `io.containerd.cri.v1.runtime`).
pub fn read_containerd_cni(host: &HostRoot, node_path: &str) -> anyhow::Result<Option<CniPaths>> {
    let Some(text) = read_optional(host, node_path)? else {
        return Ok(None);
    };
    let shown = host.display(node_path);
    let (bin_dirs, conf_dir) =
        cni::containerd_cni(&text).map_err(|why| anyhow::anyhow!("{shown}:{why}"))?;
    if bin_dirs.is_empty() && conf_dir.is_none() {
        return Ok(None);
    }
    Ok(Some(CniPaths {
        bin_dir: bin_dirs
            .into_iter()
            .next()
            .unwrap_or_else(|| cni::DEFAULT_BIN.into()),
        conf_dir: conf_dir.unwrap_or_else(|| cni::DEFAULT_CONF.into()),
        notes: vec![format!("from {shown}")],
    }))
}

/// The CNI dirs containerd will use after k3s restarts with `flannel-backend: none`: a
/// config.toml.tmpl the user keeps wins; otherwise k3s drops its own dirs and containerd falls back
/// to /opt/cni/bin and /etc/cni/net.d (docs/upstream.md#k3s-and-rancher-desktop); Rancher Desktop
/// ships its plugins in /usr/libexec/cni. A `data/<hash>/bin` dir is replaced by `data/current/bin`
/// (k3s-io/k3s#10869).
fn predict_cni(
    host: &HostRoot,
    now: Option<&CniPaths>,
    rancher_desktop: bool,
) -> anyhow::Result<CniPaths> {
    let dir = std::path::Path::new(CONTAINERD_CONFIG)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for tmpl in ["config.toml.tmpl", "config-v3.toml.tmpl"] {
        let path = format!("{dir}/{tmpl}");
        if let Some(text) = read_optional(host, &path)
            .with_context(|| format!("reading your containerd template {tmpl}"))?
        {
            // A template may hold Go template syntax: read only the plain key lines.
            let key = |k: &str| {
                text.lines().find_map(|l| {
                    let (name, value) = l.split_once('=')?;
                    (name.trim() == k)
                        .then(|| value.trim().trim_matches(['"', '[', ']']).to_string())
                })
            };
            if let (Some(b), Some(c)) =
                (key("bin_dir").or_else(|| key("bin_dirs")), key("conf_dir"))
            {
                return Ok(CniPaths {
                    bin_dir: b,
                    conf_dir: c,
                    notes: vec![format!("from your {dir}/{tmpl}, which k3s keeps using")],
                });
            }
        }
    }
    let mut notes = Vec::new();
    let mut bin_dir = "/opt/cni/bin".to_string();
    if rancher_desktop {
        bin_dir = RANCHER_DESKTOP_CNI_BIN.into();
        notes.push(
            "Rancher Desktop keeps its CNI plugins in /usr/libexec/cni (cilium/cilium#27702)"
                .into(),
        );
    } else {
        notes.push(
            "with flannel-backend: none k3s stops pointing containerd at its own CNI dirs; \
             containerd falls back to /opt/cni/bin and /etc/cni/net.d"
                .into(),
        );
    }
    if let Some(now) = now {
        notes.push(format!(
            "now (flannel): bin_dir {}, conf_dir {} ({})",
            now.bin_dir,
            now.conf_dir,
            now.notes.join("; ")
        ));
        if now.conf_dir != K3S_CNI_CONF_DIR && !now.bin_dir.contains("/k3s/data/") {
            // Not k3s's flannel-era layout: the user configured containerd; keep it.
            let bin = versionless(&now.bin_dir);
            return Ok(CniPaths {
                bin_dir: bin,
                conf_dir: now.conf_dir.clone(),
                notes,
            });
        }
    }
    Ok(CniPaths {
        bin_dir,
        conf_dir: "/etc/cni/net.d".into(),
        notes,
    })
}

/// `/var/lib/rancher/k3s/data/<hash>/bin` → `/var/lib/rancher/k3s/data/current/bin`.
pub fn versionless(bin_dir: &str) -> String {
    let parts: Vec<&str> = bin_dir.split('/').collect();
    if let Some(i) = parts.iter().position(|p| *p == "data")
        && parts
            .get(i + 1)
            .is_some_and(|h| h.len() >= 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        let mut v: Vec<&str> = parts.clone();
        v[i + 1] = "current";
        return v.join("/");
    }
    bin_dir.to_string()
}

/// /sys/fs/bpf in the node's mount table, read by the same function the `mounts.*` checks use
/// (PID 1's mountinfo through a host root, else `proc/self/mountinfo`): the plan and the
/// checks must see one table, or install would refuse a bpffs finding the plan has a step for.
pub fn bpffs_state(host: &HostRoot) -> MountState {
    let table = match mounts::gather(host) {
        crate::model::Gathered::Got(t) => t,
        crate::model::Gathered::Unknown(why) | crate::model::Gathered::Skipped(why) => {
            return MountState::Unknown(why);
        }
    };
    let bpffs: Vec<_> = table
        .at(BPFFS)
        .into_iter()
        .filter(|e| e.fstype == "bpf")
        .collect();
    match bpffs.last() {
        None => MountState::NotMounted,
        // The last mount on top is the one a process sees.
        Some(top) => MountState::Mounted {
            shared: top.shared(),
            count: bpffs.len(),
        },
    }
}

/// A link through `ip -d -j addr show dev NAME` (the runner: the running system's links).
pub fn link_state(runner: &Runner, name: &str) -> LinkState {
    let args: Vec<String> = ["-d", "-j", "addr", "show", "dev", name]
        .map(String::from)
        .to_vec();
    match runner.run(Tool::Ip, &args) {
        Err(e) => LinkState::Unknown(format!("{e:#}")),
        Ok(o) if !o.success() => {
            if o.stderr.contains("does not exist") || o.stderr.contains("Cannot find device") {
                LinkState::Absent
            } else {
                LinkState::Unknown(format!("ip exited {:?}: {}", o.code, o.stderr.trim()))
            }
        }
        Ok(o) => match parse_link(&o.stdout, name) {
            Some(spec) => LinkState::Present(spec),
            None => LinkState::Unknown(format!("could not read `ip -j` output for {name}")),
        },
    }
}

pub fn parse_link(json: &str, name: &str) -> Option<LinkSpec> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let l = v.as_array()?.iter().find(|l| l["ifname"] == name)?;
    let info = &l["linkinfo"]["info_data"];
    let s = |v: &serde_json::Value| v.as_str().map(String::from);
    Some(LinkSpec {
        name: name.to_string(),
        kind: s(&l["linkinfo"]["info_kind"]),
        mtu: l["mtu"].as_u64(),
        address: s(&l["address"]),
        vxlan_id: info["id"].as_u64(),
        vxlan_local: s(&info["local"]),
        vxlan_dev: s(&info["link"]),
        vxlan_port: info["port"].as_u64(),
        addresses: l["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| {
                        Some(format!(
                            "{}/{}",
                            x["local"].as_str()?,
                            x["prefixlen"].as_u64()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        up: l["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
    })
}

/// The journal of a completed install of preflight's, shown for messages; `kubeconfig` as
/// [`super::journal::Journal::load_trusting`] takes it. A journal that does not load is
/// reported by install when it opens it; here it only means "no completed install known".
pub fn installed_by_preflight(host: &HostRoot, kubeconfig: Option<&Path>) -> Option<String> {
    super::journal::Journal::load_trusting(host, kubeconfig)
        .ok()
        .flatten()
        .filter(|j| {
            j.file.status == super::journal::Status::Complete
                && j.file.runs.iter().any(|r| r == "install")
        })
        .map(|j| j.shown())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// The plan reads the table the checks read: PID 1's before our own, through a host root.
    #[test]
    fn bpffs_state_reads_pid_1s_mount_table_first() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("proc/1")).unwrap();
        fs::create_dir_all(d.path().join("proc/self")).unwrap();
        fs::write(
            d.path().join("proc/1/mountinfo"),
            "22 1 253:1 / / rw shared:1 - ext4 /dev/vda1 rw\n30 22 0:30 / /sys/fs/bpf rw - bpf bpffs rw\n",
        )
        .unwrap();
        fs::write(
            d.path().join("proc/self/mountinfo"),
            "22 1 253:1 / / rw shared:1 - ext4 /dev/vda1 rw\n",
        )
        .unwrap();
        assert_eq!(
            bpffs_state(&HostRoot::new(d.path())),
            MountState::Mounted {
                shared: false,
                count: 1
            }
        );
        fs::remove_file(d.path().join("proc/1/mountinfo")).unwrap();
        assert_eq!(
            bpffs_state(&HostRoot::new(d.path())),
            MountState::NotMounted
        );
        fs::write(d.path().join("proc/self/mountinfo"), "garbage\n").unwrap();
        match bpffs_state(&HostRoot::new(d.path())) {
            MountState::Unknown(why) => assert!(why.contains("proc/self/mountinfo:1"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("run/cilium")).unwrap();
        fs::create_dir_all(d.path().join("var")).unwrap();
        std::os::unix::fs::symlink("/run", d.path().join("var/run")).unwrap();
        assert_eq!(
            resolve(&HostRoot::new(d.path()), "/var/run/cilium/state").unwrap(),
            "/run/cilium/state"
        );
        assert_eq!(
            resolve(&HostRoot::new(d.path()), "/etc/x").unwrap(),
            "/etc/x"
        );
    }

    #[test]
    fn data_hash_dirs_become_current() {
        let h = "a".repeat(64);
        assert_eq!(
            versionless(&format!("/var/lib/rancher/k3s/data/{h}/bin")),
            "/var/lib/rancher/k3s/data/current/bin"
        );
        assert_eq!(versionless("/opt/cni/bin"), "/opt/cni/bin");
    }

    #[test]
    fn reads_link_json_from_ip() {
        let json = r#"[{"ifname":"flannel.1","mtu":1450,"address":"aa:bb:cc:dd:ee:ff","flags":["BROADCAST","UP"],
          "linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"local":"10.0.0.5","link":"eth0","port":8472}},
          "addr_info":[{"family":"inet","local":"10.42.0.0","prefixlen":32}]}]"#;
        let l = parse_link(json, "flannel.1").unwrap();
        assert_eq!(l.vxlan_id, Some(1));
        assert_eq!(l.vxlan_port, Some(8472));
        assert_eq!(l.addresses, vec!["10.42.0.0/32"]);
        assert!(l.up);
    }

    #[test]
    fn containerd_errors_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("config.toml");
        let host = HostRoot::new(d.path());
        fs::write(&p, "version = 2\n[plugins\n").unwrap();
        let e = read_containerd_cni(&host, "/config.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.toml:2"), "{e}");
        fs::write(
            &p,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/x/bin\"\n  conf_dir = \"/x/net.d\"\n",
        )
        .unwrap();
        let c = read_containerd_cni(&host, "/config.toml").unwrap().unwrap();
        assert_eq!(
            (c.bin_dir.as_str(), c.conf_dir.as_str()),
            ("/x/bin", "/x/net.d")
        );
    }
}

/// Bounded fuzz loop over the parsers written here (mountinfo, `ip -j` JSON, containerd TOML,
/// k3s YAML): mutated seeds must give a value or a clear error, never a panic.
#[cfg(test)]
mod fuzz {
    use std::fs;

    use super::*;

    fn mutate(seed: &[u8], rng: &mut u64) -> Vec<u8> {
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        let mut v = seed.to_vec();
        for _ in 0..(next() % 8 + 1) {
            if v.is_empty() {
                v.push(next() as u8);
                continue;
            }
            let i = (next() as usize) % v.len();
            match next() % 4 {
                0 => v[i] = next() as u8,
                1 => {
                    v.remove(i);
                }
                2 => v.insert(i, b"-\n \"[]{}:=/"[(next() % 11) as usize]),
                _ => v.truncate(i),
            }
        }
        v
    }

    #[test]
    fn parsers_never_panic_on_mutated_input() {
        let d = tempfile::tempdir().unwrap();
        let seeds: [&[u8]; 4] = [
            b"22 1 253:1 / / rw shared:1 - ext4 /dev/vda1 rw\n30 23 0:30 / /sys/fs/bpf rw shared:9 - bpf bpffs rw\n",
            br#"[{"ifname":"flannel.1","mtu":1450,"linkinfo":{"info_kind":"vxlan","info_data":{"id":1,"port":8472}},"addr_info":[{"local":"10.42.0.0","prefixlen":32}]}]"#,
            b"version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/opt/cni/bin\"\n  conf_dir = \"/etc/cni/net.d\"\n",
            b"flannel-backend: none\ncluster-cidr: 10.42.0.0/16\ndisable-network-policy: true\n",
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut runs = 0;
        fs::create_dir_all(d.path().join("proc/self")).unwrap();
        fs::create_dir_all(d.path().join("etc/rancher/k3s")).unwrap();
        for _ in 0..1500 {
            for (i, seed) in seeds.iter().enumerate() {
                let input = mutate(seed, &mut rng);
                match i {
                    0 => {
                        fs::write(d.path().join("proc/self/mountinfo"), &input).unwrap();
                        let _ = bpffs_state(&HostRoot::new(d.path()));
                    }
                    1 => {
                        let _ = parse_link(&String::from_utf8_lossy(&input), "flannel.1");
                    }
                    2 => {
                        let p = d.path().join("config.toml");
                        fs::write(&p, &input).unwrap();
                        if let Err(e) =
                            read_containerd_cni(&HostRoot::new(d.path()), "/config.toml")
                        {
                            assert!(e.to_string().contains("config.toml"), "{e}");
                        }
                    }
                    _ => {
                        fs::write(d.path().join("etc/rancher/k3s/config.yaml"), &input).unwrap();
                        if let Err(e) = read_k3s(&HostRoot::new(d.path())) {
                            assert!(format!("{e:#}").contains("config.yaml"), "{e:#}");
                        }
                    }
                }
                runs += 1;
            }
        }
        eprintln!("fuzz: {runs} executions, 0 crashes");
        assert_eq!(runs, 6000);
    }
}

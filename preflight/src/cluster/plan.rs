//! From the nodes' reports to a checked plan: every precondition of the dual-overlay migration
//! on every node, and the values it chooses (the new pod CIDR, the tunnel port, the CNI dirs).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::PathBuf,
};

use serde_json::{Value, json};

use crate::{
    cilium::values,
    fleet::read::{self, Item, NodeReport, ReadStats},
    model::{Gathered, K3sRole, NodeNetwork, Status},
};

/// Where the flannel-era conflists live on k3s, and k3s's default dirs once flannel is off
/// (docs/upstream.md#k3s-and-rancher-desktop: with `flannel-backend: none` containerd falls back to
/// its defaults).
pub const K3S_CONF_DIR: &str = "/var/lib/rancher/k3s/agent/etc/cni/net.d";
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// flannel's VXLAN port (Linux's default for vxlan devices, which flannel uses).
pub const FLANNEL_VXLAN_PORT: u16 = 8472;
/// The guide's choice for Cilium's VXLAN during the migration; the next free one otherwise.
pub const TUNNEL_PORTS: std::ops::RangeInclusive<u16> = 8473..=8480;

/// One node as its report describes it.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub hostname: String,
    /// `file:line` of its report.
    pub source: String,
    pub kernel_release: String,
    pub cilium_version: String,
    pub go: bool,
    pub decided: bool,
    /// Ids of the checks that block it (every capability's, deduplicated).
    pub blocking: Vec<String>,
    pub k3s: Option<K3sRole>,
    /// None: the report predates cluster facts.
    pub network: Option<Gathered<NodeNetwork>>,
}

impl ClusterNode {
    pub fn is_server(&self) -> bool {
        self.k3s.as_ref().is_some_and(|k| k.role == "server")
    }
    fn from_report(source: String, r: NodeReport) -> Self {
        let mut blocking: BTreeSet<String> = BTreeSet::new();
        for c in &r.verdict.capabilities {
            blocking.extend(c.blocking.iter().cloned());
        }
        let (k3s, network) = match r.cluster_facts {
            Some(f) => (f.k3s, Some(f.network)),
            None => (None, None),
        };
        Self {
            hostname: r.node.hostname,
            source,
            kernel_release: r.node.kernel_release,
            cilium_version: r.target.cilium_version.to_string(),
            go: r.verdict.go,
            decided: r.verdict.decided,
            blocking: blocking.into_iter().collect(),
            k3s,
            network,
        }
    }
}

/// The reports read: nodes (servers first, then by name; a hostname seen twice keeps the later
/// report) and what was refused.
#[derive(Debug, Default)]
pub struct Inputs {
    pub nodes: Vec<ClusterNode>,
    pub refused: Vec<String>,
    pub duplicates: Vec<String>,
}

/// Read every report under `paths` (files, directories, `-`, `kubectl logs` output), with
/// `aggregate`'s reader. An unreadable path is an error naming it.
pub fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<Inputs> {
    let files = read::expand(paths).map_err(|e| anyhow::anyhow!("reading the reports: {e}"))?;
    let mut by_name: BTreeMap<String, ClusterNode> = BTreeMap::new();
    let mut inputs = Inputs::default();
    let mut stats = ReadStats::default();
    for file in &files {
        read::read_path(file, &mut stats, &mut |item| match item {
            Item::Report { source, report } => {
                let node = ClusterNode::from_report(source, *report);
                if let Some(old) = by_name.insert(node.hostname.clone(), node.clone()) {
                    inputs.duplicates.push(format!(
                        "{}: reported twice ({} and {}); the later report counts",
                        node.hostname, old.source, node.source
                    ));
                }
            }
            Item::Refused { source, reason } => inputs.refused.push(format!("{source}: {reason}")),
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    }
    inputs.nodes = by_name.into_values().collect();
    inputs
        .nodes
        .sort_by_key(|n| (!n.is_server(), n.hostname.clone()));
    Ok(inputs)
}

/// A precondition, judged over every node.
#[derive(Debug, Clone, PartialEq)]
pub struct Precondition {
    pub id: &'static str,
    pub title: &'static str,
    /// pass, fail, or unknown (a node's report could not tell).
    pub status: Status,
    pub detail: String,
    /// One line per node (or per finding) behind the detail.
    pub evidence: Vec<String>,
    pub remedy: Option<String>,
}

impl Precondition {
    fn new(id: &'static str, title: &'static str) -> Self {
        Self {
            id,
            title,
            status: Status::Pass,
            detail: String::new(),
            evidence: Vec::new(),
            remedy: None,
        }
    }
}

/// What the user asked for on the command line.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Chart version helm installs (exact release).
    pub cilium_version: String,
    /// The user's values (-f/--set), merged under what the migration needs.
    pub user_values: Value,
    /// `--pod-cidr`: checked instead of chosen.
    pub pod_cidr: Option<String>,
    /// `--tunnel-port`: checked instead of chosen.
    pub tunnel_port: Option<u16>,
    /// `--chart DIR|TGZ` (absolute): helm installs this chart instead of the Cilium repo's.
    pub chart: Option<PathBuf>,
    pub release: String,
    pub namespace: String,
}

/// What the plan chose, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choices {
    pub pod_cidr: String,
    pub tunnel_port: u16,
    /// flannel's cluster CIDRs and the service CIDRs (from the servers' k3s config).
    pub flannel_cidrs: Vec<String>,
    pub service_cidrs: Vec<String>,
    /// CNI dirs containerd uses while flannel runs (the agent's conflist goes there) and once
    /// flannel is off.
    pub migration_cni: (String, String),
    pub final_cni: (String, String),
    /// `cilium.io/v2` from 1.18 (the chart's CRD list says so), `v2alpha1` before.
    pub node_config_api: &'static str,
    /// Candidates passed over, and why.
    pub skipped: Vec<String>,
}

/// The checked plan: preconditions, choices, the values of each stage and the
/// `CiliumNodeConfig`.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub nodes: Vec<ClusterNode>,
    pub preconditions: Vec<Precondition>,
    pub choices: Choices,
    pub migration_values: Value,
    pub final_values: Value,
    pub node_config: Value,
    pub notes: Vec<String>,
    pub opts: ClusterOptions,
}

impl ClusterPlan {
    /// pass: 0, a failed precondition: 1, nothing failed but something could not be told: 2.
    pub fn exit_code(&self) -> u8 {
        if self.preconditions.iter().any(|p| p.status == Status::Fail) {
            crate::exit::NO_GO
        } else if self
            .preconditions
            .iter()
            .any(|p| p.status == Status::Unknown)
        {
            crate::exit::ERROR
        } else {
            crate::exit::GO
        }
    }
    pub fn go(&self) -> bool {
        self.exit_code() == crate::exit::GO
    }
    pub fn servers(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| n.is_server())
    }
    pub fn agents(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(|n| !n.is_server())
    }
}

/// Blocking findings of a node report that the migration itself fixes, and by which part of
/// it. Anything else blocks the node.
pub fn fixed_by(check: &str) -> Option<&'static str> {
    Some(match check {
        "k3s.flannel-backend" | "k3s.network-policy" => {
            "the flannel-off stage (flannel-backend: none on the servers, then each node restarts)"
        }
        "network.flannel-leftovers" => {
            "the flannel-off stage (flannel.1 and cni0 are deleted after k3s restarts without flannel)"
        }
        "network.tunnel-port.vxlan" => {
            "the tunnel port: Cilium's VXLAN uses its own port while flannel keeps 8472"
        }
        "cni.leftover-configs" | "cni.configs" => {
            "the per-node config: the agent writes 05-cilium.conflist, which sorts before flannel's, and with cni-exclusive sets flannel's aside"
        }
        "cni.bin-dir-versioned" => "the values: cni.binPath names data/current/bin",
        "state.node-config" | "state.templates" | "state.bpf-pins" | "mounts.bpffs" => {
            "the prepare stage (bpffs mounted shared and persistent, stale Cilium state moved aside)"
        }
        _ => return None,
    })
}

fn parse_v4(cidr: &str) -> Option<(u32, u32)> {
    let (net, prefix) = crate::host::network::parse_cidr_v4(cidr)?;
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Some((u32::from(net) & mask, prefix))
}

/// Whether two IPv4 CIDRs share any address.
pub fn overlaps(a: &str, b: &str) -> bool {
    match (parse_v4(a), parse_v4(b)) {
        (Some((na, pa)), Some((nb, pb))) => {
            let p = pa.min(pb);
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            na & mask == nb & mask
        }
        _ => false,
    }
}

/// Every IPv4 range in use that the new pod CIDR must not touch, with where it was seen.
fn ranges_in_use(
    nodes: &[ClusterNode],
    flannel: &[String],
    services: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for c in flannel {
        out.push((c.clone(), "flannel's cluster-cidr".into()));
    }
    for c in services {
        out.push((c.clone(), "the service-cidr".into()));
    }
    for n in nodes {
        let Some(net) = n.network.as_ref().and_then(|o| o.got()) else {
            continue;
        };
        for a in &net.addresses {
            if parse_v4(&a.cidr).is_some() {
                out.push((
                    a.cidr.clone(),
                    format!(
                        "address of {} on {}",
                        n.hostname,
                        a.dev.as_deref().unwrap_or("?")
                    ),
                ));
            }
        }
        for r in &net.routes {
            // The default route covers everything and says nothing about what is in use.
            if parse_v4(&r.dst).is_some_and(|(_, p)| p > 0) {
                out.push((
                    r.dst.clone(),
                    format!(
                        "route on {} dev {}{}",
                        n.hostname,
                        r.dev,
                        r.via
                            .as_deref()
                            .map(|v| format!(" via {v}"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
    }
    out
}

/// The CNI dirs containerd uses once flannel is off: k3s's own dirs go, containerd's defaults come
/// (docs/upstream.md#k3s-and-rancher-desktop); a layout the user configured stays (the node plan's
/// rule).
fn final_dirs(conf_now: &str, bin_now: &str) -> (String, String) {
    if conf_now == K3S_CONF_DIR || bin_now.contains("/k3s/data/") {
        (DEFAULT_CONF_DIR.into(), DEFAULT_BIN_DIR.into())
    } else {
        (conf_now.into(), bin_now.into())
    }
}

/// `CiliumNodeConfig` is `cilium.io/v2` in the charts of 1.18 and 1.20 (Chart.yaml,
/// `artifacthub.io/crds`), `v2alpha1` in 1.16's; the guide's example still writes v2alpha1,
/// which 1.17 serves.
pub fn node_config_api(version: &str) -> &'static str {
    let v2 = crate::cilium::CiliumVersion::parse(version)
        .map(|v| v.at_least((1, 18, 0), 0))
        // Not a version (the command line parses it first): the newer API.
        .unwrap_or(true);
    if v2 {
        "cilium.io/v2"
    } else {
        "cilium.io/v2alpha1"
    }
}

/// Check every precondition and choose the values.
pub fn build(inputs: Inputs, opts: ClusterOptions) -> ClusterPlan {
    let nodes = inputs.nodes;
    let mut pre = Vec::new();
    let mut notes = Vec::new();

    // Reports: readable, every node once, one target version.
    let mut p = Precondition::new("cluster.reports", "A readable report from every node");
    p.evidence
        .extend(inputs.refused.iter().map(|r| format!("refused: {r}")));
    p.evidence.extend(inputs.duplicates.iter().cloned());
    let versions: BTreeSet<&str> = nodes.iter().map(|n| n.cilium_version.as_str()).collect();
    if nodes.is_empty() {
        p.status = Status::Fail;
        p.detail = "no node report found in the input".into();
    } else if !inputs.refused.is_empty() {
        p.status = Status::Unknown;
        p.detail = format!(
            "{} report(s) read, {} refused: the plan would miss those nodes",
            nodes.len(),
            inputs.refused.len()
        );
    } else {
        p.detail = format!(
            "{} node(s): {}",
            nodes.len(),
            nodes
                .iter()
                .map(|n| format!(
                    "{} ({})",
                    n.hostname,
                    n.k3s.as_ref().map(|k| k.role.as_str()).unwrap_or("no k3s")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if versions.len() > 1 {
        notes.push(format!(
            "the reports judged different Cilium versions ({}); the plan installs {}",
            versions.iter().copied().collect::<Vec<_>>().join(", "),
            opts.cilium_version
        ));
    }
    p.remedy = (p.status != Status::Pass).then(|| {
        "collect a report from every node (`preflight job`, then `kubectl logs … --prefix`)".into()
    });
    pre.push(p);

    // k3s with flannel on every node; a server among them.
    let mut p = Precondition::new(
        "cluster.flannel",
        "Every node runs k3s with flannel (routed through the Linux stack)",
    );
    let mut missing_facts = Vec::new();
    for n in &nodes {
        match (&n.network, &n.k3s) {
            (None, _) => missing_facts.push(n.hostname.clone()),
            (Some(_), None) => {
                p.status = Status::Fail;
                p.evidence
                    .push(format!("{}: no k3s found in its report", n.hostname));
            }
            (Some(_), Some(k)) => match k.flannel_backend.as_deref() {
                Some("none") => {
                    p.status = Status::Fail;
                    p.evidence.push(format!(
                        "{}: flannel-backend: none (not a flannel node)",
                        n.hostname
                    ));
                }
                b => p.evidence.push(format!(
                    "{}: k3s {}, flannel {}, cluster-cidr {}",
                    n.hostname,
                    k.role,
                    b.unwrap_or("vxlan (default)"),
                    k.cluster_cidrs.join(",")
                )),
            },
        }
    }
    if !missing_facts.is_empty() && p.status == Status::Pass {
        p.status = Status::Unknown;
    }
    if !nodes.is_empty() && !nodes.iter().any(|n| n.is_server()) && p.status == Status::Pass {
        p.status = Status::Fail;
        p.evidence.push("no k3s server among the reports".into());
    }
    p.detail = match p.status {
        Status::Pass => "flannel on every node: the dual-overlay procedure applies".into(),
        Status::Unknown => format!(
            "the reports of {} carry no cluster facts (written by an older preflight)",
            missing_facts.join(", ")
        ),
        _ => "the dual-overlay procedure needs flannel (or another CNI routing through the Linux stack) on every node and a server".into(),
    };
    if !missing_facts.is_empty() {
        p.remedy =
            Some("run `preflight job` with this preflight and collect the reports again".into());
    }
    pre.push(p);

    // The CIDRs in use, from the servers' k3s config (agents take them from the server).
    let mut flannel: Vec<String> = Vec::new();
    let mut services: Vec<String> = Vec::new();
    for n in &nodes {
        if let Some(k) = &n.k3s {
            for c in &k.cluster_cidrs {
                if !flannel.contains(c) && n.is_server() {
                    flannel.push(c.clone());
                }
            }
            for c in &k.service_cidrs {
                if !services.contains(c) && n.is_server() {
                    services.push(c.clone());
                }
            }
        }
    }
    if flannel.is_empty() {
        flannel.push("10.42.0.0/16".into());
    }
    if services.is_empty() {
        services.push("10.43.0.0/16".into());
    }
    let dual_stack = flannel.iter().chain(&services).any(|c| c.contains(':'));

    // Every node go, or go once the migration fixed what blocks it.
    let mut p = Precondition::new(
        "cluster.node-verdict",
        "Every node GO, or GO after its node steps",
    );
    let mut undecided = Vec::new();
    let mut other_version = false;
    // A verdict holds for the release it judged: another minor has other kernel and chart rules.
    let minor = |v: &str| {
        crate::cilium::CiliumVersion::parse(v)
            .ok()
            .map(|v| v.minor_key())
    };
    for n in &nodes {
        if minor(&n.cilium_version) != minor(&opts.cilium_version) {
            other_version = true;
            undecided.push(n.hostname.clone());
            p.evidence.push(format!(
                "{}: its report judged Cilium {}, not {}: that verdict says nothing about the release installed",
                n.hostname, n.cilium_version, opts.cilium_version
            ));
            continue;
        }
        if !n.decided {
            undecided.push(n.hostname.clone());
            p.evidence.push(format!(
                "{}: undecided (its preflight could not tell; e.g. not run as root)",
                n.hostname
            ));
            continue;
        }
        if n.go {
            p.evidence
                .push(format!("{}: GO ({})", n.hostname, n.kernel_release));
            continue;
        }
        let (fixed, open): (Vec<&String>, Vec<&String>) =
            n.blocking.iter().partition(|c| fixed_by(c).is_some());
        if open.is_empty() {
            p.evidence.push(format!(
                "{}: GO after its node steps ({})",
                n.hostname,
                fixed
                    .iter()
                    .map(|c| format!("{c}: {}", fixed_by(c).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        } else {
            p.status = Status::Fail;
            p.evidence.push(format!(
                "{}: NO-GO, blocked by {} (no migration step fixes these)",
                n.hostname,
                open.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if !undecided.is_empty() && p.status == Status::Pass {
        p.status = Status::Unknown;
    }
    p.detail = match p.status {
        Status::Pass => "every node can run the target once its steps are done".into(),
        Status::Unknown => format!("could not tell for {}", undecided.join(", ")),
        _ => "a node is blocked by something the migration does not change".into(),
    };
    if other_version {
        p.remedy = Some(format!(
            "collect the reports for the release installed (`preflight job --cilium-version {}`), or plan for the one they judged (--cilium-version)",
            opts.cilium_version
        ));
    } else if p.status != Status::Pass {
        p.remedy = Some(
            "fix what blocks those nodes (`preflight run` on each says how), then collect the reports again"
                .into(),
        );
    }
    pre.push(p);

    // The tunnel port: bound on no node.
    let mut p = Precondition::new(
        "cluster.tunnel-port",
        "Cilium's VXLAN port is free on every node",
    );
    let mut skipped = Vec::new();
    let bound_on = |port: u16| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| {
                n.network
                    .as_ref()
                    .and_then(|o| o.got())
                    .is_some_and(|net| net.udp_ports.contains(&port))
            })
            .map(|n| n.hostname.clone())
            .collect()
    };
    let unknown_net: Vec<String> = nodes
        .iter()
        .filter(|n| n.network.as_ref().and_then(|o| o.got()).is_none())
        .map(|n| {
            let why = match &n.network {
                Some(Gathered::Unknown(w) | Gathered::Skipped(w)) => w.clone(),
                _ => "no cluster facts in its report".into(),
            };
            format!("{}: {why}", n.hostname)
        })
        .collect();
    let tunnel_port = match opts.tunnel_port {
        Some(port) => {
            let on = bound_on(port);
            if port == FLANNEL_VXLAN_PORT || !on.is_empty() {
                p.status = Status::Fail;
                p.evidence.push(format!(
                    "--tunnel-port {port}: bound on {} (flannel's VXLAN holds {FLANNEL_VXLAN_PORT})",
                    if on.is_empty() { "flannel's nodes".to_string() } else { on.join(", ") }
                ));
            }
            port
        }
        None => {
            let mut chosen = *TUNNEL_PORTS.start();
            for port in TUNNEL_PORTS {
                let on = bound_on(port);
                if on.is_empty() {
                    chosen = port;
                    break;
                }
                skipped.push(format!("UDP {port}: bound on {}", on.join(", ")));
                p.evidence
                    .push(format!("UDP {port} bound on {}", on.join(", ")));
                chosen = 0;
            }
            if chosen == 0 {
                p.status = Status::Fail;
                p.remedy = Some("free a port or give --tunnel-port".into());
            }
            chosen
        }
    };
    let flannel_on: Vec<String> = bound_on(FLANNEL_VXLAN_PORT);
    p.evidence.push(format!(
        "UDP {FLANNEL_VXLAN_PORT} (flannel's VXLAN) bound on {} of {} node(s)",
        flannel_on.len(),
        nodes.len()
    ));
    if !unknown_net.is_empty() && p.status == Status::Pass {
        p.status = Status::Unknown;
        p.evidence
            .extend(unknown_net.iter().map(|u| format!("could not tell: {u}")));
    }
    p.detail = match p.status {
        Status::Pass => format!(
            "UDP {tunnel_port} is bound on none of the {} node(s): Cilium's VXLAN takes it while flannel keeps {FLANNEL_VXLAN_PORT}",
            nodes.len()
        ),
        Status::Unknown => "the bound UDP ports of some nodes are unknown".into(),
        _ => format!("UDP {tunnel_port} is not free everywhere"),
    };
    pre.push(p);

    // The new pod CIDR: overlaps nothing in use anywhere.
    let mut p = Precondition::new(
        "cluster.pod-cidr",
        "Cilium's pod CIDR overlaps no CIDR, address or route in use",
    );
    let in_use = ranges_in_use(&nodes, &flannel, &services);
    let clashes = |cidr: &str| -> Vec<String> {
        in_use
            .iter()
            .filter(|(r, _)| overlaps(cidr, r))
            .map(|(r, w)| format!("{r} ({w})"))
            .collect()
    };
    let pod_cidr = match &opts.pod_cidr {
        Some(c) => {
            if parse_v4(c).is_none() {
                p.status = Status::Fail;
                p.evidence.push(format!("--pod-cidr {c}: not an IPv4 CIDR"));
            } else {
                let hit = clashes(c);
                if !hit.is_empty() {
                    p.status = Status::Fail;
                    p.evidence.push(format!("{c} overlaps {}", hit.join(", ")));
                }
            }
            c.clone()
        }
        None => {
            // The /16s after k3s's 10.42 and 10.43, in order: the first that touches nothing.
            let mut chosen = None;
            for second in 44..=254u8 {
                let c = format!("{}/16", Ipv4Addr::new(10, second, 0, 0));
                let hit = clashes(&c);
                if hit.is_empty() {
                    chosen = Some(c);
                    break;
                }
                skipped.push(format!("{c}: overlaps {}", hit.join(", ")));
                p.evidence
                    .push(format!("{c} skipped: overlaps {}", hit.join(", ")));
            }
            chosen.unwrap_or_else(|| {
                p.status = Status::Fail;
                "10.44.0.0/16".into()
            })
        }
    };
    p.evidence.push(format!(
        "compared with {} range(s): flannel {}, services {}, and every node's addresses and routes",
        in_use.len(),
        flannel.join(","),
        services.join(",")
    ));
    if dual_stack {
        p.status = Status::Fail;
        p.evidence.push(
            "the cluster is dual-stack: the guide's procedure is untested with IPv6 and changing IP families; this planner migrates IPv4-only clusters".into(),
        );
    }
    if !unknown_net.is_empty() && p.status == Status::Pass {
        p.status = Status::Unknown;
    }
    p.detail = match p.status {
        Status::Pass => format!("{pod_cidr} overlaps nothing seen on any node"),
        Status::Unknown => "addresses and routes of some nodes are unknown".into(),
        _ => format!("{pod_cidr} cannot be used"),
    };
    pre.push(p);

    // CNI dirs: the agent writes its conflist where containerd reads while flannel runs.
    let mut p = Precondition::new(
        "cluster.cni-dirs",
        "Every node's containerd reads the same CNI dirs",
    );
    let mut dirs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for n in &nodes {
        let Some(k) = &n.k3s else { continue };
        match (&k.cni_conf_dir, k.cni_bin_dirs.first()) {
            (Some(c), Some(b)) => dirs
                .entry((c.clone(), crate::plan::node::versionless(b)))
                .or_default()
                .push(n.hostname.clone()),
            _ => {
                if p.status == Status::Pass {
                    p.status = Status::Unknown;
                }
                p.evidence.push(format!(
                    "{}: containerd's CNI dirs could not be read",
                    n.hostname
                ))
            }
        }
    }
    for ((c, b), on) in &dirs {
        p.evidence
            .push(format!("conf {c}, bin {b}: {}", on.join(", ")));
    }
    if dirs.len() > 1 {
        p.status = Status::Fail;
        p.remedy = Some(
            "the chart sets one cni.confPath and cni.binPath for every node: make the nodes' containerd configs agree"
                .into(),
        );
    }
    let migration_cni = dirs.keys().next().cloned().unwrap_or_else(|| {
        (
            K3S_CONF_DIR.into(),
            "/var/lib/rancher/k3s/data/current/bin".into(),
        )
    });
    let final_cni = final_dirs(&migration_cni.0, &migration_cni.1);
    p.detail = match p.status {
        Status::Pass => format!(
            "while flannel runs: conf {}, bin {}; once it is off: conf {}, bin {}",
            migration_cni.0, migration_cni.1, final_cni.0, final_cni.1
        ),
        Status::Unknown => "some nodes' CNI dirs are unknown".into(),
        _ => "the nodes disagree".into(),
    };
    pre.push(p);

    // Values the migration cannot take.
    let mut p = Precondition::new("cluster.values", "Your values fit a dual-overlay migration");
    if crate::plan::wants_kube_proxy_replacement(&opts.user_values) {
        p.status = Status::Fail;
        p.evidence.push(
            "kubeProxyReplacement: kube-proxy stays during the migration (the guide's values keep it); enable the replacement after the migration, with `disable-kube-proxy` on the servers".into(),
        );
    }
    if let Some(r) = values::lookup(&opts.user_values, "routingMode").and_then(|v| v.as_str())
        && r != "tunnel"
    {
        p.status = Status::Fail;
        p.evidence.push(format!(
            "routingMode {r}: the migration needs Cilium's own overlay (tunnel) next to flannel's"
        ));
    }
    if let Some(t) = values::lookup(&opts.user_values, "tunnelProtocol").and_then(|v| v.as_str())
        && t != "vxlan"
    {
        notes.push(format!(
            "tunnelProtocol {t} in your values is replaced by vxlan on UDP {tunnel_port} (the guide's choice; a distinct port suffices)"
        ));
    }
    p.detail = if p.status == Status::Pass {
        "nothing in your values conflicts with the migration".into()
    } else {
        "your values ask for something the migration cannot do".into()
    };
    pre.push(p);

    let choices = Choices {
        pod_cidr,
        tunnel_port,
        flannel_cidrs: flannel,
        service_cidrs: services,
        migration_cni,
        final_cni,
        node_config_api: node_config_api(&opts.cilium_version),
        skipped,
    };
    let migration_values = migration_values(&opts.user_values, &choices, &mut notes);
    let final_values = final_values(&opts.user_values, &choices);
    let node_config = node_config(&choices, &opts.namespace);
    ClusterPlan {
        nodes,
        preconditions: pre,
        choices,
        migration_values,
        final_values,
        node_config,
        notes,
        opts,
    }
}

/// The values Cilium is installed with next to flannel: the guide's values-migration.yaml
/// (tunnel on its own port, cluster-pool IPAM on the new CIDR, no CNI config of its own, no
/// uninstall of it, no policy enforcement, the unmanaged-pod watcher off, legacy host routing)
/// over the user's values, plus the CNI dirs containerd reads while flannel runs.
pub fn migration_values(user: &Value, c: &Choices, notes: &mut Vec<String>) -> Value {
    let required = json!({
        "routingMode": "tunnel",
        "tunnelProtocol": "vxlan",
        "tunnelPort": c.tunnel_port,
        "ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": [c.pod_cidr]}},
        "cni": {
            "customConf": true,
            "uninstall": false,
            "confPath": c.migration_cni.0,
            "binPath": c.migration_cni.1,
        },
        "operator": {"unmanagedPodWatcher": {"restart": false}},
        "policyEnforcementMode": "never",
        "bpf": {"hostLegacyRouting": true},
    });
    note_replaced(user, &required, notes);
    let mut v = user.clone();
    if !v.is_object() {
        v = json!({});
    }
    values::merge(&mut v, required);
    v
}

/// The values once every node runs Cilium (the guide's values-final.yaml): Cilium writes its
/// own CNI config into the dirs containerd reads once flannel is off, enforces policy, restarts
/// unmanaged pods; the tunnel port and pod CIDR stay (changing them would cut nodes off from
/// each other while the agents restart one by one); eBPF host routing as the user chose (the
/// chart's default when not set).
pub fn final_values(user: &Value, c: &Choices) -> Value {
    let mut v = user.clone();
    if !v.is_object() {
        v = json!({});
    }
    let host_routing = values::lookup(user, "bpf.hostLegacyRouting").cloned();
    let enforcement = values::lookup(user, "policyEnforcementMode")
        .cloned()
        .unwrap_or(json!("default"));
    values::merge(
        &mut v,
        json!({
            "routingMode": "tunnel",
            "tunnelProtocol": "vxlan",
            "tunnelPort": c.tunnel_port,
            "ipam": {"mode": "cluster-pool", "operator": {"clusterPoolIPv4PodCIDRList": [c.pod_cidr]}},
            "cni": {
                "customConf": false,
                "uninstall": false,
                "confPath": c.final_cni.0,
                "binPath": c.final_cni.1,
            },
            "operator": {"unmanagedPodWatcher": {"restart": true}},
            "policyEnforcementMode": enforcement,
            "bpf": {"hostLegacyRouting": host_routing.unwrap_or(json!(false))},
        }),
    );
    v
}

fn note_replaced(user: &Value, required: &Value, notes: &mut Vec<String>) {
    for (path, got, want) in crate::plan::decide::replaced_values(user, required) {
        notes.push(format!(
            "values: your {path}: {got} is replaced by {want} during the migration"
        ));
    }
}

/// The guide's per-node config: on nodes with the migration label the agent takes over CNI
/// networking, writing its conflist where containerd looks (`/host/etc/cni/net.d` in the agent
/// pod is the chart's `cni.confPath` on the node). It lives in the agent's namespace (the
/// release's), where the agent looks for it.
pub fn node_config(c: &Choices, namespace: &str) -> Value {
    json!({
        "apiVersion": c.node_config_api,
        "kind": "CiliumNodeConfig",
        "metadata": {"namespace": namespace, "name": super::NODE_CONFIG_NAME},
        "spec": {
            "nodeSelector": {"matchLabels": {super::MIGRATION_LABEL: "true"}},
            "defaults": {
                "write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                "custom-cni-conf": "false",
                "cni-chaining-mode": "none",
                "cni-exclusive": "true",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_symmetric_and_prefix_aware() {
        assert!(overlaps("10.42.0.0/16", "10.42.3.0/24"));
        assert!(overlaps("10.42.3.0/24", "10.42.0.0/16"));
        assert!(!overlaps("10.44.0.0/16", "10.42.0.0/16"));
        assert!(overlaps("10.0.0.0/8", "10.44.1.1/32"));
        assert!(
            !overlaps("fd00::/8", "10.0.0.0/8"),
            "IPv6 is not compared with IPv4"
        );
    }

    #[test]
    fn node_config_api_follows_the_charts() {
        assert_eq!(node_config_api("1.16.15"), "cilium.io/v2alpha1");
        assert_eq!(node_config_api("1.18.4"), "cilium.io/v2");
        assert_eq!(node_config_api("1.20.0"), "cilium.io/v2");
    }

    #[test]
    fn final_dirs_follow_k3s() {
        assert_eq!(
            final_dirs(K3S_CONF_DIR, "/var/lib/rancher/k3s/data/current/bin"),
            (DEFAULT_CONF_DIR.to_string(), DEFAULT_BIN_DIR.to_string())
        );
        assert_eq!(
            final_dirs("/etc/cni/net.d", "/usr/libexec/cni"),
            ("/etc/cni/net.d".to_string(), "/usr/libexec/cni".to_string())
        );
    }
}

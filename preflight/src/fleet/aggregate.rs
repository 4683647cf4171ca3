//! The cluster verdict: a capability is go only if every node is go for it, and nodes are
//! grouped by the set of checks that block them. Folding is incremental (one report at a time)
//! and keeps a few words per node, so 10,000 nodes take a few MiB.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::read::{Item, NodeReport, ReadStats};
use crate::model::Readiness;

/// Version of the aggregate JSON (independent of the node report's schema_version).
pub const AGGREGATE_SCHEMA_VERSION: u32 = 1;

/// How many hostnames the text rendering lists per group before "and N more".
const NAMES_SHOWN: usize = 8;

#[derive(Debug, Clone)]
struct NodeEntry {
    source: String,
    kernel_release: String,
    go: bool,
    readiness: Readiness,
    /// Sorted, deduplicated ids of the checks that block this node.
    blocking: Vec<String>,
    /// capability → go, for what this node's target needs.
    capabilities: Vec<(String, bool)>,
    target: (String, Vec<String>),
}

#[derive(Debug, Default)]
pub struct Aggregator {
    nodes: HashMap<String, NodeEntry>,
    duplicates: Vec<Duplicate>,
    refused: Vec<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// `file:line` where the report starts.
    pub source: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub hostname: String,
    /// The report that was kept (the later one: a pod that ran again).
    pub kept: String,
    pub dropped: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterCapability {
    pub capability: String,
    /// Every node evaluated it and is go for it.
    pub go: bool,
    pub nodes_go: usize,
    pub nodes_no_go: usize,
    /// Nodes whose target did not include this capability (their preflight did not decide it).
    pub nodes_not_evaluated: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeGroup {
    pub go: bool,
    /// The checks that fail on these nodes; empty for the go group.
    pub blocked_by: Vec<String>,
    pub count: usize,
    /// The kernel releases among these nodes: often the thing to change.
    pub kernels: Vec<String>,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterTarget {
    pub cilium_version: String,
    pub capabilities: Vec<String>,
    pub nodes: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadinessCounts {
    pub go: usize,
    pub go_after_plan: usize,
    pub no_go: usize,
    pub undecided: usize,
}

impl ReadinessCounts {
    fn count(&mut self, r: Readiness) {
        match r {
            Readiness::Go => self.go += 1,
            Readiness::GoAfterPlan => self.go_after_plan += 1,
            Readiness::NoGo => self.no_go += 1,
            Readiness::Undecided => self.undecided += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterVerdict {
    pub aggregate_schema_version: u32,
    /// Every node is go for every capability any node's target needs, and nothing was refused.
    pub go: bool,
    pub nodes: usize,
    pub nodes_go: usize,
    /// Nodes by readiness: go, go after `preflight plan`, no-go (a person must act), undecided.
    pub readiness: ReadinessCounts,
    pub capabilities: Vec<ClusterCapability>,
    /// Largest group first.
    pub groups: Vec<NodeGroup>,
    /// More than one entry means the nodes were not checked against the same target.
    pub targets: Vec<ClusterTarget>,
    pub refused: Vec<Refusal>,
    pub duplicates: Vec<Duplicate>,
    pub input_lines: u64,
    pub noise_lines: u64,
    pub summary: String,
}

impl Aggregator {
    pub fn add(&mut self, item: Item) {
        match item {
            Item::Report { source, report } => self.add_report(source, *report),
            Item::Refused { source, reason } => self.refused.push(Refusal { source, reason }),
        }
    }

    fn add_report(&mut self, source: String, report: NodeReport) {
        let mut blocking: Vec<String> = report
            .verdict
            .capabilities
            .iter()
            .flat_map(|c| c.blocking.iter().cloned())
            .collect();
        blocking.sort();
        blocking.dedup();
        let mut target_caps = report.target.capabilities;
        target_caps.sort();
        let entry = NodeEntry {
            source,
            kernel_release: report.node.kernel_release,
            go: report.verdict.go,
            readiness: report.verdict.readiness(),
            blocking,
            capabilities: report
                .verdict
                .capabilities
                .into_iter()
                .map(|c| (c.capability, c.go))
                .collect(),
            target: (report.target.cilium_version, target_caps),
        };
        if let Some(old) = self.nodes.insert(report.node.hostname.clone(), entry) {
            let kept = self.nodes[&report.node.hostname].source.clone();
            self.duplicates.push(Duplicate {
                hostname: report.node.hostname,
                kept,
                dropped: old.source,
            });
        }
    }

    pub fn finish(self, stats: ReadStats) -> ClusterVerdict {
        let mut by_name: Vec<(&String, &NodeEntry)> = self.nodes.iter().collect();
        by_name.sort_by(|a, b| a.0.cmp(b.0));
        let nodes = by_name.len();

        let mut caps: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        type Members<'a> = (Vec<String>, BTreeSet<&'a str>);
        let mut groups: BTreeMap<(bool, &[String]), Members> = BTreeMap::new();
        let mut targets: BTreeMap<&(String, Vec<String>), usize> = BTreeMap::new();
        for (name, node) in &by_name {
            for (cap, go) in &node.capabilities {
                let tally = caps.entry(cap.as_str()).or_default();
                if *go {
                    tally.0 += 1;
                } else {
                    tally.1 += 1;
                }
            }
            let group = groups
                .entry((node.go, node.blocking.as_slice()))
                .or_default();
            group.0.push((*name).clone());
            group.1.insert(node.kernel_release.as_str());
            *targets.entry(&node.target).or_default() += 1;
        }
        let capabilities: Vec<ClusterCapability> = caps
            .into_iter()
            .map(|(cap, (go, no_go))| {
                let not_evaluated = nodes - go - no_go;
                ClusterCapability {
                    capability: cap.to_string(),
                    go: no_go == 0 && not_evaluated == 0,
                    nodes_go: go,
                    nodes_no_go: no_go,
                    nodes_not_evaluated: not_evaluated,
                }
            })
            .collect();
        let mut groups: Vec<NodeGroup> = groups
            .into_iter()
            .map(|((go, blocked_by), (nodes, kernels))| NodeGroup {
                go,
                blocked_by: blocked_by.to_vec(),
                count: nodes.len(),
                kernels: kernels.into_iter().map(str::to_string).collect(),
                nodes,
            })
            .collect();
        // Go nodes first, then the largest groups: the first no-go group is the one to fix first.
        groups.sort_by(|a, b| b.go.cmp(&a.go).then(b.count.cmp(&a.count)));
        let nodes_go = by_name.iter().filter(|(_, n)| n.go).count();
        let mut readiness = ReadinessCounts::default();
        for (_, n) in &by_name {
            readiness.count(n.readiness);
        }
        let targets: Vec<ClusterTarget> = targets
            .into_iter()
            .map(|((version, caps), n)| ClusterTarget {
                cilium_version: version.clone(),
                capabilities: caps.clone(),
                nodes: n,
            })
            .collect();
        let go = nodes > 0
            && self.refused.is_empty()
            && nodes_go == nodes
            && capabilities.iter().all(|c| c.go);
        let summary = summary(
            go,
            nodes,
            &readiness,
            &capabilities,
            &self.refused,
            &targets,
        );
        ClusterVerdict {
            aggregate_schema_version: AGGREGATE_SCHEMA_VERSION,
            go,
            nodes,
            nodes_go,
            readiness,
            capabilities,
            groups,
            targets,
            refused: self.refused,
            duplicates: self.duplicates,
            input_lines: stats.lines,
            noise_lines: stats.noise_lines,
            summary,
        }
    }
}

fn summary(
    go: bool,
    nodes: usize,
    readiness: &ReadinessCounts,
    caps: &[ClusterCapability],
    refused: &[Refusal],
    targets: &[ClusterTarget],
) -> String {
    if nodes == 0 {
        return "NO REPORTS: nothing to decide (see refused reports and noise lines)".into();
    }
    let nodes_go = readiness.go;
    let mut s = if go {
        format!("GO: all {nodes} nodes are go for every capability the target needs")
    } else if readiness.go_after_plan > 0 && readiness.go + readiness.go_after_plan == nodes {
        format!(
            "GO after plan: {} of {nodes} nodes are go once `preflight plan` runs on them, the \
             others are go",
            readiness.go_after_plan
        )
    } else {
        let blocked: Vec<_> = caps
            .iter()
            .filter(|c| !c.go)
            .map(|c| c.capability.as_str())
            .collect();
        format!(
            "NO-GO: {} of {nodes} nodes are no-go{}",
            nodes - nodes_go,
            if blocked.is_empty() {
                String::new()
            } else {
                format!("; not go cluster-wide: {}", blocked.join(", "))
            }
        )
    };
    if !go && readiness.go_after_plan > 0 && readiness.go + readiness.go_after_plan < nodes {
        s.push_str(&format!(
            "; {} of them go after `preflight plan`",
            readiness.go_after_plan
        ));
    }
    if !refused.is_empty() {
        s.push_str(&format!(
            "; {} reports refused, so the verdict is incomplete",
            refused.len()
        ));
    }
    if targets.len() > 1 {
        s.push_str(&format!(
            "; nodes were checked against {} different targets",
            targets.len()
        ));
    }
    s
}

/// The text rendering: capabilities, then groups of nodes, then what was refused.
pub fn render_text(v: &ClusterVerdict) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}", v.summary);
    let r = &v.readiness;
    let _ = writeln!(
        out,
        "\nNodes: {} go, {} go after plan, {} no-go, {} undecided",
        r.go, r.go_after_plan, r.no_go, r.undecided
    );
    let _ = writeln!(out, "\nCapabilities ({} nodes)", v.nodes);
    for c in &v.capabilities {
        let _ = writeln!(
            out,
            "  {:<24} {:<6} {} go, {} no-go{}",
            c.capability,
            if c.go { "go" } else { "NO-GO" },
            c.nodes_go,
            c.nodes_no_go,
            if c.nodes_not_evaluated > 0 {
                format!(", {} did not evaluate it", c.nodes_not_evaluated)
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "\nNodes by what blocks them");
    for g in &v.groups {
        let head = if g.go {
            "go".to_string()
        } else if g.blocked_by.is_empty() {
            "no-go (no blocking check named)".to_string()
        } else {
            format!("blocked by {}", g.blocked_by.join(", "))
        };
        let shown: Vec<_> = g
            .nodes
            .iter()
            .take(NAMES_SHOWN)
            .map(String::as_str)
            .collect();
        let more = g.count.saturating_sub(NAMES_SHOWN);
        let _ = writeln!(
            out,
            "  {head} ({} nodes; kernels {}): {}{}",
            g.count,
            g.kernels.join(", "),
            shown.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        );
    }
    if v.targets.len() > 1 {
        let _ = writeln!(out, "\nTargets");
        for t in &v.targets {
            let _ = writeln!(
                out,
                "  Cilium {} needing {} ({} nodes)",
                t.cilium_version,
                t.capabilities.join(", "),
                t.nodes
            );
        }
    }
    if !v.refused.is_empty() {
        let _ = writeln!(out, "\nRefused ({})", v.refused.len());
        for r in &v.refused {
            let _ = writeln!(out, "  {}: {}", r.source, r.reason);
        }
    }
    if !v.duplicates.is_empty() {
        let _ = writeln!(out, "\nReported twice (the later report is used)");
        for d in &v.duplicates {
            let _ = writeln!(
                out,
                "  {}: kept {}, dropped {}",
                d.hostname, d.kept, d.dropped
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} input lines, {} skipped as log noise",
        v.input_lines, v.noise_lines
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::read::{self, read_all};

    fn verdict(input: &str) -> ClusterVerdict {
        let mut agg = Aggregator::default();
        let (items, stats) = read_all("in", input.as_bytes());
        for item in items {
            agg.add(item);
        }
        agg.finish(stats)
    }

    fn report(host: &str, kernel: &str, caps: &[(&str, bool, &[&str])]) -> String {
        serde_json::json!({
            "schema_version": 1,
            "node": {"hostname": host, "kernel_release": kernel},
            "target": {"cilium_version": "1.18.4",
                       "capabilities": caps.iter().map(|c| c.0).collect::<Vec<_>>()},
            "verdict": {"go": caps.iter().all(|c| c.1), "capabilities": caps.iter().map(|(c, go, b)|
                serde_json::json!({"capability": c, "go": go, "blocking": b})).collect::<Vec<_>>()}
        })
        .to_string()
    }

    #[test]
    fn a_capability_is_go_only_if_every_node_is_go_for_it() {
        let input = [
            report(
                "a",
                "6.12",
                &[("base-datapath", true, &[]), ("wireguard", true, &[])],
            ),
            report(
                "b",
                "6.1",
                &[
                    ("base-datapath", true, &[]),
                    ("wireguard", false, &["modules.wireguard"]),
                ],
            ),
            report(
                "c",
                "6.1",
                &[
                    ("base-datapath", true, &[]),
                    ("wireguard", false, &["modules.wireguard"]),
                ],
            ),
            report(
                "d",
                "5.4",
                &[
                    ("base-datapath", false, &["bpf.x", "bpf.y"]),
                    ("wireguard", false, &["modules.wireguard"]),
                ],
            ),
        ]
        .join("\n");
        let v = verdict(&input);
        assert!(!v.go);
        assert_eq!((v.nodes, v.nodes_go), (4, 1));
        let cap = |n: &str| {
            v.capabilities
                .iter()
                .find(|c| c.capability == n)
                .unwrap()
                .clone()
        };
        assert_eq!(
            (cap("base-datapath").go, cap("base-datapath").nodes_no_go),
            (false, 1)
        );
        assert_eq!(
            (cap("wireguard").nodes_go, cap("wireguard").nodes_no_go),
            (1, 3)
        );
        let groups: Vec<_> = v
            .groups
            .iter()
            .map(|g| {
                (
                    g.go,
                    g.blocked_by.join("+"),
                    g.nodes.join(","),
                    g.kernels.join(","),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                (true, String::new(), "a".into(), "6.12".into()),
                (
                    false,
                    "modules.wireguard".into(),
                    "b,c".into(),
                    "6.1".into()
                ),
                (
                    false,
                    "bpf.x+bpf.y+modules.wireguard".into(),
                    "d".into(),
                    "5.4".into()
                ),
            ]
        );
        assert!(
            v.summary.starts_with("NO-GO: 3 of 4 nodes"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn all_go_is_go_and_a_missing_evaluation_is_not() {
        let all = [
            report("a", "6.12", &[("base-datapath", true, &[])]),
            report("b", "6.12", &[("base-datapath", true, &[])]),
        ];
        let v = verdict(&all.join("\n"));
        assert!(v.go, "{}", v.summary);
        let mixed = [
            report(
                "a",
                "6.12",
                &[("base-datapath", true, &[]), ("netkit", true, &[])],
            ),
            report("b", "6.12", &[("base-datapath", true, &[])]),
        ];
        let v = verdict(&mixed.join("\n"));
        let netkit = v
            .capabilities
            .iter()
            .find(|c| c.capability == "netkit")
            .unwrap();
        assert_eq!((netkit.go, netkit.nodes_not_evaluated), (false, 1));
        assert!(!v.go);
        assert_eq!(v.targets.len(), 2);
    }

    #[test]
    fn refused_reports_make_the_verdict_incomplete_and_a_rerun_replaces_a_node() {
        let input = [
            report("a", "6.12", &[("base-datapath", false, &["bpf.x"])]),
            r#"{"schema_version": 3}"#.to_string(),
            report("a", "6.12", &[("base-datapath", true, &[])]),
        ]
        .join("\n");
        let v = verdict(&input);
        assert_eq!(v.nodes, 1);
        assert!(!v.go, "a refused report must not let the cluster be go");
        assert_eq!(v.refused[0].source, "in:2");
        assert_eq!(v.duplicates[0].kept, "in:3");
        assert!(v.summary.contains("1 reports refused"), "{}", v.summary);
        let text = render_text(&v);
        assert!(text.contains("in:2: schema_version 3"), "{text}");
        let _ = read::MAX_REPORT_BYTES;
    }
}

//! Checks over the attach canaries: real programs on real hooks, traffic proving they ran.
use super::Check;
use crate::model::{
    Area,
    Capability::{self, *},
    Outcome, Support,
};

/// (canary, title, needed by, remedy).
const CANARIES: &[(&str, &str, &[Capability], &str)] = &[
    (
        "tc",
        "tc classifier on clsact ingress (netlink)",
        &[BaseDatapath],
        "CONFIG_NET_CLS_BPF and CONFIG_NET_SCH_INGRESS (=y, or the modules cls_bpf and sch_ingress loaded)",
    ),
    (
        "tcx",
        "tc classifier through a tcx link (kernel 6.6)",
        &[],
        "none needed: Cilium uses clsact on kernels without tcx",
    ),
    (
        "xdp",
        "XDP program on a veth",
        &[XdpAcceleration],
        "a kernel with XDP; or loadBalancer.acceleration=disabled",
    ),
    (
        "tail_call",
        "tail call through a prog_array (CALLS_MAP)",
        &[BaseDatapath],
        "a kernel with eBPF tail calls; check net.core.bpf_jit_harden",
    ),
    (
        "lru_hash",
        "LRU hash map written from tc (conntrack)",
        &[BaseDatapath],
        "a kernel with BPF_MAP_TYPE_LRU_HASH (4.10+)",
    ),
    (
        "lpm_trie",
        "LPM trie lookup from tc (ipcache)",
        &[BaseDatapath],
        "a kernel with BPF_MAP_TYPE_LPM_TRIE (4.11+)",
    ),
    (
        "cgroup_sock_addr",
        "connect4/sendmsg4 on a cgroup v2 directory",
        &[SocketLb, KubeProxyReplacement],
        "mount cgroup v2 (unified or hybrid); or socketLB.enabled=false and kubeProxyReplacement=false",
    ),
    (
        "bpffs_pin",
        "pin and reopen a map on a bpffs",
        &[BaseDatapath],
        "a kernel with CONFIG_BPF_SYSCALL and bpffs; mount -t bpf bpf /sys/fs/bpf",
    ),
];

pub fn checks() -> Vec<Check> {
    CANARIES
        .iter()
        .map(|(name, title, needed_by, remedy)| {
            Check::new(format!("attach.{name}"), Area::Attach, *title)
                .needed_by(needed_by)
                .remedy(*remedy)
                .evaluate(move |facts, _| {
                    facts.canaries.judge(|report| {
                        let Some(result) = report.results.get(*name) else {
                            return Outcome::unknown("canary did not report");
                        };
                        let detail = result.detail.clone();
                        let o = match &result.support {
                            Support::Available => Outcome::pass(detail),
                            Support::Unavailable { reason } => {
                                let text = reason.clone().unwrap_or(detail);
                                if needed_by.is_empty() {
                                    Outcome::warn(text)
                                } else {
                                    Outcome::fail(text)
                                }
                            }
                            Support::Unknown { reason } => {
                                Outcome::unknown(format!("could not tell: {reason}"))
                            }
                        };
                        o.evidence("scratch netns canary (preflight __canary-worker)")
                    })
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// docs/probe.md's canary table has one row per `attach.*` check, and no other.
    #[test]
    fn docs_table_has_a_row_per_canary() {
        let docs = include_str!("../../../docs/probe.md");
        let rows: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `attach."))
            .filter_map(|l| l.split('`').next())
            .collect();
        let ids: Vec<String> = super::checks().into_iter().map(|c| c.id).collect();
        let ids: Vec<&str> = ids
            .iter()
            .filter_map(|id| id.strip_prefix("attach."))
            .collect();
        assert_eq!(rows, ids, "docs/probe.md's canary table, in registry order");
    }
}

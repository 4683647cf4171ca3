//! Sysctls that decide whether programs load (JIT, hardening) and whether the agent's init
//! (which writes rp_filter before it writes node_config.h) can finish.
use super::Check;
use crate::{
    facts::Facts,
    host::sysctl::SysctlValue,
    model::{
        Area,
        Capability::{self, *},
        Outcome,
    },
};

/// Reads a sysctl and hands its value to `judge`; absent or unreadable values say so.
fn sysctl_check(
    key: &'static str,
    title: &str,
    needed_by: &[Capability],
    remedy: &str,
    absent: fn() -> Outcome,
    judge: fn(&str) -> Outcome,
) -> Check {
    Check::new(
        format!("sysctl.{}", key.replace(['.', '_'], "-")),
        Area::Sysctl,
        title,
    )
    .needed_by(needed_by)
    .remedy(remedy)
    .evaluate(move |facts: &Facts, _| {
        let Some((file, value)) = facts.sysctls.get(key) else {
            return Outcome::unknown("not gathered");
        };
        let out = match value {
            SysctlValue::Value(v) => judge(v),
            SysctlValue::Absent => absent(),
            SysctlValue::Bad(why) => Outcome::unknown(why.clone()),
        };
        out.evidence(file.clone())
    })
}

pub fn checks() -> Vec<Check> {
    vec![
        sysctl_check(
            "net.core.bpf_jit_enable",
            "eBPF JIT enabled",
            &[BaseDatapath],
            "sysctl -w net.core.bpf_jit_enable=1; persist in /etc/sysctl.d/90-cilium.conf",
            || Outcome::unknown("no net.core.bpf_jit_enable (kernel without JIT, or /proc/sys not visible)"),
            |v| match v {
                "1" | "2" => Outcome::pass(format!("net.core.bpf_jit_enable = {v}")),
                _ => Outcome::fail(format!("net.core.bpf_jit_enable = {v}: programs run interpreted, and Cilium requires the JIT")),
            },
        ),
        sysctl_check(
            "net.core.bpf_jit_harden",
            "JIT hardening off for root (constant blinding grows programs)",
            &[],
            "sysctl -w net.core.bpf_jit_harden=0 (or 1: hardening for unprivileged users only)",
            || Outcome::skip("no net.core.bpf_jit_harden"),
            |v| match v {
                "2" => Outcome::warn("net.core.bpf_jit_harden = 2: constant blinding for every program makes Cilium's larger programs slower and can hit limits"),
                _ => Outcome::pass(format!("net.core.bpf_jit_harden = {v}")),
            },
        ),
        sysctl_check(
            "kernel.unprivileged_bpf_disabled",
            "Unprivileged bpf() setting (informational)",
            &[],
            "",
            || Outcome::skip("no kernel.unprivileged_bpf_disabled"),
            |v| Outcome::pass(format!("kernel.unprivileged_bpf_disabled = {v} (Cilium runs privileged; no effect)")),
        ),
        sysctl_check(
            "net.ipv4.conf.all.rp_filter",
            "Reverse-path filtering",
            &[],
            "sysctl -w net.ipv4.conf.all.rp_filter=0 (Cilium relaxes it on its own devices; strict mode on 'all' overrides that)",
            || Outcome::unknown("no net.ipv4.conf.all.rp_filter (no IPv4 or /proc/sys not visible)"),
            |v| match v {
                "1" => Outcome::warn("net.ipv4.conf.all.rp_filter = 1 (strict): the maximum of 'all' and the device's value applies, so strict mode drops asymmetric pod traffic"),
                _ => Outcome::pass(format!("net.ipv4.conf.all.rp_filter = {v}")),
            },
        ),
        sysctl_check(
            "net.ipv4.ip_forward",
            "IPv4 forwarding",
            &[],
            "sysctl -w net.ipv4.ip_forward=1; persist in /etc/sysctl.d/90-cilium.conf",
            || Outcome::unknown("no net.ipv4.ip_forward"),
            |v| match v {
                "1" => Outcome::pass("net.ipv4.ip_forward = 1"),
                _ => Outcome::warn(format!("net.ipv4.ip_forward = {v}: the node does not route; Cilium's host routing needs it on")),
            },
        ),
        sysctl_check(
            "net.bridge.bridge-nf-call-iptables",
            "Bridged traffic through iptables (flannel fallback, kube-proxy)",
            &[],
            "modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1",
            || Outcome::warn("no net.bridge.bridge-nf-call-iptables: br_netfilter is not loaded; a flannel fallback with kube-proxy needs it"),
            |v| match v {
                "1" => Outcome::pass("net.bridge.bridge-nf-call-iptables = 1"),
                _ => Outcome::warn(format!("net.bridge.bridge-nf-call-iptables = {v}: flannel/kube-proxy service traffic on the bridge skips iptables")),
            },
        ),
        Check::new("sysctl.proc-sys-writable", Area::Sysctl, "/proc/sys writable (the agent writes sysctls before node_config.h)")
            .needed_by(&[BaseDatapath])
            .remedy("run the agent privileged with a writable /proc/sys (the Helm chart does); in a container runtime, do not mount /proc/sys read-only")
            .evaluate(|facts, _| {
                let evidence = facts.host.display("/proc/sys/net/ipv4/conf/all/rp_filter");
                match &facts.sysctls.proc_sys_writable {
                    Ok(true) => Outcome::pass("writable").evidence(evidence),
                    Ok(false) => Outcome::fail("/proc/sys is read-only: datapath init fails before node_config.h is written, and endpoint compiles then hit 'CALLS_MAP' macro redefined").evidence(evidence),
                    Err(why) if why.starts_with("live-only") => Outcome::skip(why.clone()),
                    Err(why) => Outcome::unknown(why.clone()).evidence(evidence),
                }
            }),
    ]
}

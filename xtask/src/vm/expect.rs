//! What each kernel should show, checked against the reports that came out of the guest. The
//! expectations are facts about Debian's kernels and upstream history, with their source:
//! - netkit arrived in 6.7 (CONFIG_NETKIT); Debian builds it into 6.12 and 6.1 lacks it.
//! - BPF_MAP_TYPE_CGRP_STORAGE and bpf_cgrp_storage_get/delete arrived in 6.2,
//!   BPF_PROG_TYPE_NETFILTER in 6.4 (include/uapi/linux/bpf.h history).
//! - Debian builds Cilium's options as modules (docs/upstream.md#kernel-config), so they are
//!   loadable but not loaded on a fresh boot.
//! - Per architecture: none of the above differs between amd64 and arm64. Each is generic
//!   kernel code, built on every architecture with a BPF JIT: kernel/bpf/bpf_cgrp_storage.c
//!   (6.2), net/netfilter/nf_bpf_link.c (6.4), drivers/net/netkit.c (6.7, Kconfig NETKIT
//!   depends on BPF_SYSCALL only), and Debian's arm64 cloud configs match the amd64 ones on
//!   them (CONFIG_NETKIT=y in 6.12, unset in 6.1; the 21 checked modules `=m` on both). Checked
//!   on the guests (docs/fleet.md): on Debian's 6.1 and 6.12 cloud-arm64 kernels every
//!   expectation here holds as on the cloud-amd64 ones, and every check of the run report has
//!   the amd64 guests' status (fixtures/reports/vm-debian12-*.json). What is checked per
//!   architecture is that the guest is one (`uname -m`).
//! - Debian's 6.1 and 6.12 cloud kernels meet everything the default target (newest Cilium,
//!   chart defaults) needs: 5.10+ helpers, tc/cgroup hooks, the netfilter options as modules;
//!   the guest provides what a prepared node has (shared bpffs, the modules). So every
//!   capability is go, netkit excepted on 6.1.
use std::collections::BTreeSet;

use serde_json::Value;

use preflight::gate::{kernels::Kernel, qemu::Machine};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Ok,
    Fail,
    Info,
}

impl Mark {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "FAIL",
            Self::Info => "info",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub mark: Mark,
    pub what: String,
    pub detail: String,
}

fn finding(mark: Mark, what: &str, detail: impl Into<String>) -> Finding {
    Finding {
        mark,
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// What came out of one guest, parsed.
pub struct GuestReports<'a> {
    /// `uname -m` in the guest.
    pub machine: Option<&'a str>,
    pub probe: Option<&'a Value>,
    pub run: Option<(&'a Value, i32)>,
    pub modules_before: Option<&'a str>,
    pub modprobe: Option<&'a str>,
    pub modules_after: Option<&'a str>,
    /// The Cilium modules the initramfs carries (present in the kernel package).
    pub shipped_modules: &'a [String],
}

fn support<'a>(probe: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = probe;
    for p in path {
        v = v.get(p)?;
    }
    v.get("status")?.as_str()
}

pub fn check(
    kernel: &Kernel,
    machine: Machine,
    guest: &GuestReports,
    host_probe: Option<&Value>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let series = kernel.series();
    out.push(check_machine(machine, guest.machine));
    out.extend(check_bpf(guest.probe, series, host_probe));
    out.extend(check_netkit(kernel, guest.run, series));
    out.extend(check_modules(guest));
    out.extend(check_verdicts(guest.run, series));
    if let Some((run, rc)) = guest.run {
        let go = run.pointer("/verdict/go").and_then(Value::as_bool);
        let consistent = matches!((go, rc), (Some(true), 0) | (Some(false), 1));
        out.push(finding(
            if consistent { Mark::Ok } else { Mark::Fail },
            "run exit code matches its verdict",
            format!("verdict.go={go:?}, exit code {rc}"),
        ));
        let attach: Vec<_> = checks_of(run)
            .filter(|c| c.get("area").and_then(Value::as_str) == Some("attach"))
            .filter_map(|c| c.get("status").and_then(Value::as_str))
            .collect();
        if !attach.is_empty() {
            let count = |s: &str| attach.iter().filter(|a| **a == s).count();
            out.push(finding(
                Mark::Info,
                "attach canaries in the guest",
                format!(
                    "{} pass, {} fail, {} unknown, {} skip",
                    count("pass"),
                    count("fail"),
                    count("unknown"),
                    count("skip")
                ),
            ));
        }
    } else {
        out.push(finding(
            Mark::Fail,
            "preflight run report",
            "missing or not JSON",
        ));
    }
    out
}

/// The guest runs the architecture asked for: its kernel and the static preflight and
/// busybox inside are that architecture's (else /init would not have run at all).
fn check_machine(machine: Machine, uname: Option<&str>) -> Finding {
    let got = uname.map(str::trim);
    finding(
        if got == Some(machine.uname()) {
            Mark::Ok
        } else {
            Mark::Fail
        },
        "guest architecture (uname -m)",
        format!(
            "{} expected for {}; got {}",
            machine.uname(),
            machine.debian_arch(),
            got.unwrap_or("nothing")
        ),
    )
}

fn checks_of(run: &Value) -> impl Iterator<Item = &Value> {
    run.get("checks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn check_bpf(probe: Option<&Value>, series: (u32, u32), host: Option<&Value>) -> Vec<Finding> {
    let Some(probe) = probe else {
        return vec![finding(Mark::Fail, "bpf() works", "no probe report")];
    };
    let mut out = Vec::new();
    let sched_cls = support(probe, &["program_types", "sched_cls"]);
    let hash = support(probe, &["map_types", "hash"]);
    out.push(finding(
        if sched_cls == Some("available") && hash == Some("available") {
            Mark::Ok
        } else {
            Mark::Fail
        },
        "bpf() works",
        format!("sched_cls programs: {sched_cls:?}, hash maps: {hash:?}"),
    ));
    let expect = |what: &str, path: &[&str], since: (u32, u32)| {
        let want = if series >= since {
            "available"
        } else {
            "unavailable"
        };
        let got = support(probe, path);
        finding(
            if got == Some(want) {
                Mark::Ok
            } else {
                Mark::Fail
            },
            what,
            format!(
                "{} {want} since {}.{} expected; got {}",
                path.join("."),
                since.0,
                since.1,
                got.unwrap_or("nothing")
            ),
        )
    };
    out.push(expect(
        "helper bpf_cgrp_storage_get (6.2)",
        &["helpers", "sched_cls", "cgrp_storage_get"],
        (6, 2),
    ));
    out.push(expect(
        "map type cgrp_storage (6.2)",
        &["map_types", "cgrp_storage"],
        (6, 2),
    ));
    out.push(expect(
        "program type netfilter (6.4)",
        &["program_types", "netfilter"],
        (6, 4),
    ));
    if let Some(host) = host {
        let missing = available_helpers(host, "sched_cls")
            .difference(&available_helpers(probe, "sched_cls"))
            .cloned()
            .collect::<Vec<_>>();
        let release = host
            .get("kernel_release")
            .and_then(Value::as_str)
            .unwrap_or("the host kernel");
        out.push(finding(
            Mark::Info,
            "sched_cls helpers the host has and this kernel lacks",
            format!(
                "{} vs {release}: {}",
                missing.len(),
                if missing.is_empty() {
                    "none".to_string()
                } else {
                    missing.join(", ")
                }
            ),
        ));
    }
    out
}

fn available_helpers(probe: &Value, program_type: &str) -> BTreeSet<String> {
    probe
        .pointer(&format!("/helpers/{program_type}"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, s)| s.get("status").and_then(Value::as_str) == Some("available"))
        .map(|(n, _)| n.clone())
        .collect()
}

fn check_netkit(kernel: &Kernel, run: Option<(&Value, i32)>, series: (u32, u32)) -> Vec<Finding> {
    let mut out = Vec::new();
    let should_have = series >= (6, 7);
    let config = kernel.config_value("CONFIG_NETKIT").ok().flatten();
    out.push(finding(
        if config.is_some() == should_have {
            Mark::Ok
        } else {
            Mark::Fail
        },
        "package config: CONFIG_NETKIT",
        format!(
            "{} (netkit is {}expected on {}.{})",
            config.as_deref().unwrap_or("not set"),
            if should_have { "" } else { "not " },
            series.0,
            series.1
        ),
    ));
    let Some((run, _)) = run else { return out };
    let deciders: Vec<_> = checks_of(run)
        .filter(|c| {
            c.get("needed_by")
                .and_then(Value::as_array)
                .is_some_and(|n| n.iter().any(|x| x == "netkit"))
        })
        .collect();
    if deciders.is_empty() {
        // The registry has netkit checks (kernel.config.netkit, kernel.feature-minimum.netkit):
        // a report without one was not made by this build's `run --need netkit`.
        out.push(finding(
            Mark::Fail,
            "report: netkit capability",
            "no check in the run report is needed_by netkit",
        ));
        return out;
    }
    let go = run
        .pointer("/verdict/capabilities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("capability").and_then(Value::as_str) == Some("netkit"))
        .and_then(|c| c.get("go"))
        .and_then(Value::as_bool);
    out.push(finding(
        if go == Some(should_have) {
            Mark::Ok
        } else {
            Mark::Fail
        },
        "report: netkit capability",
        format!("verdict go={go:?}, expected {should_have}"),
    ));
    out
}

/// Every capability of the run's verdict is go, except netkit before 6.7 (check_netkit
/// judges that one); base-datapath must be among them.
fn check_verdicts(run: Option<(&Value, i32)>, series: (u32, u32)) -> Vec<Finding> {
    let Some((run, _)) = run else {
        return Vec::new();
    };
    let caps: Vec<(&str, Option<bool>, String)> = run
        .pointer("/verdict/capabilities")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let blocking = c
                .get("blocking")
                .and_then(Value::as_array)
                .map(|b| {
                    b.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            Some((
                c.get("capability")?.as_str()?,
                c.get("go").and_then(Value::as_bool),
                blocking,
            ))
        })
        .collect();
    let mut out = Vec::new();
    if !caps.iter().any(|(name, ..)| *name == "base-datapath") {
        out.push(finding(
            Mark::Fail,
            "report: base-datapath capability",
            "the verdict does not decide base-datapath",
        ));
    }
    for (name, go, blocking) in caps {
        if name == "netkit" {
            continue;
        }
        out.push(finding(
            if go == Some(true) {
                Mark::Ok
            } else {
                Mark::Fail
            },
            &format!("report: {name} capability"),
            format!(
                "verdict go={go:?}, expected true on {}.{}{}",
                series.0,
                series.1,
                if blocking.is_empty() {
                    String::new()
                } else {
                    format!("; blocked by {blocking}")
                }
            ),
        ));
    }
    out
}

fn loaded(proc_modules: &str) -> BTreeSet<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn check_modules(guest: &GuestReports) -> Vec<Finding> {
    let (Some(before), Some(modprobe), Some(after)) =
        (guest.modules_before, guest.modprobe, guest.modules_after)
    else {
        return vec![finding(
            Mark::Fail,
            "Cilium modules",
            "module sections missing from the console",
        )];
    };
    let (before, after) = (loaded(before), loaded(after));
    let shipped = guest.shipped_modules;
    let early: Vec<_> = shipped.iter().filter(|m| before.contains(*m)).collect();
    let failed: Vec<_> = shipped
        .iter()
        .filter(|m| !modprobe.contains(&format!("{m} loaded")) || !after.contains(*m))
        .collect();
    vec![
        finding(
            if early.is_empty() && !shipped.is_empty() {
                Mark::Ok
            } else {
                Mark::Fail
            },
            "Cilium modules not loaded at boot",
            format!(
                "{} shipped as modules; loaded before modprobe: {early:?}",
                shipped.len()
            ),
        ),
        finding(
            if failed.is_empty() {
                Mark::Ok
            } else {
                Mark::Fail
            },
            "Cilium modules load with modprobe",
            format!(
                "{} of {} loaded; failed: {failed:?}",
                shipped.len() - failed.len(),
                shipped.len()
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kernel(release: &str) -> Kernel {
        Kernel::named(release)
    }

    #[test]
    fn helpers_and_maps_are_expected_by_kernel_line() {
        let old = json!({
            "program_types": {"sched_cls": {"status": "available"}, "netfilter": {"status": "unavailable"}},
            "map_types": {"hash": {"status": "available"}, "cgrp_storage": {"status": "unavailable"}},
            "helpers": {"sched_cls": {"cgrp_storage_get": {"status": "unavailable"}}}
        });
        let marks: Vec<_> = check_bpf(Some(&old), (6, 1), None)
            .iter()
            .map(|f| f.mark)
            .collect();
        assert_eq!(marks, [Mark::Ok; 4]);
        // The same report claimed for a 6.12 kernel is wrong three times.
        let fails = check_bpf(Some(&old), (6, 12), None)
            .iter()
            .filter(|f| f.mark == Mark::Fail)
            .count();
        assert_eq!(fails, 3);
    }

    #[test]
    fn modules_must_be_absent_at_boot_and_present_after_modprobe() {
        let shipped = vec!["vxlan".to_string(), "cls_bpf".to_string()];
        let guest = GuestReports {
            machine: None,
            probe: None,
            run: None,
            modules_before: Some("virtio 1 0 - Live 0x0\n"),
            modprobe: Some("vxlan loaded\ncls_bpf failed\n"),
            modules_after: Some("vxlan 1 0 - Live 0x0\n"),
            shipped_modules: &shipped,
        };
        let f = check_modules(&guest);
        assert_eq!(f[0].mark, Mark::Ok);
        assert_eq!(f[1].mark, Mark::Fail);
        assert!(f[1].detail.contains("cls_bpf"), "{}", f[1].detail);
    }

    #[test]
    fn the_guest_must_be_the_architecture_asked_for() {
        assert_eq!(
            check_machine(Machine::Aarch64, Some("aarch64\n")).mark,
            Mark::Ok
        );
        let wrong = check_machine(Machine::Aarch64, Some("x86_64\n"));
        assert_eq!(wrong.mark, Mark::Fail);
        assert!(wrong.detail.contains("x86_64"), "{}", wrong.detail);
        assert_eq!(check_machine(Machine::X86_64, None).mark, Mark::Fail);
    }

    #[test]
    fn every_capability_but_netkit_must_be_go_and_base_datapath_decided() {
        let run = json!({"verdict": {"go": false, "capabilities": [
            {"capability": "base-datapath", "go": true, "blocking": []},
            {"capability": "netkit", "go": false, "blocking": ["kernel.config.netkit"]},
            {"capability": "l7-proxy", "go": false, "blocking": ["kernel.config.netfilter-xt-target-ct"]}
        ]}});
        let f = check_verdicts(Some((&run, 1)), (6, 1));
        assert_eq!(f.len(), 2, "netkit is left to check_netkit: {f:?}");
        assert_eq!(f[0].mark, Mark::Ok);
        assert_eq!(f[1].mark, Mark::Fail);
        assert!(f[1].detail.contains("xt-target-ct"), "{}", f[1].detail);
        let run = json!({"verdict": {"go": true, "capabilities": [
            {"capability": "hubble", "go": true, "blocking": []}
        ]}});
        let f = check_verdicts(Some((&run, 0)), (6, 12));
        assert!(
            f.iter()
                .any(|f| f.mark == Mark::Fail && f.what.contains("base-datapath")),
            "{f:?}"
        );
    }

    #[test]
    fn netkit_must_be_decided_by_the_report_and_agree_with_the_kernel() {
        let run = json!({"checks": [{"id": "bpf.x", "needed_by": ["base-datapath"]}],
                         "verdict": {"go": true, "capabilities": []}});
        let f = check_netkit(&kernel("6.1.0-56-cloud-amd64"), Some((&run, 0)), (6, 1));
        assert_eq!(
            f.last().unwrap().mark,
            Mark::Fail,
            "no check decided netkit"
        );
        let run = json!({"checks": [{"id": "kernel.netkit", "needed_by": ["netkit"]}],
                         "verdict": {"go": true, "capabilities": [{"capability": "netkit", "go": true}]}});
        let f = check_netkit(&kernel("6.1.0-56-cloud-amd64"), Some((&run, 0)), (6, 1));
        assert_eq!(
            f.last().unwrap().mark,
            Mark::Fail,
            "6.1 cannot be go for netkit"
        );
    }
}

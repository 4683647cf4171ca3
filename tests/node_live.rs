//! `preflight run` on this machine: the node checks agree with what the kernel and mount table
//! say when read independently here, with the severities docs/upstream.md#node-requirements gives.
mod common;

use std::io::Read;

use common::{bin, json};

fn live_report() -> serde_json::Value {
    let out = bin()
        .args(["run", "--no-canaries", "--format", "json"])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    json(&out)
}

fn check<'a>(r: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

/// The running kernel's config, /proc/config.gz, read by the test itself.
fn config() -> String {
    let gz = std::fs::read("/proc/config.gz").expect("/proc/config.gz was there at build time");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("/proc/config.gz decompresses");
    text
}

fn setting(config: &str, name: &str) -> Option<String> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(&format!("CONFIG_{name}=")))
        .map(str::to_string)
}

#[test]
#[cfg_attr(
    not(prereq = "proc-config"),
    ignore = "needs /proc/config.gz (a kernel built with CONFIG_IKCONFIG_PROC)"
)]
fn kernel_gaps_match_proc_config_with_their_severities() {
    let cfg = config();
    let r = live_report();
    // (option, status when missing, relevant to the default target)
    for (name, missing, relevant) in [
        ("GENEVE", "fail", false),
        ("WIREGUARD", "fail", false),
        ("CRYPTO_USER_API_HASH", "warn", true),
        ("VXLAN", "fail", true),
        ("NET_CLS_BPF", "fail", true),
    ] {
        let id = format!("kernel.config.{}", name.to_lowercase().replace('_', "-"));
        let c = check(&r, &id);
        let expected = match setting(&cfg, name).as_deref() {
            Some("y") => "pass",
            Some(_) => c["status"].as_str().unwrap(), // =m: judged with module state
            None => missing,
        };
        assert_eq!(c["status"], expected, "{id}: {c}");
        assert_eq!(c["relevant"], relevant, "{id}");
        assert_eq!(c["evidence"][0], "/proc/config.gz", "{id}");
    }
    // A gap no target capability needs does not block the default verdict.
    let blocked: Vec<_> = r["verdict"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["blocking"].as_array().unwrap().clone())
        .collect();
    assert!(!blocked.iter().any(|b| b == "kernel.config.geneve"));
}

#[test]
fn bpffs_finding_matches_the_mount_table() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bpffs_mounts = mountinfo
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("/sys/fs/bpf"))
        .count();
    let r = live_report();
    let c = check(&r, "mounts.bpffs");
    match bpffs_mounts {
        0 => {
            assert_eq!(c["status"], "warn", "{c}");
            assert!(
                c["remedy"]
                    .as_str()
                    .unwrap()
                    .contains("mount -t bpf bpf /sys/fs/bpf")
            );
        }
        1 => assert!(c["status"] == "pass" || c["status"] == "fail", "{c}"),
        _ => assert_eq!(c["status"], "fail", "{c}"),
    }
    // Live facts are gathered, not skipped, on /.
    for id in ["network.tunnel-port.vxlan", "sysctl.proc-sys-writable"] {
        assert_ne!(check(&r, id)["status"], "skip", "{id}");
    }
}

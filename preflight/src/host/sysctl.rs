//! Sysctls Cilium reads or writes, and whether /proc/sys is writable (the agent writes
//! net.ipv4.conf.all.rp_filter before it writes node_config.h;
//! docs/upstream.md#the-calls_map-incident).
use std::collections::BTreeMap;

use super::{HostRoot, ReadError, mounts::MountTable};
use crate::model::Gathered;

pub const KEYS: &[&str] = &[
    "net.core.bpf_jit_enable",
    "kernel.unprivileged_bpf_disabled",
    "net.core.bpf_jit_harden",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
];

#[derive(Debug, Clone, PartialEq)]
pub enum SysctlValue {
    Value(String),
    /// No such file: the feature (or its module, e.g. br_netfilter) is absent.
    Absent,
    /// Unreadable or garbage.
    Bad(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sysctls {
    pub values: BTreeMap<String, (String, SysctlValue)>,
    /// Some(true/false) when known; None with the reason otherwise.
    pub proc_sys_writable: Result<bool, String>,
}

impl Sysctls {
    pub fn get(&self, key: &str) -> Option<&(String, SysctlValue)> {
        self.values.get(key)
    }
}

pub fn path_of(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

pub fn gather(host: &HostRoot, mounts: &Gathered<MountTable>) -> Sysctls {
    let mut values = BTreeMap::new();
    for key in KEYS {
        let path = path_of(key);
        let value = match host.read_text(&path) {
            Ok(text) => {
                let v = text.trim();
                if v.is_empty() || v.len() > 64 || v.contains('\n') {
                    SysctlValue::Bad(format!("{}: unexpected content", host.display(&path)))
                } else {
                    SysctlValue::Value(v.to_string())
                }
            }
            Err(ReadError::NotFound(_)) => SysctlValue::Absent,
            Err(e) => SysctlValue::Bad(e.to_string()),
        };
        values.insert(key.to_string(), (host.display(&path), value));
    }
    let probe = "/proc/sys/net/ipv4/conf/all/rp_filter";
    let proc_sys_writable = if host.is_own_root() {
        // access(2) reports EROFS for a read-only mount even to root.
        match nix::unistd::access(probe, nix::unistd::AccessFlags::W_OK) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EROFS) => Ok(false),
            // Not root: says nothing about what the privileged agent could write.
            Err(nix::errno::Errno::EACCES) => Err(format!(
                "access({probe}, W_OK): EACCES: not root, cannot tell what the privileged agent may write"
            )),
            Err(e) => Err(format!("access({probe}, W_OK): {e}")),
        }
    } else {
        match mounts {
            Gathered::Got(t) => match t.covering("/proc/sys") {
                Some(m) if m.fstype == "proc" || m.mount_point == "/proc/sys" => Ok(!m.read_only()),
                _ => Err("no proc mount in the mount table".into()),
            },
            _ => Err("live-only: writability of /proc/sys needs the running system".into()),
        }
    };
    Sysctls {
        values,
        proc_sys_writable,
    }
}

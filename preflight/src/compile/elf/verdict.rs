//! What loading an object into the kernel found: one result model, rendered by
//! `preflight compile` (text, JSON) and judged by the `compile.verifier.*` checks.
//!
//! JSON contract (docs/compile.md): `programs[].name` and `programs[].status` (`loaded`,
//! `rejected`, or `unknown` when the kernel could not be asked, e.g. EPERM) are stable;
//! fields are added, never renamed.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verdict {
    Loaded,
    Rejected {
        /// The end of the verifier log: where it gave up and why (bounded).
        log_tail: String,
        error: String,
    },
    /// Could not tell (no permission, an object this loader cannot link).
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProgramVerdict {
    pub name: String,
    pub section: String,
    /// The kernel's name of the program type (`sched_cls`, `xdp`, `cgroup_sock_addr`, …).
    pub prog_type: String,
    /// The expected attach type the load carried, for the types that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_type: Option<String>,
    /// Where the program goes when it is a tail call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_call: Option<Slot>,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Instructions the verifier processed (its complexity measure; the log's stats line, or
    /// the kernel's prog info on 5.16+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_insns: Option<u32>,
    /// Bytes after the kernel's rewrites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xlated_bytes: Option<u32>,
    /// Instructions handed to the kernel (the program and the functions linked in).
    pub insns: u32,
    /// Wall time of the load(s) of this program, verifier included.
    pub load_ms: f64,
    /// The verifier's own time (its `verification time` stats line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_us: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Slot {
    /// The program array, by the name it is pinned under (after renames).
    pub map: String,
    pub slot: u32,
}

/// A filled program-array slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TailCall {
    pub map: String,
    pub slot: u32,
    pub program: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MapVerdict {
    /// The name it is pinned and reported under (after renames).
    pub name: String,
    pub map_type: u32,
    /// `none`, `created and pinned`, `reused pin`, `replaced incompatible pin`,
    /// `pinned after load (replace)`, `not pinned: …`.
    pub pinning: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A program the agent would not load, so neither do we.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Pruned {
    pub name: String,
    pub section: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UnknownSection {
    pub section: String,
    pub functions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigUse {
    /// `inline` (≤ 1.16: values become immediates), `map` (1.17+: a frozen
    /// `.rodata.config`), `none`.
    pub style: String,
    /// Variables set from the caller's values; every other keeps the object's default.
    pub applied: Vec<String>,
    /// Names given that the object does not declare.
    pub unknown: Vec<String>,
    /// Values that do not fit their variable.
    pub invalid: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LoadTimings {
    /// ELF, BTF and relocations: the loader's own work.
    pub parse_ms: f64,
    pub link_ms: f64,
    pub btf_ms: f64,
    pub maps_ms: f64,
    /// Sum of program loads (the kernel's verifier, mostly).
    pub prog_load_ms: f64,
    /// Sum of the verifier's own `verification time`.
    pub verifier_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ObjectVerdict {
    /// Set when the object could not be loaded at all (not an ELF, BTF refused, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_error: Option<String>,
    pub programs: Vec<ProgramVerdict>,
    /// Program-array slots filled, so tail calls are wired as on a node.
    pub tail_calls: Vec<TailCall>,
    pub maps: Vec<MapVerdict>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned: Vec<Pruned>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_sections: Vec<UnknownSection>,
    pub config: ConfigUse,
    /// `loaded`, `loaded (sanitised: …)`, `none in object`, `refused: …`.
    pub btf: String,
    /// `scratch bpffs in a private mount namespace` or why there was none.
    pub pinning: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub timings: LoadTimings,
}

impl ObjectVerdict {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            object_error: Some(error.into()),
            ..Self::default()
        }
    }
    pub fn rejected(&self) -> impl Iterator<Item = &ProgramVerdict> {
        self.programs
            .iter()
            .filter(|p| matches!(p.verdict, Verdict::Rejected { .. }))
    }
    pub fn all_loaded(&self) -> bool {
        self.object_error.is_none()
            && !self.programs.is_empty()
            && self
                .programs
                .iter()
                .all(|p| matches!(p.verdict, Verdict::Loaded))
    }
    pub fn program(&self, name: &str) -> Option<&ProgramVerdict> {
        self.programs.iter().find(|p| p.name == name)
    }
}

/// The last `n` non-empty lines of a verifier log, each cut at 400 characters.
pub fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| match l.char_indices().nth(400) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// From the verifier's stats: (instructions processed, verification time in µs).
pub fn log_stats(log: &str) -> (Option<u32>, Option<u64>) {
    let after = |key: &str| {
        log.rfind(key).and_then(|i| {
            log[i + key.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
    };
    (
        after("processed ").map(|n| n as u32),
        after("verification time "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_non_empty_lines_bounded() {
        let log = "0: r0 = 0\n\n1: exit\nR0 !read_ok\nprocessed 2 insns\n\n";
        assert_eq!(log_tail(log, 2), "R0 !read_ok\nprocessed 2 insns");
        assert_eq!(log_tail("", 3), "");
        let long = "x".repeat(1000);
        assert_eq!(log_tail(&long, 1).chars().count(), 401);
    }

    #[test]
    fn stats_line_gives_instructions_and_time() {
        let log = "verification time 1234 usec\nstack depth 8\nprocessed 5678 insns (limit 1000000) \
                   max_states_per_insn 4 total_states 100 peak_states 90 mark_read 3\n";
        assert_eq!(log_stats(log), (Some(5678), Some(1234)));
        assert_eq!(log_stats("nothing"), (None, None));
    }

    #[test]
    fn status_is_the_json_contract() {
        let p = ProgramVerdict {
            name: "cil_from_container".into(),
            section: "tc/entry".into(),
            prog_type: "sched_cls".into(),
            attach_type: None,
            tail_call: None,
            verdict: Verdict::Rejected {
                log_tail: "R2 invalid mem access".into(),
                error: "Permission denied (os error 13)".into(),
            },
            verified_insns: Some(7),
            xlated_bytes: None,
            insns: 10,
            load_ms: 1.0,
            verification_us: None,
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["status"], "rejected");
        assert_eq!(v["name"], "cil_from_container");
        assert_eq!(v["log_tail"], "R2 invalid mem access");
        let back: ProgramVerdict = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
    }
}

//! After compiling: what is in each object (sections, programs, instruction counts, maps, via
//! the `object` crate) and whether the kernel accepts it. Loading goes through aya without
//! attaching anything: maps are created, every program is loaded (the verifier runs), program
//! arrays are filled from the `classifier/tail_<index>` sections, then everything is closed.
use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::ProgramArray,
    programs::{Program, ProgramError},
};
use object::{Object, ObjectSection, ObjectSymbol, SectionKind, SymbolKind};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectProgram {
    pub name: String,
    pub section: String,
    /// Instructions as compiled (8 bytes each), before the verifier's view.
    pub insns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectInfo {
    pub size: u64,
    /// Section name → bytes, for the sections that matter (code, maps, BTF, license).
    pub sections: BTreeMap<String, u64>,
    pub programs: Vec<ObjectProgram>,
    pub maps: Vec<String>,
    /// Numbers of the kernel helpers the code calls (the kernel's stable `BPF_FUNC_*` ABI),
    /// sorted: what the verifier will have to find for this program type.
    pub helper_calls: Vec<u32>,
}

/// `BPF_JMP | BPF_CALL`; with source register 0 the immediate is a helper number (1 is a call
/// to a BPF function, 2 a kfunc).
const OP_CALL: u8 = 0x85;
/// `BPF_LD | BPF_IMM | BPF_DW`: the one instruction that takes two 8-byte slots.
const OP_LD_IMM64: u8 = 0x18;

/// The helper numbers called in one code section.
fn helper_calls(code: &[u8], little_endian: bool, out: &mut std::collections::BTreeSet<u32>) {
    let mut slots = code.chunks_exact(8);
    while let Some(insn) = slots.next() {
        match insn[0] {
            OP_LD_IMM64 => {
                slots.next();
            }
            OP_CALL => {
                let src_reg = if little_endian {
                    insn[1] >> 4
                } else {
                    insn[1] & 0x0f
                };
                let imm = [insn[4], insn[5], insn[6], insn[7]];
                let imm = if little_endian {
                    i32::from_le_bytes(imm)
                } else {
                    i32::from_be_bytes(imm)
                };
                if src_reg == 0 && imm > 0 {
                    out.insert(imm as u32);
                }
            }
            _ => {}
        }
    }
}

pub fn inspect(bytes: &[u8]) -> Result<ObjectInfo, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
    let mut sections = BTreeMap::new();
    let mut calls = std::collections::BTreeSet::new();
    for s in file.sections() {
        if s.kind() == SectionKind::Text {
            let code = s
                .data()
                .map_err(|e| format!("section {:?}: {e}", s.name()))?;
            helper_calls(code, file.is_little_endian(), &mut calls);
        }
        let name = s.name().unwrap_or("").to_string();
        let keep = s.kind() == SectionKind::Text
            || matches!(
                name.as_str(),
                ".maps" | ".BTF" | ".BTF.ext" | "license" | ".rodata"
            );
        if keep && !name.is_empty() {
            sections.insert(name, s.size());
        }
    }
    let mut programs = Vec::new();
    let mut maps = Vec::new();
    for sym in file.symbols() {
        let Some(index) = sym.section_index() else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let section_name = section.name().unwrap_or("");
        let name = sym.name().unwrap_or("").to_string();
        if sym.kind() == SymbolKind::Text
            && section.kind() == SectionKind::Text
            && section_name != ".text"
            && sym.is_global()
        {
            programs.push(ObjectProgram {
                name,
                section: section_name.to_string(),
                insns: sym.size() / 8,
            });
        } else if section_name == ".maps" && !name.is_empty() {
            maps.push(name);
        }
    }
    programs.sort_by(|a, b| a.section.cmp(&b.section).then(a.name.cmp(&b.name)));
    maps.sort();
    Ok(ObjectInfo {
        size: bytes.len() as u64,
        sections,
        programs,
        maps,
        helper_calls: calls.into_iter().collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verdict {
    Loaded,
    Rejected {
        /// The end of the verifier log: where it gave up and why.
        log_tail: String,
        error: String,
    },
    /// Could not tell (no permission, program type not handled).
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgramVerdict {
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Instructions the verifier processed (its complexity measure; kernel 5.16+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_insns: Option<u32>,
    /// Instructions after the kernel's rewrites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xlated_bytes: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Set when the object could not even be opened (map creation, relocation, BTF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_error: Option<String>,
    pub programs: Vec<ProgramVerdict>,
    /// (map, index, program) slots filled in program arrays.
    pub tail_calls: Vec<(String, u32, String)>,
}

impl VerifyReport {
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
}

/// The last `n` non-empty lines of a verifier log.
pub fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn load_program(program: &mut Program) -> Result<(), ProgramError> {
    match program {
        Program::SchedClassifier(p) => p.load(),
        Program::Xdp(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        Program::SocketFilter(p) => p.load(),
        Program::SockOps(p) => p.load(),
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

fn verdict_of(err: ProgramError) -> Verdict {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let errno = io_error.raw_os_error();
            let log = verifier_log.to_string();
            if errno == Some(libc::EPERM) && log.trim().is_empty() {
                Verdict::Unknown {
                    reason: format!("bpf_prog_load: {io_error} (needs root / CAP_BPF)"),
                }
            } else {
                Verdict::Rejected {
                    log_tail: log_tail(&log, 12),
                    error: io_error.to_string(),
                }
            }
        }
        other => Verdict::Unknown {
            reason: other.to_string(),
        },
    }
}

/// Loads an object into the kernel without attaching it. Needs root (CAP_BPF).
pub fn verify(bytes: &[u8], info: &ObjectInfo) -> VerifyReport {
    let mut ebpf: Ebpf = match EbpfLoader::new()
        .verifier_log_level(VerifierLogLevel::DEBUG | VerifierLogLevel::STATS)
        .load(bytes)
    {
        Ok(e) => e,
        Err(e) => {
            return VerifyReport {
                object_error: Some(format!("{e:#}")),
                programs: Vec::new(),
                tail_calls: Vec::new(),
            };
        }
    };
    let mut programs = Vec::new();
    for (name, program) in ebpf.programs_mut() {
        let verdict = match load_program(program) {
            Ok(()) => Verdict::Loaded,
            Err(e) => verdict_of(e),
        };
        let info = program.info().ok();
        programs.push(ProgramVerdict {
            name: name.to_string(),
            verdict,
            verified_insns: info.as_ref().and_then(|i| i.verified_instruction_count()),
            xlated_bytes: info.as_ref().and_then(|i| i.size_translated()),
        });
    }
    programs.sort_by(|a, b| a.name.cmp(&b.name));
    let tail_calls = fill_prog_arrays(&mut ebpf, info);
    VerifyReport {
        object_error: None,
        programs,
        tail_calls,
    }
}

/// Puts every loaded `classifier/tail_<index>` program into each program array at its index,
/// as the agent does before attaching.
fn fill_prog_arrays(ebpf: &mut Ebpf, info: &ObjectInfo) -> Vec<(String, u32, String)> {
    let arrays: Vec<String> = ebpf
        .maps()
        .filter(|(_, m)| matches!(m, aya::maps::Map::ProgramArray(_)))
        .map(|(n, _)| n.to_string())
        .collect();
    let mut filled = Vec::new();
    for name in arrays {
        let Some(map) = ebpf.take_map(&name) else {
            continue;
        };
        let Ok(mut array) = ProgramArray::try_from(map) else {
            continue;
        };
        for p in &info.programs {
            let Some(index) = p
                .section
                .strip_prefix("classifier/tail_")
                .and_then(|i| i.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(fd) = ebpf.program(&p.name).and_then(|prog| prog.fd().ok()) else {
                continue;
            };
            if array.set(index, fd, 0).is_ok() {
                filled.push((name.clone(), index, p.name.clone()));
            }
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_non_empty_lines() {
        let log = "0: r0 = 0\n\n1: exit\nR0 !read_ok\nprocessed 2 insns\n\n";
        assert_eq!(log_tail(log, 2), "R0 !read_ok\nprocessed 2 insns");
        assert_eq!(log_tail("", 3), "");
    }

    #[test]
    fn helper_calls_skip_function_calls_and_the_second_half_of_ld_imm64() {
        let insn = |op: u8, regs: u8, imm: i32| {
            let mut b = vec![op, regs, 0, 0];
            b.extend_from_slice(&imm.to_le_bytes());
            b
        };
        let code: Vec<u8> = [
            insn(OP_CALL, 0x00, 155),   // helper: redirect_peer
            insn(OP_CALL, 0x10, 3),     // src_reg 1: a BPF-to-BPF call, not a helper
            insn(OP_LD_IMM64, 0x01, 0), // ld_imm64 ...
            insn(OP_CALL, 0x00, 99),    // ... whose second slot only looks like a call
            insn(0xb7, 0x00, 0),        // r0 = 0
            insn(OP_CALL, 0x00, 152),   // helper: redirect_neigh
        ]
        .concat();
        let mut out = std::collections::BTreeSet::new();
        helper_calls(&code, true, &mut out);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), [152, 155]);
    }

    #[test]
    fn garbage_is_not_an_object() {
        assert!(inspect(b"not elf").is_err());
    }
}

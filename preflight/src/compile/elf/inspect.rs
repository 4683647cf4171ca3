//! What is in a compiled object, without loading it: sections, programs, instruction counts,
//! maps and the kernel helpers the code calls (for the report and the checks).
use std::collections::BTreeMap;

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
                ".maps" | "maps" | ".BTF" | ".BTF.ext" | "license" | ".rodata" | ".rodata.config"
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
        } else if matches!(section_name, ".maps" | "maps") && !name.is_empty() {
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

#[cfg(test)]
mod tests {
    use super::*;

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

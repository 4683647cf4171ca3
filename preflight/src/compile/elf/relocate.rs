//! Links one program: its function, then every function it calls (BPF-to-BPF calls and
//! callbacks taken by address) appended once each, calls re-pointed, map references turned
//! into fixups (the map fds are filled in when the maps exist), global data references into
//! map-value pointers, and Cilium ≤ 1.16's inline configuration constants into immediates.
//! Function and line info follow their instructions. Pure: no kernel involved.
use std::collections::{HashMap, VecDeque};

use object::SymbolKind;

use super::{
    insn::{self, Insn},
    parse::{CONFIG_PREFIX, CONFIG_SECTION, ConfigStyle, MapOrigin, Object},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    /// `ld_imm64` of a map: the map's fd goes into the immediate.
    MapFd { insn: usize, map: usize },
    /// `ld_imm64` of a pointer into a data map's value, at an offset.
    MapValue { insn: usize, map: usize },
}

#[derive(Debug, Clone, Default)]
pub struct Linked {
    pub insns: Vec<Insn>,
    pub fixups: Vec<Fixup>,
    /// (instruction index, FUNC type id), one per function, sorted; empty when the object has
    /// no complete function info for this program.
    pub func_info: Vec<(u32, u32)>,
    /// `struct bpf_line_info` records with instruction indexes.
    pub line_info: Vec<[u32; 4]>,
    /// Names of the functions linked in, program first.
    pub functions: Vec<String>,
    /// `tail_call_static()` sites: (map index, slot). lib/tailcall.h emits exactly
    /// `r2 = <map> ll; r3 = <slot>; call 12` for them.
    pub static_tail_calls: Vec<(usize, u32)>,
    /// Maps the code refers to.
    pub maps_used: Vec<usize>,
}

fn function_at(obj: &Object, section: usize, idx: usize) -> Option<usize> {
    obj.functions
        .iter()
        .position(|f| f.section == section && f.start <= idx && idx < f.start + f.insns.len())
}

/// The value of an inlined configuration variable: its bytes in `.rodata.config` (after the
/// caller's overrides), little-endian, zero-extended, as pkg/bpf `inlineGlobalData` reads it.
fn inline_value(config: &[u8], offset: u64, size: u64) -> Result<u64, String> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(format!(
            "configuration variable of {size} bytes cannot be inlined"
        ));
    }
    let b = config
        .get(offset as usize..(offset + size) as usize)
        .ok_or("configuration variable outside .rodata.config")?;
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    Ok(u64::from_le_bytes(v))
}

struct Linker<'a> {
    obj: &'a Object,
    out: Linked,
    /// Function index → where it starts in the linked program.
    placed: HashMap<usize, usize>,
    queue: VecDeque<usize>,
}

impl Linker<'_> {
    /// Appends a function (once) and returns where it starts.
    fn place(&mut self, fi: usize) -> usize {
        if let Some(&s) = self.placed.get(&fi) {
            return s;
        }
        let start = self.out.insns.len();
        self.out
            .insns
            .extend_from_slice(&self.obj.functions[fi].insns);
        self.out.functions.push(self.obj.functions[fi].name.clone());
        self.placed.insert(fi, start);
        self.queue.push_back(fi);
        start
    }

    fn use_map(&mut self, map: usize) {
        if !self.out.maps_used.contains(&map) {
            self.out.maps_used.push(map);
        }
    }
}

pub fn link(obj: &Object, program: usize, config: &[u8]) -> Result<Linked, String> {
    let mut l = Linker {
        obj,
        out: Linked::default(),
        placed: HashMap::new(),
        queue: VecDeque::new(),
    };
    l.place(obj.programs[program].func);
    let mut order = Vec::new();
    while let Some(fi) = l.queue.pop_front() {
        order.push(fi);
        let f = &obj.functions[fi];
        let base = l.placed[&fi];
        let mut k = 0;
        while k < f.insns.len() {
            let ins = f.insns[k];
            let pos = base + k;
            let reloc = obj
                .relocations
                .get(&(f.section, ((f.start + k) * 8) as u64))
                .and_then(|s| obj.symbols.get(s));
            if ins.is_ld_imm64() {
                if k + 1 >= f.insns.len() {
                    return Err(format!("{}: ld_imm64 cut off at the end", f.name));
                }
                if let Some(sym) = reloc {
                    let Some(sec) = sym.section else {
                        return Err(format!(
                            "{}: refers to extern {} (kconfig/ksym externs are not supported)",
                            f.name, sym.name
                        ));
                    };
                    let sec_name = obj
                        .section_names
                        .get(&sec)
                        .map(String::as_str)
                        .unwrap_or("");
                    let addend = ins.imm() as i64;
                    if sec_name == "maps" || sec_name == ".maps" {
                        let off = if sym.kind == SymbolKind::Section {
                            addend as u64
                        } else {
                            sym.value
                        };
                        let map = obj
                            .maps
                            .iter()
                            .position(|m| m.at == Some((sec, off)))
                            .ok_or_else(|| format!("{}: no map at {sec_name}+{off}", f.name))?;
                        let i = &mut l.out.insns[pos];
                        i.set_src(insn::PSEUDO_MAP_FD);
                        i.set_imm(0);
                        l.out.insns[pos + 1].set_imm(0);
                        l.out.fixups.push(Fixup::MapFd { insn: pos, map });
                        l.use_map(map);
                    } else if let Some(map) = obj.maps.iter().position(
                        |m| matches!(m.origin, MapOrigin::Data { section, .. } if section == sec),
                    ) {
                        let offset = (sym.value as i64 + addend) as u64;
                        // ≤ 1.16 reads every configuration variable through an inline-asm
                        // ld_imm64 against the section (or the variable's static symbol); the
                        // agent turns each into an immediate of the variable's value.
                        let inline_var = (obj.config_style == ConfigStyle::Inline
                            && sec_name == CONFIG_SECTION)
                            .then(|| {
                                obj.config_vars
                                    .iter()
                                    .find(|(_, (off, _))| *off as u64 == offset)
                            })
                            .flatten();
                        if obj.config_style == ConfigStyle::Inline
                            && sec_name == CONFIG_SECTION
                            && inline_var.is_none()
                        {
                            return Err(format!(
                                "{}: reference to {CONFIG_SECTION}+{offset}, where no {CONFIG_PREFIX}variable starts",
                                f.name
                            ));
                        }
                        if let Some((var, (off, size))) = inline_var {
                            let v = inline_value(config, *off as u64, *size as u64)
                                .map_err(|e| format!("{}: {CONFIG_PREFIX}{var}: {e}", f.name))?;
                            let i = &mut l.out.insns[pos];
                            i.set_src(0);
                            i.set_imm(v as u32 as i32);
                            l.out.insns[pos + 1].set_imm((v >> 32) as u32 as i32);
                        } else {
                            let i = &mut l.out.insns[pos];
                            i.set_src(insn::PSEUDO_MAP_VALUE);
                            i.set_imm(0);
                            l.out.insns[pos + 1].set_imm(offset as u32 as i32);
                            l.out.fixups.push(Fixup::MapValue { insn: pos, map });
                            l.use_map(map);
                        }
                    } else if obj.functions.iter().any(|g| g.section == sec) {
                        // A function's address (callbacks: bpf_loop, for_each_map_elem).
                        let target = ((sym.value as i64 + addend) / 8) as usize;
                        let tf = function_at(obj, sec, target).ok_or_else(|| {
                            format!("{}: function pointer into {sec_name} at {target}", f.name)
                        })?;
                        let ts = l.place(tf);
                        let rel = (ts + target - obj.functions[tf].start) as i64 - (pos as i64 + 1);
                        let i = &mut l.out.insns[pos];
                        i.set_src(insn::PSEUDO_FUNC);
                        i.set_imm(rel as i32);
                        l.out.insns[pos + 1].set_imm(0);
                    } else {
                        return Err(format!(
                            "{}: reference to {} in section {sec_name}, which is neither a map, data nor code",
                            f.name, sym.name
                        ));
                    }
                }
                k += 2;
                continue;
            }
            if ins.code() == insn::CALL && ins.src() == insn::PSEUDO_KFUNC_CALL {
                return Err(format!("{}: calls a kfunc (not supported)", f.name));
            }
            if ins.is_pseudo_call() {
                let (sec, target) = match reloc {
                    Some(sym) => (
                        sym.section
                            .ok_or_else(|| format!("{}: call to extern {}", f.name, sym.name))?,
                        (sym.value / 8) as i64 + ins.imm() as i64 + 1,
                    ),
                    None => (f.section, (f.start + k) as i64 + ins.imm() as i64 + 1),
                };
                let target = usize::try_from(target)
                    .map_err(|_| format!("{}: call before the start of its section", f.name))?;
                let tf = function_at(obj, sec, target).ok_or_else(|| {
                    format!("{}: call to no function (instruction {target})", f.name)
                })?;
                let ts = l.place(tf);
                let rel = (ts + target - obj.functions[tf].start) as i64 - (pos as i64 + 1);
                l.out.insns[pos].set_imm(rel as i32);
            }
            k += 1;
        }
    }
    let placed = std::mem::take(&mut l.placed);
    let mut out = l.out;
    attach_ext(obj, &mut out, &order, &placed);
    find_static_tail_calls(&mut out);
    Ok(out)
}

/// Function and line info for the linked program: each function's records, moved to where
/// the function now starts. The kernel wants one func_info per function or none at all.
fn attach_ext(obj: &Object, out: &mut Linked, order: &[usize], starts: &HashMap<usize, usize>) {
    let Some(ext) = &obj.ext else { return };
    let mut func_info = Vec::new();
    let mut line_info = Vec::new();
    for fi in order {
        let f = &obj.functions[*fi];
        let start = starts[fi];
        let range = f.start..f.start + f.insns.len();
        let moved = |off: u32| (start + off as usize / 8 - f.start) as u32;
        let funcs: Vec<(u32, u32)> = ext
            .func_info
            .get(&f.section_name)
            .into_iter()
            .flatten()
            .filter(|(off, _)| range.contains(&(*off as usize / 8)))
            .map(|(off, ty)| (moved(*off), *ty))
            .collect();
        if funcs.first().map(|r| r.0) != Some(start as u32) {
            func_info.clear();
            line_info.clear();
            out.func_info.clear();
            out.line_info.clear();
            return;
        }
        func_info.extend(funcs);
        line_info.extend(
            ext.line_info
                .get(&f.section_name)
                .into_iter()
                .flatten()
                .filter(|r| range.contains(&(r[0] as usize / 8)))
                .map(|r| [moved(r[0]), r[1], r[2], r[3]]),
        );
    }
    func_info.sort_by_key(|r| r.0);
    line_info.sort_by_key(|r| r[0]);
    out.func_info = func_info;
    out.line_info = line_info;
}

fn find_static_tail_calls(out: &mut Linked) {
    let map_at: HashMap<usize, usize> = out
        .fixups
        .iter()
        .filter_map(|f| match f {
            Fixup::MapFd { insn, map } => Some((*insn, *map)),
            _ => None,
        })
        .collect();
    for i in 3..out.insns.len() {
        if out.insns[i].helper() != Some(insn::HELPER_TAIL_CALL) {
            continue;
        }
        let Some(slot) = out.insns[i - 1].mov_imm_to(3) else {
            continue;
        };
        let ld = &out.insns[i - 3];
        if ld.is_ld_imm64()
            && ld.dst() == 2
            && let Some(map) = map_at.get(&(i - 3))
        {
            out.static_tail_calls.push((*map, slot as u32));
        }
    }
}

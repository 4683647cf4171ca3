//! Reads a BPF ELF object (the `object` crate does the ELF) into what the loader needs:
//! functions and the programs among them with their types and tail-call slots, map
//! definitions (iproute2's legacy `maps` section and BTF `.maps`), data sections, the code
//! relocations, BTF and its function/line info. Nothing here touches the kernel.
use std::collections::{BTreeMap, HashMap};

use object::{Object as _, ObjectSection, ObjectSymbol, RelocationTarget, SectionKind, SymbolKind};

use super::{
    btf::{self, Btf, Ext},
    insn::Insn,
    sections::{self, ProgType, Section},
};

/// The iproute2 map id of Cilium's internal tail-call map (`CILIUM_MAP_CALLS`,
/// bpf/lib/common.h up to 1.17): only its tail calls are pruned when unreachable, as
/// pkg/bpf `removeUnreachableTailcalls` does.
pub const CILIUM_MAP_CALLS: u32 = 2;

/// Prefix of load-time configuration variables (`CONFIG()` / `DECLARE_CONFIG`, bpf/lib/static_data.h).
pub const CONFIG_PREFIX: &str = "__config_";
/// Section of load-time configuration variables.
pub const CONFIG_SECTION: &str = ".rodata.config";

#[derive(Debug, Clone)]
pub struct Symbol {
    pub name: String,
    pub section: Option<usize>,
    pub value: u64,
    pub size: u64,
    pub kind: SymbolKind,
    pub global: bool,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub section: usize,
    pub section_name: String,
    /// First instruction, counted from the start of the section.
    pub start: usize,
    pub insns: Vec<Insn>,
}

/// Where a tail-call program goes: a map (by its name in the object) and a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailSlot {
    pub map: String,
    pub slot: u32,
    /// Removed before loading when no entry point reaches it, as the agent does.
    pub prunable: bool,
}

#[derive(Debug, Clone)]
pub struct ProgramDef {
    /// Index into [`Object::functions`].
    pub func: usize,
    pub section: String,
    pub ty: Option<ProgType>,
    pub tail: Option<TailSlot>,
    /// A tail-call section whose slot could not be found (no decl tag, no map with that id).
    pub slot_problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOrigin {
    /// iproute2 `struct bpf_elf_map` in the `maps` section, with its `id`.
    Legacy { id: u32, inner_id: u32 },
    /// A BTF map definition in `.maps`.
    Btf,
    /// An inner-map template of a map-in-map.
    Inner,
    /// A global data section (`.rodata*`, `.data*`, `.bss`): one array entry.
    Data { read_only: bool, section: usize },
}

#[derive(Debug, Clone)]
pub struct MapDef {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub pinning: u32,
    pub numa_node: u32,
    pub map_extra: u64,
    pub inner: Option<Box<MapDef>>,
    pub origin: MapOrigin,
    /// (section, offset) of the definition, to match relocations.
    pub at: Option<(usize, u64)>,
    /// Initial contents (data sections).
    pub data: Vec<u8>,
}

pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
pub const BPF_MAP_TYPE_PERF_EVENT_ARRAY: u32 = 4;
pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
pub const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 13;
pub const BPF_F_RDONLY_PROG: u32 = 1 << 7;
/// Largest global data section accepted (a `.bss` is just a size in the ELF).
const MAX_DATA_SECTION: u64 = 64 << 20;

/// How load-time configuration reaches the code (decided from the object, not the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigStyle {
    /// `static const __config_X` read by an inline-asm `ld_imm64` that the loader turns into
    /// an immediate (Cilium ≤ 1.16 pkg/bpf `inlineGlobalData`).
    Inline,
    /// `volatile const __config_X` read through the frozen `.rodata.config` map (1.17+).
    Map,
    None,
}

#[derive(Debug, Clone)]
pub struct Object {
    pub license: String,
    pub symbols: HashMap<usize, Symbol>,
    pub section_names: HashMap<usize, String>,
    pub functions: Vec<Function>,
    pub programs: Vec<ProgramDef>,
    pub maps: Vec<MapDef>,
    /// (code section, byte offset) → symbol index.
    pub relocations: HashMap<(usize, u64), usize>,
    pub btf: Option<Btf>,
    pub ext: Option<Ext>,
    /// BTF data sections with no ELF section to size them (emptied so the BTF still loads).
    pub unplaced_datasecs: Vec<String>,
    /// Code sections with no known program type: (section, functions in it).
    pub unknown_sections: Vec<(String, Vec<String>)>,
    pub config_style: ConfigStyle,
    /// Load-time configuration variables: name (without prefix) → (offset, size) in
    /// `.rodata.config`.
    pub config_vars: BTreeMap<String, (u32, u32)>,
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
        .unwrap_or(0)
}

fn is_data_section(name: &str) -> bool {
    [".rodata", ".data", ".bss"]
        .iter()
        .any(|p| name == *p || name.strip_prefix(p).is_some_and(|r| r.starts_with('.')))
}

impl Object {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let file = object::File::parse(bytes).map_err(|e| format!("not an ELF object: {e}"))?;
        if file.architecture() != object::Architecture::Bpf {
            return Err(format!(
                "not a BPF object (architecture {:?})",
                file.architecture()
            ));
        }
        if !file.is_little_endian() {
            return Err("big-endian BPF objects are not loaded here".into());
        }
        let mut section_names = HashMap::new();
        let mut by_name = HashMap::new();
        for s in file.sections() {
            let name = s.name().unwrap_or("").to_string();
            by_name.insert(name.clone(), s.index().0);
            section_names.insert(s.index().0, name);
        }
        let mut symbols: HashMap<usize, Symbol> = HashMap::new();
        for sym in file.symbols() {
            symbols.insert(
                sym.index().0,
                Symbol {
                    name: sym.name().unwrap_or("").to_string(),
                    section: sym.section_index().map(|i| i.0),
                    value: sym.address(),
                    size: sym.size(),
                    kind: sym.kind(),
                    global: sym.is_global(),
                },
            );
        }
        // Symbol indexes by section, so no lookup scans every symbol (a hostile object may
        // have many of both).
        let mut in_section: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, sym) in &symbols {
            if let Some(sec) = sym.section {
                in_section.entry(sec).or_default().push(*i);
            }
        }
        let section_symbols = |sec: usize| -> Vec<&Symbol> {
            in_section
                .get(&sec)
                .into_iter()
                .flatten()
                .filter_map(|i| symbols.get(i))
                .collect()
        };
        let license = file
            .section_by_name("license")
            .and_then(|s| s.data().ok())
            .map(|d| {
                let end = d.iter().position(|&b| b == 0).unwrap_or(d.len());
                String::from_utf8_lossy(&d[..end]).into_owned()
            })
            .unwrap_or_default();

        let mut btf = match file.section_by_name(".BTF") {
            Some(s) => Some(Btf::parse(s.data().map_err(|e| format!(".BTF: {e}"))?)?),
            None => None,
        };
        let mut unplaced_datasecs = Vec::new();
        if let Some(btf) = &mut btf {
            let size_of = |name: &str| {
                by_name
                    .get(name)
                    .and_then(|i| file.section_by_index(object::SectionIndex(*i)).ok())
                    .map(|s| s.size())
            };
            let values: HashMap<(&str, &str), u64> = by_name
                .iter()
                .flat_map(|(sec_name, idx)| {
                    section_symbols(*idx)
                        .into_iter()
                        .map(move |s| ((sec_name.as_str(), s.name.as_str()), s.value))
                })
                .collect();
            let value_of = |section: &str, var: &str| values.get(&(section, var)).copied();
            unplaced_datasecs = btf.fix_datasecs(size_of, value_of);
            // A DATASEC with variables but no size would fail the whole BTF load.
            for t in &mut btf.types {
                if t.kind() == btf::kind::DATASEC && t.size_or_type == 0 {
                    t.info &= !0xffff;
                    t.extra.clear();
                }
            }
        }
        let ext = match (file.section_by_name(".BTF.ext"), &btf) {
            (Some(s), Some(b)) => Some(Ext::parse(
                s.data().map_err(|e| format!(".BTF.ext: {e}"))?,
                b,
            )?),
            _ => None,
        };

        // Functions: every FUNC symbol of an executable section.
        let mut functions = Vec::new();
        let mut relocations = HashMap::new();
        for s in file.sections() {
            if s.kind() != SectionKind::Text || s.size() == 0 {
                continue;
            }
            let idx = s.index().0;
            let name = section_names[&idx].clone();
            let data = s.data().map_err(|e| format!("section {name}: {e}"))?;
            if data.len() % 8 != 0 {
                return Err(format!(
                    "section {name}: {} bytes is not whole instructions",
                    data.len()
                ));
            }
            let insns: Vec<Insn> = data.chunks_exact(8).map(Insn::from_bytes).collect();
            let mut funcs: Vec<&Symbol> = section_symbols(idx)
                .into_iter()
                .filter(|sym| sym.kind == SymbolKind::Text && sym.size > 0)
                .collect();
            funcs.sort_by_key(|sym| sym.value);
            if funcs.is_empty() {
                functions.push(Function {
                    name: name.clone(),
                    section: idx,
                    section_name: name.clone(),
                    start: 0,
                    insns,
                });
            } else {
                for f in funcs {
                    let start = (f.value / 8) as usize;
                    let end = start + (f.size / 8) as usize;
                    let body = insns
                        .get(start..end)
                        .ok_or_else(|| format!("function {} runs past section {name}", f.name))?;
                    functions.push(Function {
                        name: f.name.clone(),
                        section: idx,
                        section_name: name.clone(),
                        start,
                        insns: body.to_vec(),
                    });
                }
            }
            for (offset, r) in s.relocations() {
                if let RelocationTarget::Symbol(sym) = r.target() {
                    relocations.insert((idx, offset), sym.0);
                }
            }
        }

        // Maps.
        let mut maps = Vec::new();
        if let Some(s) = file.section_by_name("maps") {
            let data = s.data().map_err(|e| format!("maps section: {e}"))?;
            let idx = s.index().0;
            let mut defs: Vec<&Symbol> = section_symbols(idx)
                .into_iter()
                .filter(|sym| sym.kind != SymbolKind::Section && !sym.name.is_empty())
                .collect();
            defs.sort_by_key(|sym| sym.value);
            for sym in defs {
                let at = sym.value as usize;
                if at + 16 > data.len() {
                    return Err(format!("maps: definition of {} is truncated", sym.name));
                }
                // struct bpf_elf_map (iproute2, Cilium bpf/include/bpf/loader.h): type, size_key,
                // size_value, max_elem, flags, id, pinning, inner_id, inner_idx.
                let f = |i: usize| {
                    if at + 4 * i + 4 <= data.len() && (sym.size == 0 || 4 * i < sym.size as usize)
                    {
                        le_u32(data, at + 4 * i)
                    } else {
                        0
                    }
                };
                maps.push(MapDef {
                    name: sym.name.clone(),
                    map_type: f(0),
                    key_size: f(1),
                    value_size: f(2),
                    max_entries: f(3),
                    flags: f(4),
                    pinning: f(6),
                    numa_node: 0,
                    map_extra: 0,
                    inner: None,
                    origin: MapOrigin::Legacy {
                        id: f(5),
                        inner_id: f(7),
                    },
                    at: Some((idx, sym.value)),
                    data: Vec::new(),
                });
            }
            // Legacy map-in-map: the inner template is the map whose id is inner_id.
            let templates: Vec<(u32, MapDef)> = maps
                .iter()
                .filter_map(|m| match m.origin {
                    MapOrigin::Legacy { id, .. } if id != 0 => Some((id, m.clone())),
                    _ => None,
                })
                .collect();
            for m in &mut maps {
                if let MapOrigin::Legacy { inner_id, .. } = m.origin
                    && inner_id != 0
                    && let Some((_, t)) = templates.iter().find(|(id, _)| *id == inner_id)
                {
                    m.inner = Some(Box::new(t.clone()));
                }
            }
        }
        if let Some(s) = file.section_by_name(".maps") {
            let idx = s.index().0;
            let btf = btf.as_ref().ok_or(".maps needs BTF (compile with -g)")?;
            for (name, var_type, offset, _) in btf.datasec_vars(".maps") {
                let mut def = btf_map(btf, &name, var_type)?;
                def.at = Some((idx, offset as u64));
                maps.push(def);
            }
        }
        let mut config_style = ConfigStyle::None;
        let mut config_vars = BTreeMap::new();
        for s in file.sections() {
            let name = section_names[&s.index().0].clone();
            if !is_data_section(&name) || s.kind() == SectionKind::Text {
                continue;
            }
            let idx = s.index().0;
            let read_only = name.starts_with(".rodata");
            // A .bss is only a size: bound it before allocating (the kernel's array values are
            // far smaller than this anyway).
            if s.size() > MAX_DATA_SECTION {
                return Err(format!(
                    "{name}: {} bytes of global data is not a BPF object's",
                    s.size()
                ));
            }
            let data = if s.kind() == SectionKind::UninitializedData {
                vec![0; s.size() as usize]
            } else {
                s.data().map_err(|e| format!("{name}: {e}"))?.to_vec()
            };
            if name == CONFIG_SECTION {
                for sym in section_symbols(idx) {
                    if let Some(var) = sym.name.strip_prefix(CONFIG_PREFIX) {
                        config_vars.insert(var.to_string(), (sym.value as u32, sym.size as u32));
                        config_style = if sym.global {
                            ConfigStyle::Map
                        } else {
                            ConfigStyle::Inline
                        };
                    }
                }
            }
            maps.push(MapDef {
                name: name.clone(),
                map_type: 2, // BPF_MAP_TYPE_ARRAY
                key_size: 4,
                value_size: data.len() as u32,
                max_entries: 1,
                flags: if read_only { BPF_F_RDONLY_PROG } else { 0 },
                pinning: 0,
                numa_node: 0,
                map_extra: 0,
                inner: None,
                origin: MapOrigin::Data {
                    read_only,
                    section: idx,
                },
                at: Some((idx, 0)),
                data,
            });
        }

        let mut obj = Object {
            license,
            symbols,
            section_names,
            functions,
            programs: Vec::new(),
            maps,
            relocations,
            btf,
            ext,
            unplaced_datasecs,
            unknown_sections: Vec::new(),
            config_style,
            config_vars,
        };
        obj.find_programs();
        Ok(obj)
    }

    /// Programs: the functions of every code section but `.text`, typed by their section.
    fn find_programs(&mut self) {
        let tags = self.btf.as_ref().map(|b| b.decl_tags()).unwrap_or_default();
        let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut programs = Vec::new();
        for (i, f) in self.functions.iter().enumerate() {
            if f.section_name == ".text" {
                continue;
            }
            let mut p = ProgramDef {
                func: i,
                section: f.section_name.clone(),
                ty: None,
                tail: None,
                slot_problem: None,
            };
            match sections::classify(&f.section_name) {
                Section::Unknown => {
                    unknown
                        .entry(f.section_name.clone())
                        .or_default()
                        .push(f.name.clone());
                    continue;
                }
                Section::Typed { ty, tail } => {
                    p.ty = Some(ty);
                    if tail {
                        match tail_tag(tags.get(&f.name)) {
                            Some((map, slot)) => {
                                p.tail = Some(TailSlot {
                                    map,
                                    slot,
                                    prunable: true,
                                })
                            }
                            None => {
                                p.slot_problem = Some(format!(
                                    "{} is in a tail-call section but has no `tail:<map>/<slot>` decl tag",
                                    f.name
                                ))
                            }
                        }
                    }
                }
                Section::Numbered { map_id, slot } => {
                    let map = self
                        .maps
                        .iter()
                        .find(|m| matches!(m.origin, MapOrigin::Legacy { id, .. } if id == map_id));
                    match map {
                        Some(m) => {
                            p.tail = Some(TailSlot {
                                map: m.name.clone(),
                                slot,
                                prunable: map_id == CILIUM_MAP_CALLS,
                            })
                        }
                        None => {
                            p.slot_problem = Some(format!(
                                "section {}: no map with iproute2 id {map_id}",
                                f.section_name
                            ))
                        }
                    }
                }
            }
            programs.push(p);
        }
        // Numbered sections take the type of the object's typed programs (pkg/bpf
        // classifyProgramTypes), or of Cilium's known entry function names.
        let inherited = programs.iter().find_map(|p: &ProgramDef| p.ty).or_else(|| {
            programs
                .iter()
                .find_map(|p| sections::type_of_entry_function(&self.functions[p.func].name))
        });
        for p in &mut programs {
            if p.ty.is_none() {
                p.ty = inherited;
            }
        }
        self.programs = programs;
        self.unknown_sections = unknown.into_iter().collect();
    }

    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == name)
    }

    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}

/// `tail:<map>/<slot>` (lib/tailcall.h `__declare_tail`).
fn tail_tag(tags: Option<&Vec<String>>) -> Option<(String, u32)> {
    tags?.iter().find_map(|t| {
        let (map, slot) = t.strip_prefix("tail:")?.rsplit_once('/')?;
        let slot = match slot.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok()?,
            None => slot.parse().ok()?,
        };
        Some((map.to_string(), slot))
    })
}

/// A BTF map definition: a struct whose members encode the attributes
/// (`__uint(name, N)`: pointer to an array of N; `__type(key, T)`: pointer to T;
/// `__array(values, struct {...})`: the inner map of a map-in-map).
fn btf_map(btf: &Btf, name: &str, type_id: u32) -> Result<MapDef, String> {
    let mut def = MapDef {
        name: name.to_string(),
        map_type: 0,
        key_size: 0,
        value_size: 0,
        max_entries: 0,
        flags: 0,
        pinning: 0,
        numa_node: 0,
        map_extra: 0,
        inner: None,
        origin: MapOrigin::Btf,
        at: None,
        data: Vec::new(),
    };
    let members = btf.members(type_id);
    if members.is_empty() {
        return Err(format!(".maps: {name} is not a struct of map attributes"));
    }
    let pointee = |id: u32| -> Option<u32> {
        let t = btf.get(btf.resolve(id))?;
        (t.kind() == btf::kind::PTR).then_some(t.size_or_type)
    };
    let uint = |id: u32| -> Result<u32, String> {
        let arr = pointee(id).and_then(|a| btf.get(btf.resolve(a)));
        match arr {
            Some(t) if t.kind() == btf::kind::ARRAY => Ok(t.extra[2]),
            _ => Err(format!(".maps: {name}: an attribute is not __uint()")),
        }
    };
    for (member, mtype, _) in members {
        match member {
            "type" => def.map_type = uint(mtype)?,
            "max_entries" => def.max_entries = uint(mtype)?,
            "map_flags" => def.flags = uint(mtype)?,
            "pinning" => def.pinning = uint(mtype)?,
            "numa_node" => def.numa_node = uint(mtype)?,
            "map_extra" => def.map_extra = uint(mtype)? as u64,
            "key_size" => def.key_size = uint(mtype)?,
            "value_size" => def.value_size = uint(mtype)?,
            "key" | "value" => {
                let size = pointee(mtype)
                    .and_then(|t| btf.size_of(t))
                    .ok_or_else(|| format!(".maps: {name}: cannot size its {member}"))?;
                if member == "key" {
                    def.key_size = size as u32;
                } else {
                    def.value_size = size as u32;
                }
            }
            "values" => {
                // An array of pointers: to a map definition (map-in-map) or a function
                // prototype (a program array's initial slots).
                let elem = btf
                    .get(btf.resolve(mtype))
                    .filter(|t| t.kind() == btf::kind::ARRAY)
                    .map(|t| t.extra[0])
                    .and_then(pointee);
                if let Some(target) = elem
                    && btf.get(btf.resolve(target)).map(|t| t.kind()) == Some(btf::kind::STRUCT)
                {
                    let mut inner = btf_map(btf, &format!("{name}.inner"), target)?;
                    inner.origin = MapOrigin::Inner;
                    def.inner = Some(Box::new(inner));
                }
                if def.value_size == 0 {
                    def.value_size = 4;
                }
            }
            _ => {}
        }
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_tags_give_map_and_slot() {
        let tags = vec![
            "kind:object".to_string(),
            "tail:cilium_calls/27".to_string(),
        ];
        assert_eq!(tail_tag(Some(&tags)), Some(("cilium_calls".into(), 27)));
        assert_eq!(
            tail_tag(Some(&vec!["tail:cilium_calls_65535/0x1f".to_string()])),
            Some(("cilium_calls_65535".into(), 31))
        );
        assert_eq!(tail_tag(Some(&vec!["tail:x".to_string()])), None);
        assert_eq!(tail_tag(None), None);
    }

    #[test]
    fn data_sections_are_recognised_by_name() {
        for s in [
            ".rodata",
            ".rodata.config",
            ".data",
            ".bss",
            ".data.aux",
            ".rodata.str1.1",
        ] {
            assert!(is_data_section(s), "{s}");
        }
        for s in [".rodatax", ".maps", "maps", ".text", "license"] {
            assert!(!is_data_section(s), "{s}");
        }
    }

    #[test]
    fn garbage_and_foreign_objects_are_refused_by_name() {
        assert!(
            Object::parse(b"not elf")
                .unwrap_err()
                .contains("not an ELF object")
        );
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(Object::parse(&me).unwrap_err().contains("not a BPF object"));
    }
}
